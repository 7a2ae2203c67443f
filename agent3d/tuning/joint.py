"""``agent3d tune --method prompt-head|lora-head``: a head trained *through* the model, with the head's loss.

- ``prompt-head``: learnable virtual tokens before the prompt (a learned feature the prompt's lines attend to, like
  a [CLS] token; prompt tuning: Lester, Al-Rfou & Constant, EMNLP 2021) and a linear head on the per-line states.
- ``lora-head``: LoRA on the last ``lora_layers`` decoder layers (Hu et al., ICLR 2022) and the linear head.

Every shown line is labelled (on a defect or not; :mod:`agent3d.tuning.lines`), so a prompt gives 64 labels instead
of one generated reply. The head starts as the linear probe of the frozen model (logistic regression, its C chosen
by grouped cross-validation on the training clouds; :mod:`agent3d.tuning.heads`), then adapter and head train
together with a class-balanced logistic loss: linear probing then fine-tuning (LP-FT; Kumar et al., "Fine-Tuning
can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022), so training starts from what
``--method head`` would ship. States: the last decoder layer after the final norm at each line's last token
(:mod:`agent3d.llm.torch_states`). Validation clouds are only scored, after training.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from agent3d.llm.torch_states import last_states, line_positions
from agent3d.tuning.heads import HEAD_CANDIDATES, choose_head, f1_threshold, fit_head
from agent3d.tuning.lines import LineExample
from agent3d.config import TuneConfig
from agent3d.tuning.train import learning_rate_at, peft_model

HEAD_LR = 1e-3  # the head's learning rate (AdamW): its inputs are standardised, so one rate fits any model
LINEAR = {name: spec for name, spec in HEAD_CANDIDATES.items() if spec[0] == "logistic"}


def frozen_states(model, tokenizer, examples: list[LineExample], say: Callable[[str], None]) -> list:
    """Token ids and line positions of every example, with ``states`` filled from the frozen ``model``."""
    import torch

    encoded = []
    for number, example in enumerate(examples, start=1):
        tokens, positions = line_positions(tokenizer, example.messages, example.ids)
        with torch.inference_mode():
            example.states = last_states(model, tokens, positions).float().cpu().numpy()
        encoded.append((tokens, positions))
        say(f"states {number}/{len(examples)}")
    return encoded


def linear_probe(examples: list[LineExample], k: int, seed: int) -> tuple[dict, str, dict]:
    """The frozen model's linear probe: C by grouped cross-validation, refitted on every example.

    Returns
    -------
    arrays : dict
        ``mean``, ``scale``, ``w0``, ``b0`` (see :func:`agent3d.tuning.heads.fit_head`).
    best : str
        The chosen candidate.
    table : dict
        Cross-validated recall per candidate.
    """
    best, table = choose_head(examples, k, seed=seed, candidates=LINEAR)
    arrays = fit_head(np.vstack([e.states for e in examples]), np.concatenate([e.labels for e in examples]),
                      *LINEAR[best], seed)
    return arrays, best, {name: round(entry["recall"], 4) for name, entry in table.items()}


class HeadOnStates:
    """The linear head as torch parameters: standardise (fixed), then ``w0``, ``b0`` (trained)."""

    def __init__(self, arrays: dict, device):
        import torch

        self.mean = torch.tensor(arrays["mean"], dtype=torch.float32, device=device)
        self.scale = torch.tensor(arrays["scale"], dtype=torch.float32, device=device)
        self.weight = torch.nn.Parameter(torch.tensor(arrays["w0"][:, 0], dtype=torch.float32, device=device))
        self.bias = torch.nn.Parameter(torch.tensor(float(arrays["b0"][0]), dtype=torch.float32, device=device))

    def logits(self, states):
        return ((states.float() - self.mean) / self.scale) @ self.weight + self.bias

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``head.npz`` arrays of the trained head."""
        return {"mean": self.mean.cpu().numpy().astype(np.float64), "scale": self.scale.cpu().numpy().astype(np.float64),
                "w0": self.weight.detach().cpu().numpy().astype(np.float64)[:, None],
                "b0": np.array([float(self.bias.detach())])}


def train_joint(base, tokenizer, train: list[LineExample], config: TuneConfig, k: int,
                say: Callable[[str], None]) -> tuple:
    """Linear probe on the frozen ``base``, then the adapter and the head together for ``config.steps`` steps.

    Parameters
    ----------
    base : transformers causal LM (float32), frozen
    tokenizer : transformers fast tokenizer
    train : list of LineExample
    config : TuneConfig
        ``method`` ``prompt-head`` or ``lora-head``; ``steps`` (one example each), ``lr`` (the adapter's; the
        head's is ``HEAD_LR``), ``warmup``, ``eval_every`` (a curve point: mean loss and suspect recall at ``k`` of
        the steps since the last one, each measured on the step's own example before its update), ``seed``.
    k : int
        Suspects per prompt (``--max-suspects``).
    say : callable
        Progress lines.

    Returns
    -------
    model : peft.PeftModel
    head : HeadOnStates
    probe : dict
        The linear probe's choice and cross-validated recalls.
    curve : list of dict
    """
    import torch

    encoded = frozen_states(base, tokenizer, train, say)
    arrays, best, table = linear_probe(train, k, config.seed)
    torch.manual_seed(config.seed)
    model = peft_model(base, config)
    head = HeadOnStates(arrays, model.device)
    labels = np.concatenate([e.labels for e in train])
    balance = torch.tensor(max((labels == 0).sum(), 1) / max((labels == 1).sum(), 1), device=model.device)
    adapter = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": adapter, "lr": config.learning_rate},
                                   {"params": [head.weight, head.bias], "lr": HEAD_LR}], weight_decay=0.0)
    order = np.random.default_rng(config.seed).permutation(np.resize(np.arange(len(train)), config.steps))
    curve, window, start = [], [], time.monotonic()
    model.train()
    for step, index in enumerate(order, start=1):
        tokens, positions = encoded[index]
        target = torch.tensor(train[index].labels, dtype=torch.float32, device=model.device)
        optimizer.param_groups[0]["lr"] = learning_rate_at(step - 1, config)
        logits = head.logits(last_states(model, tokens, positions))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=balance)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*adapter, head.weight, head.bias], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        top = np.argsort(-logits.detach().cpu().numpy(), kind="stable")[:k]
        hits = train[index].hits
        window.append((loss.item(), int(hits[top].any(axis=0).sum()), hits.shape[1]))
        say(f"step {step}/{config.steps} loss {loss.item():.4f}")
        if step % config.eval_every == 0 or step == config.steps:
            curve.append({"step": step, "train_loss": round(float(np.mean([w[0] for w in window])), 4),
                          "train_recall": round(sum(w[1] for w in window) / max(sum(w[2] for w in window), 1), 4),
                          "seconds": round(time.monotonic() - start, 1)})
            window = []
    model.eval()
    return model, head, {"chosen": best, "cross_validation_recall": table}, curve


def line_probabilities(model, head: HeadOnStates, tokenizer, examples: list[LineExample]) -> list[np.ndarray]:
    """The trained model and head's probability for every line of every example."""
    import torch

    found = []
    with torch.inference_mode():
        for example in examples:
            tokens, positions = line_positions(tokenizer, example.messages, example.ids)
            found.append(torch.sigmoid(head.logits(last_states(model, tokens, positions))).cpu().numpy()
                         .astype(np.float64))
    return found


def final_threshold(train: list[LineExample], probabilities: list[np.ndarray]) -> float:
    """The F1-best threshold on the training lines' final probabilities (marks a suspect "likely")."""
    return f1_threshold(np.concatenate([e.labels for e in train]), np.concatenate(probabilities))
