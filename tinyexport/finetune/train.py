"""The training loop: AdamW on the LoRA parameters only, loss and token accuracy per step, and the
held-out perplexity before and after. Deterministic for a given seed (single process, CPU)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinyexport.errors import UserError

from .data import IGNORE, Example


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 60
    batch_size: int = 1
    seq_len: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    seed: int = 0
    max_eval_examples: int = 32

    def __post_init__(self) -> None:
        positive = {k: getattr(self, k) for k in ("steps", "batch_size", "seq_len", "max_eval_examples")}
        bad = {k: v for k, v in positive.items() if v <= 0}
        if bad:
            raise UserError(f"training options must be positive, got {bad}")
        if not self.learning_rate > 0:
            raise UserError(f"--lr must be positive, got {self.learning_rate}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then linear decay to zero at the last step."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / (self.warmup_steps + 1)
        remaining = max(self.steps - self.warmup_steps, 1)
        return self.learning_rate * max(0.0, 1 - (step - self.warmup_steps) / remaining)


@dataclass(frozen=True)
class Score:
    nll: float  # mean negative log-likelihood per scored token (nats)
    token_accuracy: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "perplexity": self.perplexity}


def collate(examples: Sequence[Example]):
    """Right-padded (ids, labels, attention_mask) tensors; padding is masked and never trained."""
    import torch

    width = max(e.ids.size for e in examples)
    ids = np.zeros((len(examples), width), dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE, dtype=np.int64)
    mask = np.zeros((len(examples), width), dtype=np.int64)
    for row, e in enumerate(examples):
        ids[row, : e.ids.size], labels[row, : e.ids.size], mask[row, : e.ids.size] = e.ids, e.labels, 1
    return torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(mask)


def _loss_and_hits(model: Any, batch) -> tuple[Any, int, int]:
    import torch

    ids, labels, mask = batch
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    loss_sum = torch.nn.functional.cross_entropy(flat, target, ignore_index=IGNORE, reduction="sum")
    scored = target != IGNORE
    hits = int((flat.argmax(-1)[scored] == target[scored]).sum())
    return loss_sum, hits, int(scored.sum())


def evaluate(model: Any, examples: Sequence[Example]) -> Score | None:
    """Mean NLL and token accuracy over the scored tokens of ``examples`` (one at a time, no grad)."""
    import torch

    if not examples:
        return None
    total, hits, count = 0.0, 0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for example in examples:
            loss_sum, h, n = _loss_and_hits(model, collate([example]))
            total, hits, count = total + float(loss_sum), hits + h, count + n
    model.train(was_training)
    return Score(total / count, hits / count, count)


def train(
    model: Any, examples: Sequence[Example], config: TrainConfig, on_step: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Train the model's trainable (LoRA) parameters; returns the per-step log (also passed to ``on_step``)."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    order: list[int] = []
    log = []
    model.train()
    for step in range(config.steps):
        batch = []
        while len(batch) < config.batch_size:
            if not order:
                order = list(rng.permutation(len(examples)))
            batch.append(examples[order.pop()])
        lr = config.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        loss_sum, hits, count = _loss_and_hits(model, collate(batch))
        loss = loss_sum / max(count, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        optimizer.step()
        record = {
            "step": step + 1,
            "loss": float(loss.detach()),
            "token_accuracy": hits / max(count, 1),
            "tokens": count,
            "lr": lr,
            "grad_norm": grad_norm,
            "seconds": round(time.perf_counter() - start, 3),
        }
        if not math.isfinite(record["loss"]):
            raise UserError(f"the loss became {record['loss']} at step {step + 1}; lower --lr")
        log.append(record)
        on_step(record)
    model.eval()
    return log
