"""The task suite with its three-tier baseline: for every task, the theoretical random accuracy, the
*untrained* model (random weights of the reference's exact shape, same tokenizer), the trained reference
(transformers, fp32), and every candidate (our model, exported artefacts) beside that reference."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.progress import UnitProgress
from tinyexport.resolve import REFERENCE, Candidate, Inputs
from tinyexport.runners.base import Runner

from .metrics import token_logprobs
from .scoring import continuation_logits
from .tasks import Task, TaskFormatError, TaskItem

UNTRAINED, TRAINED = "untrained", "trained"


@dataclass(frozen=True)
class EncodedItem:
    item: TaskItem
    context: np.ndarray
    options: tuple[np.ndarray, ...]

    @property
    def longest(self) -> int:
        return self.context.size + max(o.size for o in self.options) - 1


def encode_item(item: TaskItem, tokenizer: Any) -> EncodedItem:
    """Context ids, and each option's ids as encode(context + option) minus the context's own ids."""
    ctx = tokenizer.encode(item.context)
    options = []
    for option in item.options:
        ids = tokenizer.encode(item.context + option)[ctx.size :]
        if ids.size == 0 or ctx.size == 0:
            raise TaskFormatError(f"{item.file}:{item.line}: an option encodes to no tokens after the context")
        options.append(ids)
    return EncodedItem(item, ctx, tuple(options))


def is_correct(runner: Runner, kind: str, enc: EncodedItem) -> bool:
    """choice: the option with the highest summed log-likelihood is the answer; lastword: greedy
    decoding from the context reproduces every token of the target word."""
    if kind == "lastword":
        target = enc.options[0]
        return bool(np.all(continuation_logits(runner, enc.context, target).argmax(axis=-1) == target))
    scores = [token_logprobs(continuation_logits(runner, enc.context, o), o).sum() for o in enc.options]
    return int(np.argmax(scores)) == enc.item.answer


@dataclass(frozen=True)
class TaskScores:
    task: str
    kind: str
    source: str
    items: int
    random_baseline: float
    correct: dict[str, int]  # model name -> correct answers

    def accuracy(self, name: str) -> float:
        return self.correct[name] / self.items

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "kind": self.kind,
            "source": self.source,
            "items": self.items,
            "random_baseline": self.random_baseline,
            "accuracy": {n: self.accuracy(n) for n in self.correct},
            "correct": dict(self.correct),
        }


@dataclass(frozen=True)
class SuiteReport:
    checkpoint: str
    untrained: str | None
    models: tuple[str, ...]  # column order: untrained, trained, candidates
    tasks: tuple[TaskScores, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "untrained": self.untrained,
            "models": list(self.models),
            "tasks": [t.to_json() for t in self.tasks],
            "candidates": [
                {"name": m, **{t.task: t.accuracy(m) for t in self.tasks}} for m in self.models
            ],  # one row per model, for `tinyexport report` and `runs compare`
        }


def untrained_checkpoint(ckpt: Any, seed: int, cache: Path) -> Any:
    """Random weights of ``ckpt``'s exact config (``models.weights.random_weights``), with its tokenizer
    files, materialised once into ``cache`` (keyed by the config and the seed)."""
    import hashlib

    from tinyexport.artefact import copy_tokenizer_files
    from tinyexport.atomic import atomic_directory
    from tinyexport.models.checkpoint import Checkpoint
    from tinyexport.models.safetensors_writer import write_safetensors_streaming
    from tinyexport.models.weights import random_weights

    config_text = json.dumps(ckpt.config.to_hf_dict(), indent=2, sort_keys=True)
    key = hashlib.sha256(config_text.encode()).hexdigest()[:12]
    target = Path(cache) / "checkpoints" / f"untrained-{key}-seed{seed}"
    name = f"{ckpt.name} untrained (seed {seed})"
    if not (target / "model.safetensors").is_file():
        with atomic_directory(target, existing="keep") as tmp:
            write_safetensors_streaming(tmp / "model.safetensors", ckpt.config, random_weights(ckpt.config, seed))
            (tmp / "config.json").write_text(config_text)
            copy_tokenizer_files(ckpt.tokenizer_dir, tmp)
    return Checkpoint(name, target, ckpt.config, f"random weights of {ckpt.name}'s shape, seed {seed}")


def run_suite(
    setup: Inputs, tasks: list[tuple[Task, Path | None]], limit: int | None, untrained_seed: int | None, cache: Path
) -> SuiteReport:
    loaded = []
    for task, path in tasks:
        items = task.read(path, limit)
        encoded = [encode_item(it, setup.tokenizer) for it in items]
        longest = max(encoded, key=lambda e: e.longest)
        setup.check_capacity(
            longest.longest,
            f"{task.name} item {longest.item.file}:{longest.item.line}",
            "shorten or drop it, or export with a larger --kv-cache-max-len",
        )
        loaded.append((task, str(path) if path else "generated", encoded))
    max_len = max(e.longest for _, _, enc in loaded for e in enc)

    models: list[tuple[str, Candidate, Any]] = []
    untrained_name = None
    if untrained_seed is not None:
        untrained = untrained_checkpoint(setup.checkpoint, untrained_seed, cache)
        untrained_name = untrained.name
        models.append((UNTRAINED, REFERENCE, untrained))
    models.append((TRAINED, REFERENCE, setup.checkpoint))
    models += [(spec.label, spec, setup.checkpoint) for spec in setup.candidates]

    correct: dict[str, dict[str, int]] = {task.name: {} for task, _, _ in loaded}
    total = sum(len(enc) for _, _, enc in loaded)
    with UnitProgress("item") as bars:
        for name, spec, ckpt in models:
            runner = spec.open(ckpt, max_len=max_len)
            step = bars.task(name, total)
            for task, _, encoded in loaded:
                hits = 0
                for enc in encoded:
                    hits += is_correct(runner, task.kind, enc)
                    step(1)
                correct[task.name][name] = hits
            del runner
            gc.collect()
    scores = tuple(
        TaskScores(
            task.name, task.kind, source, len(enc), task.random_baseline([e.item for e in enc]), correct[task.name]
        )
        for task, source, enc in loaded
    )
    return SuiteReport(setup.checkpoint.name, untrained_name, tuple(m[0] for m in models), scores)
