"""One fine-tune, start to finish: load base, apply LoRA, score held-out data, train, score again, write
adapter + merged checkpoint into one atomic directory. Returns the summary written to ``finetune.json``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyexport.atomic import atomic_directory
from tinyexport.errors import UserError

from .data import load_dataset
from .lora import LoraSpec, apply_lora, load_base_model
from .output import ADAPTER_DIR, SUMMARY, TRAIN_LOG, write_adapter, write_json, write_merged
from .train import TrainConfig, evaluate, train


@dataclass(frozen=True)
class FinetuneJob:
    checkpoint: Any  # resolved Checkpoint
    source_ref: dict[str, Any]  # how to re-resolve it (spec, random_weights, seed)
    data: Path
    out_dir: Path
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    holdout: float = 0.1
    replace: bool = False


def run_finetune(
    job: FinetuneJob,
    *,
    on_start: Callable[[dict[str, Any]], None] = lambda s: None,
    on_step: Callable[[dict[str, Any]], None] = lambda r: None,
) -> dict[str, Any]:
    import torch

    from tinyexport.tokenizer import Tokenizer

    ckpt = job.checkpoint
    if ckpt.tokenizer_dir is None:
        raise UserError(f"{ckpt.name} has no tokenizer.json; fine-tuning on text needs the checkpoint's tokenizer")
    if job.train.seq_len > ckpt.config.max_position_embeddings:
        raise UserError(
            f"--seq-len {job.train.seq_len} exceeds the model's max_position_embeddings "
            f"({ckpt.config.max_position_embeddings})"
        )
    dataset = load_dataset(job.data, Tokenizer(ckpt.tokenizer_dir), seq_len=job.train.seq_len, holdout=job.holdout)
    torch.manual_seed(job.train.seed)
    model = apply_lora(load_base_model(ckpt), job.lora)  # bad target names fail before any training
    held_out = dataset.held_out[: job.train.max_eval_examples]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    on_start({**dataset.summary(), "trainable_parameters": trainable})
    before = evaluate(model, held_out)
    log = train(model, dataset.train, job.train, on_step)
    after = evaluate(model, held_out)
    summary = {
        "base": {**job.source_ref, "name": ckpt.name, "fingerprint": ckpt.fingerprint()},
        "lora": job.lora.to_json(),
        "train": job.train.to_json(),
        "data": {**dataset.summary(), "holdout": job.holdout, "held_out_examples_scored": len(held_out)},
        "trainable_parameters": trainable,
        "train_seconds": round(sum(r["seconds"] for r in log), 2),
        "final_loss": log[-1]["loss"],
        "held_out_before": before.to_json() if before else None,
        "held_out_after": after.to_json() if after else None,
        "adapter": ADAPTER_DIR,
        "log": TRAIN_LOG,
    }
    with atomic_directory(Path(job.out_dir), replace=job.replace) as tmp:
        write_adapter(model, tmp / ADAPTER_DIR, ckpt, job.source_ref, job.lora)
        write_merged(model, tmp, ckpt)
        write_json(tmp / TRAIN_LOG, log)
        write_json(tmp / SUMMARY, summary)
    return summary
