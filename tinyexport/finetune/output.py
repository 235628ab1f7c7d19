"""What ``finetune`` writes, atomically: an HF checkpoint directory with the merged weights (usable as
``--checkpoint DIR`` by every command), the adapter beside it in ``adapter/`` (with its base checkpoint's
fingerprint), the per-step log and a summary.

    OUT/config.json, model.safetensors, generation_config.json, tokenizer files   merged checkpoint
    OUT/adapter/adapter_config.json, adapter_model.safetensors, tinyexport_base.json
    OUT/train_log.json   one record per step (loss, token accuracy, lr, grad norm, seconds)
    OUT/finetune.json    base, LoRA and training options, data, held-out scores before/after
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyexport.artefact import copy_tokenizer_files

from .lora import LoraSpec, write_base_record

ADAPTER_DIR = "adapter"
TRAIN_LOG = "train_log.json"
SUMMARY = "finetune.json"


def write_adapter(
    peft_model: Any, directory: Path, checkpoint: Any, source_ref: dict[str, Any], spec: LoraSpec
) -> Path:
    """The adapter alone (safetensors, never pickle) + its base record, before anything is merged."""
    directory = Path(directory)
    peft_model.save_pretrained(str(directory), safe_serialization=True)
    write_base_record(directory, checkpoint, source_ref, spec)
    return directory


def write_merged(peft_model: Any, directory: Path, checkpoint: Any) -> None:
    """Merge the adapter into the base weights (peft's ``merge_and_unload``) and save an HF checkpoint."""
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(directory), safe_serialization=True)
    copy_tokenizer_files(checkpoint.tokenizer_dir, Path(directory))


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
