"""``agent3d tune generated --method guidance-lora|guidance-verbalizer``: a guidance reader tuned through the model
on generated phrasings.

A LoRA adapter (rank 8 on the attention's query and value projections of every layer; Hu et al., ICLR 2022; peft)
and three linear heads on the standardised pooled state, each started from the frozen model's logistic-regression
probe (linear probing, then fine-tuning: Kumar et al., ICLR 2022) — kind (raised / sunk / any, softmax), normal
features (edges / corners / holes, one sigmoid each), size (small / large / any, softmax) — are trained together on
phrasings of :mod:`agent3d.guidance_corpus`, read inside the note of :data:`agent3d.guidance.NOTE`, the final states
of its last 8 tokens averaged (the states llama.cpp returns in embedding mode). With a verbalizer (``--method
guidance-verbalizer``) the kind head reads the note's last state and starts as the model's own output layer
restricted to one word per kind (the unembedding rows of " raised", " sunk", " all": the model's next-word choice
among them, a verbalizer as in PET, Schick & Schütze, EACL 2021), so tuning starts from what the pretrained model
already makes of the words. A fifth of the generator's constructions (templates) is held apart: the abstention
threshold is chosen on their phrasings, the lowest kind probability at which the reader's kind is right for at least
0.95 of them, and their accuracy is recorded (choice on training data only; the hand-written held-out set is never
read here). The adapter is written as a llama.cpp LoRA GGUF (``adapter.gguf``), so detection reads with llama.cpp
and no torch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d import outputs
from agent3d.guidance import NOTE, GuidanceReader, class_rows
from agent3d.guidance_corpus import generate
from agent3d.llm.transformers import load_base, model_identity
from agent3d.spec import FEATURES, KINDS, SIZES

LAST, RANK, BATCH, ADAPTER_RATE, HEAD_RATE, PROBE_C = 8, 8, 8, 5e-4, 1e-3, 0.1
VERBALIZER = (" raised", " sunk", " all")  # one word per kind of agent3d.spec.KINDS, each one token in Gemma 3
GGUF_NAMES = {"q_proj": "attn_q", "v_proj": "attn_v"}  # peft module -> llama.cpp tensor (Gemma 3: no permutation)


def template_split(corpus: list[dict], share: float = 0.2, seed: int = 0) -> np.ndarray:
    """True for the phrasings whose template falls in the held-apart share of templates (per language)."""
    templates = sorted({e["template"] for e in corpus})
    rng = np.random.default_rng(seed)
    apart = {t for t in templates if rng.random() < share}
    return np.array([e["template"] in apart for e in corpus])


def targets(corpus: list[dict]):
    """Kind and size class indices, normal feature indicators; int64, int64, float32 arrays."""
    kind = np.array([KINDS.index(e["kind"]) for e in corpus])
    normal = np.array([[f in e["normal"] for f in FEATURES] for e in corpus], dtype=np.float32)
    size = np.array([SIZES.index(e["size"]) for e in corpus])
    return kind, normal, size


def abstention_threshold(probabilities: np.ndarray, kinds: np.ndarray, target: float = 0.95) -> float:
    """The lowest confidence ``t`` such that texts read with kind probability at least ``t`` are right at least
    ``target`` of the time (0 when all are).

    Parameters
    ----------
    probabilities : ndarray of shape (n_texts, 3), float
    kinds : ndarray of shape (n_texts,), int
    """
    best, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == kinds
    for t in np.linspace(0.34, 0.99, 66):
        kept = best >= t
        if not kept.any() or right[kept].mean() >= target:
            return float(round(t, 2))
    return 0.99


class ReaderModel:
    """The adapted model and its heads during training (torch)."""

    def __init__(self, model: str | None, seed: int, verbalizer: tuple[str, ...] | None = None):
        import torch
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        self.identity = model_identity(model)
        base, self.tokenizer = load_base(self.identity)
        self.model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.05,
                                                     target_modules=list(GGUF_NAMES)))
        self.decoder = self.model.base_model.model.model
        width = base.config.hidden_size
        self.heads = torch.nn.ModuleDict({"kind": torch.nn.Linear(width, 3), "normal": torch.nn.Linear(width, 3),
                                          "size": torch.nn.Linear(width, 3)})
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.verbalizer, self.last = verbalizer, 1 if verbalizer else LAST
        if verbalizer:
            words = [self.tokenizer(word, add_special_tokens=False)["input_ids"] for word in verbalizer]
            if any(len(ids) != 1 for ids in words):
                raise ValueError(f"every verbalizer word must be one token, got {words}")
            self.word_rows = base.get_output_embeddings().weight[[ids[0] for ids in words]].detach().clone()

    def pooled(self, texts: list[str]):
        batch = self.tokenizer([NOTE.format(t) for t in texts], return_tensors="pt", padding=True)
        positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        states = self.decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              position_ids=positions).last_hidden_state
        return states[:, -self.last:].mean(dim=1)

    def probe_start(self, corpus: list[dict], say: Callable[[str], None]) -> None:
        """Linear probing first (LP-FT: Kumar et al., ICLR 2022): the frozen model's pooled states standardised
        (:attr:`mean`, :attr:`scale`) and each head started from a logistic regression on them."""
        import torch
        from sklearn.linear_model import LogisticRegression

        with torch.no_grad(), self.model.disable_adapter():
            states = np.vstack([self.pooled([e["text"] for e in corpus[start:start + 32]]).numpy()
                                for start in range(0, len(corpus), 32)])
        if self.verbalizer:  # the kind head reads the raw state as the output layer does, and so do the others
            self.mean, self.scale = np.zeros(states.shape[1]), np.ones(states.shape[1])
        else:
            self.mean, self.scale = states.mean(axis=0), states.std(axis=0) + 1e-6
        standard = (states - self.mean) / self.scale
        kind, normal, size = targets(corpus)
        with torch.no_grad():
            if self.verbalizer:
                self.heads["kind"].weight.copy_(self.word_rows)
                self.heads["kind"].bias.zero_()
                say(f"verbalizer {self.verbalizer}: zero-shot training accuracy "
                    f"{(self.heads['kind'](torch.as_tensor(states)).argmax(1).numpy() == kind).mean():.3f}")
            for field, labels in (("size", size),) if self.verbalizer else (("kind", kind), ("size", size)):
                if len(np.unique(labels)) < 2:  # a small corpus may hold one value only: the head starts at zero
                    continue
                probe = LogisticRegression(C=PROBE_C, max_iter=3000).fit(standard, labels)
                coef, intercept = class_rows(probe)  # rows of the classes present, in the head's order
                self.heads[field].weight[probe.classes_] = torch.as_tensor(coef, dtype=torch.float32)
                self.heads[field].bias[probe.classes_] = torch.as_tensor(intercept, dtype=torch.float32)
                say(f"probe {field}: training accuracy {probe.score(standard, labels):.3f}")
            for j in range(normal.shape[1]):
                if len(np.unique(normal[:, j])) < 2:
                    continue
                probe = LogisticRegression(C=PROBE_C, max_iter=3000).fit(standard, normal[:, j])
                self.heads["normal"].weight[j].copy_(torch.as_tensor(probe.coef_[0], dtype=torch.float32))
                self.heads["normal"].bias[j] = float(probe.intercept_[0])

    def head_input(self, pooled):
        import torch

        return (pooled - torch.as_tensor(self.mean, dtype=torch.float32)) / torch.as_tensor(self.scale,
                                                                                              dtype=torch.float32)

    def fit(self, corpus: list[dict], epochs: int, say: Callable[[str], None], seed: int) -> None:
        import torch
        import torch.nn.functional as F

        self.probe_start(corpus, say)
        kind, normal, size = (torch.as_tensor(a) for a in targets(corpus))
        optimizer = torch.optim.AdamW([
            {"params": [p for p in self.model.parameters() if p.requires_grad], "lr": ADAPTER_RATE},
            {"params": self.heads.parameters(), "lr": HEAD_RATE}])
        rng = np.random.default_rng(seed)
        self.model.train()
        steps = epochs * ((len(corpus) + BATCH - 1) // BATCH)
        step, losses = 0, []
        for _ in range(epochs):
            order = rng.permutation(len(corpus))
            for start in range(0, len(order), BATCH):
                rows = order[start:start + BATCH]
                pooled = self.head_input(self.pooled([corpus[i]["text"] for i in rows]))
                loss = F.cross_entropy(self.heads["kind"](pooled), kind[rows]) \
                    + F.binary_cross_entropy_with_logits(self.heads["normal"](pooled), normal[rows]) \
                    + 0.5 * F.cross_entropy(self.heads["size"](pooled), size[rows])
                for group in optimizer.param_groups:  # linear decay
                    group.setdefault("initial_lr", group["lr"])
                    group["lr"] = group["initial_lr"] * (1 - step / steps)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(loss.item())
                if step % 20 == 0:
                    say(f"step {step}/{steps}: mean loss of the last 20 {np.mean(losses[-20:]):.3f}")
        self.model.eval()

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Probabilities per field: ``kind`` and ``size`` (n, 3) softmax, ``normal`` (n, 3) sigmoid."""
        import torch

        out = {"kind": [], "normal": [], "size": []}
        with torch.no_grad():
            for start in range(0, len(texts), 16):
                pooled = self.head_input(self.pooled(texts[start:start + 16]))
                out["kind"].append(torch.softmax(self.heads["kind"](pooled), dim=1).numpy())
                out["normal"].append(torch.sigmoid(self.heads["normal"](pooled)).numpy())
                out["size"].append(torch.softmax(self.heads["size"](pooled), dim=1).numpy())
        return {key: np.vstack(value) for key, value in out.items()}

    def head_arrays(self) -> dict[str, np.ndarray]:
        """The heads as :class:`agent3d.guidance.GuidanceReader` arrays (with the standardisation)."""
        arrays = {f"{field}_{part}": getattr(self.heads[field], part).detach().numpy().astype(np.float64)
                  for field in ("kind", "normal", "size") for part in ("weight", "bias")}
        return {"mean": self.mean.astype(np.float64), "scale": self.scale.astype(np.float64),
                "coef": arrays.pop("kind_weight"),
                "intercept": arrays.pop("kind_bias"), "normal_coef": arrays.pop("normal_weight"),
                "normal_intercept": arrays.pop("normal_bias"), "size_coef": arrays.pop("size_weight"),
                "size_intercept": arrays.pop("size_bias")}

    def write_gguf(self, path: Path) -> None:
        """The adapter as a llama.cpp LoRA GGUF (``general.type = adapter``, ``adapter.type = lora``,
        ``adapter.lora.alpha``; tensors ``blk.N.attn_q.weight.lora_a`` (rank, n_in) and ``.lora_b`` (n_out, rank)),
        as llama.cpp's ``convert_lora_to_gguf.py`` writes it."""
        import gguf

        writer = gguf.GGUFWriter(str(path), arch=self.model.base_model.model.config.model_type.replace(
            "gemma3_text", "gemma3"))
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(2 * RANK))
        for name, tensor in self.model.state_dict().items():
            if "lora_" not in name:
                continue
            layer = int(name.split(".layers.")[1].split(".")[0])
            module = next(m for m in GGUF_NAMES if f".{m}." in name)
            part = "lora_a" if "lora_A" in name else "lora_b"
            writer.add_tensor(f"blk.{layer}.{GGUF_NAMES[module]}.weight.{part}",
                              tensor.detach().float().numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def tune_reader(out: Path, model: str | None = "gemma-3-270m", n: int = 3000, epochs: int = 1, seed: int = 0,
                on_progress: Callable[[str], None] | None = None, verbalizer: tuple[str, ...] | None = None) -> dict:
    """Train and write a LoRA guidance reader (``guidance.npz``, ``guidance.json``, ``adapter.gguf``).

    Parameters
    ----------
    out : Path
    model : str, default "gemma-3-270m"
        An embedded model's name or a GGUF file (read by transformers for training, by llama.cpp after).
    n : int, default 3000
        Generated phrasings (English and Korean in turn).
    epochs : int, default 1
    seed : int, default 0
    on_progress : callable, optional
    verbalizer : tuple of str, optional
        One word per kind (:data:`VERBALIZER`): the kind head starts as the model's output layer for those words, on
        the note's last state; None: the pooled last 8 states and a probe start.

    Returns
    -------
    dict
        The record written as ``guidance.json``.
    """
    say = on_progress or (lambda text: None)
    outputs.check_output(out, folder=True, keep="guidance.json")
    start = time.monotonic()
    corpus = generate(n, seed=seed)
    apart = template_split(corpus, seed=seed)
    train = [e for e, a in zip(corpus, apart) if not a]
    held = [e for e, a in zip(corpus, apart) if a]
    reader = ReaderModel(model, seed, verbalizer)
    say(f"{len(train)} phrasings to train on, {len(held)} of held-apart templates")
    reader.fit(train, epochs, say, seed)
    probabilities = reader.predict([e["text"] for e in held])
    kind, normal, size = targets(held)
    threshold = abstention_threshold(probabilities["kind"], kind)
    figures = {"kind_accuracy": float((probabilities["kind"].argmax(1) == kind).mean()),
               "normal_accuracy": float(((probabilities["normal"] >= 0.5) == (normal > 0)).all(axis=1).mean()),
               "size_accuracy": float((probabilities["size"].argmax(1) == size).mean()),
               "abstained": float((probabilities["kind"].max(1) < threshold).mean())}
    say(f"held-apart templates: {figures}; abstain below {threshold}")
    identity = reader.identity
    record = {"method": "guidance-verbalizer" if verbalizer else "guidance-lora",
              "base_model": {"name": identity.name, "sha256": identity.sha256, "model": str(model or "smollm2-135m")},
              "pooling": "note, last token" if verbalizer else "note, last 8 tokens", "note": NOTE,
              "last_tokens": reader.last, "verbalizer": list(verbalizer or []), "adapter": "adapter.gguf",
              "lora": {"rank": RANK, "alpha": 2 * RANK, "target_modules": list(GGUF_NAMES)},
              "corpus": {"generator": "agent3d.guidance_corpus", "n": n, "seed": seed, "train": len(train),
                         "held_apart_templates": len(held)},
              "epochs": epochs, "batch": BATCH, "rates": [ADAPTER_RATE, HEAD_RATE], "abstain_below": threshold,
              "held_apart": figures, "seconds": round(time.monotonic() - start, 1)}
    with outputs.staged_folder(out) as staging:
        reader.write_gguf(Path(staging) / "adapter.gguf")
        probe = GuidanceReader()
        probe.classes_, probe.arrays_ = list(KINDS), reader.head_arrays()
        probe.save(staging, record)
    digest = hashlib.sha256((Path(out) / "adapter.gguf").read_bytes()).hexdigest()
    say(f"adapter.gguf sha256 {digest[:12]}")
    return probe.record_
