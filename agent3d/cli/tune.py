"""``agent3d tune``: learnable tokens (prompt tuning) or a LoRA adapter, trained on labeled clouds to generate the
reply; a head that reads the frozen model's per-line states (``head``); virtual tokens or LoRA trained through the
model with that head (``prompt-head``, ``lora-head``); the learned no-LLM baseline (``features``); or a guidance reader
on the model's states of guidance phrasings (``guidance``: the dataset is a guidance set)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from agent3d.cli.common import choices, config_from, config_options, exit_codes, read_guidance
from agent3d.file_checks import InputError
from agent3d.base import DEVICES
from agent3d.config import MAX_SHOWN, TuneConfig

LINES = ("head", "prompt-head", "lora-head", "features")  # methods trained on every shown line's label
Device = choices(DEVICES)


@config_options(TuneConfig)
def tune(
    dataset: list[Path] = typer.Argument(..., help="Labeled datasets (any layout evaluate reads, e.g. a synth folder, "
                                                   "or labeled .txt/.csv files; a quoted pattern such as "
                                                   "'data/surface_0?.txt' is expanded)."),
    out: Path = typer.Option(..., help="Adapter folder to write (PEFT adapter + tune.json; head.npz + head.json; "
                                       "features.skops + features.json)."),
    val: list[Path] = typer.Option([], help="head methods / features: held-out labeled datasets, only scored "
                                            "(repeatable; a quoted pattern such as 'data/surface_1?.txt' is expanded)."),
    max_suspects: int = typer.Option(8, min=1, max=64, help="head methods / features: suspects per prompt, the k "
                                                            "of the recall that chooses the head."),
    model: Optional[str] = typer.Option(None, help="An embedded model (smollm2-135m, the default; gemma-3-270m), a GGUF "
                                                   "file or a Hugging Face folder."),
    prompt: str = typer.Option("geom", help="Prompt template the adapter is tuned for."),
    prompts_dir: Optional[Path] = typer.Option(None, help="Folder of your own prompt templates."),
    n_points: int = typer.Option(64, min=1, max=MAX_SHOWN, help="Points shown per example; use the same --n-points "
                                                                "in detect/evaluate."),
    samplings: int = typer.Option(4, min=1, max=1000, help="Examples per training cloud (different sampling seeds)."),
    guidance: str = typer.Option("", help="Text guidance shown by the templates, or @FILE."),
    device: Device = typer.Option(Device("auto"), help="auto: cuda when available."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its checkpoint in --out."),
    **options,
) -> None:
    """Tune the model on labeled clouds so that it names the points on a defect."""
    from agent3d.tuning.run import tune as run_tune

    with exit_codes():
        config = config_from(TuneConfig, options)
    method, minutes, steps, seed = config.method, config.minutes, config.steps, config.seed
    if method.startswith("guidance"):
        return _tune_guidance(method, dataset, out, model, seed)
    if method in LINES:
        return _tune_probe(method, dataset, out, val, model, prompt, prompts_dir, n_points, samplings, guidance,
                           max_suspects, seed, config, device.value, resume or minutes is not None)
    with exit_codes():
        with TuneProgress(None if minutes else steps) as progress:
            record = run_tune(dataset, out, config, model=model, prompt=prompt,
                              prompts_dir=str(prompts_dir) if prompts_dir else None, n_points=n_points,
                              samplings=samplings, guidance=read_guidance(guidance), device=device.value,
                              resume=resume, on_step=progress.on_step, on_examples=progress.on_examples)
    last = record["curve"][-1]
    Console().print(f"wrote {out} ({record['method']}, {record['steps']} steps, {record['seconds']:.0f} s): "
                    f"validation recall {_figure(last['recall'])}, false alarms {_figure(last['false_alarms'])}")


def _tune_probe(method: str, dataset: list[Path], out: Path, val: list[Path], model, prompt: str, prompts_dir,
                n_points: int, samplings: int, guidance: str, max_suspects: int, seed: int, config, device: str,
                timed_or_resumed: bool) -> None:
    """``--method head|features|prompt-head|lora-head``: progress on stderr, the validation figures at the end."""
    from agent3d.tuning.probes import tune_probe

    console = Console(stderr=True)
    with exit_codes():
        if timed_or_resumed:
            raise InputError(f"--method {method}", "trains for --steps and keeps no checkpoint: --minutes and --resume "
                             "apply to lora and prompt")
        with console.status("tuning") as status:
            def progress(text: str) -> None:  # a status line on a terminal; in a log file, one line each
                if console.is_terminal:
                    status.update(text)
                else:
                    console.print(text, highlight=False)

            record = tune_probe(method, dataset, out, val, model, prompt, str(prompts_dir) if prompts_dir else None,
                                n_points, samplings, read_guidance(guidance), max_suspects, seed=seed,
                                on_progress=progress, config=config, device=device)
    chosen = f", {record['head']} (cross-validated recall@{max_suspects} {record['cross_validation']['recall'][record['head']]:.3f})" \
        if method == "head" else ""
    Console().print(f"wrote {out} ({method}{chosen}, {record['seconds']:.0f} s)")
    if record["validation"]:
        figures = record["validation"]
        Console().print(f"validation suspect recall@{max_suspects}: {method} {figures['model']['recall']:.3f}, "
                        f"saliency {figures['saliency']['recall']:.3f}, random {figures['random']['recall']:.3f} "
                        f"({record['examples_val']} held-out prompts)")


def _tune_guidance(method: str, dataset: list[Path], out: Path, model, seed: int) -> None:
    """``--method guidance``: a probe guidance reader on the train phrasings of one guidance set (``embedded``: the
    shipped one), or on generated phrasings (``generated``); ``--method guidance-lora``: LoRA and heads trained
    through the model on generated phrasings; ``guidance-verbalizer``: the same, the kind head started as the model's
    next-word choice among one word per kind."""
    say = Console(stderr=True).print
    with exit_codes():
        if len(dataset) != 1 or (method != "guidance" and str(dataset[0]) != "generated"):
            raise InputError(f"--method {method}", "takes one guidance set (a TOML file, 'embedded', or 'generated': "
                                                   "phrasings of agent3d.guidance_corpus; guidance-lora and "
                                                   "guidance-verbalizer: 'generated')")
        if str(dataset[0]) == "generated":
            from agent3d.tuning.probe_reader import tune_probe_reader
            from agent3d.tuning.reader import VERBALIZER, tune_reader

            if method == "guidance":
                record = tune_probe_reader(out, model or "gemma-3-270m", seed=seed, on_progress=say)
            else:
                record = tune_reader(out, model or "gemma-3-270m", seed=seed, on_progress=say,
                                     verbalizer=VERBALIZER if method == "guidance-verbalizer" else None)
            Console().print(f"wrote {out} ({method} reader on {record['base_model']['name']}, abstains below "
                            f"{record['abstain_below']}, {record['seconds']:.0f} s)")
            return
        from agent3d.tuning.guidance import tune_guidance

        record = tune_guidance(dataset[0], out, model, seed=seed, on_progress=say)
    Console().print(f"wrote {out} (guidance reader on {record['base_model']['name']}, {record['pooling']}, "
                    f"C = {record['C']}, {record['seconds']:.0f} s): held-out accuracy {_figure(record['held_out_accuracy'])}"
                    f" on {record['held_out_phrasings']} phrasings")


def _figure(value) -> str:
    return "—" if value is None else f"{value:.2f}"


class TuneProgress:
    """A rich progress bar with loss, steps/s and ETA; validation results printed as they come."""

    def __init__(self, total: int | None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
        self.total, self.losses, self.first = total, [], None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc) if hasattr(self, "task") else None

    def on_examples(self, counts: dict) -> None:
        """Print the example counts and start the bar (inputs have checked out by now)."""
        self.progress.__enter__()
        self.task = self.progress.add_task("tuning", total=self.total, info="")
        self.console.print(f"examples: {counts['examples_train']} training ({counts['train_with_targets']} naming a "
                           f"defect) from {counts['clouds_train']} clouds, {counts['examples_val']} validation from "
                           f"{counts['clouds_val']} held-out clouds")

    def on_step(self, event: dict) -> None:
        if "val" in event:
            v = event["val"]
            self.console.print(f"step {v['step']}: train loss {v['train_loss']}, validation recall {_figure(v['recall'])},"
                               f" false alarms {_figure(v['false_alarms'])}, ids named {v['named']:.1f}, "
                               f"invalid {v['invalid']}")
            return
        self.losses = (self.losses + [event["loss"]])[-20:]
        self.first = self.first or event["step"] - 1  # a resumed run starts past 0
        rate = (event["step"] - self.first) / max(event["seconds"], 1e-9)
        self.progress.update(self.task, completed=event["step"],
                             info=f"loss {sum(self.losses) / len(self.losses):.3f}  {rate:.2f} steps/s")
