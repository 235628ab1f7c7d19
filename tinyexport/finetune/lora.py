"""LoRA adapters through peft: which projections, the adapter's record of its base checkpoint, and the
unmerged reference (base + ``PeftModel``) that ``verify --adapter`` compares exported files against."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError

DECODER_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = ("q_proj", "v_proj")
BASE_RECORD = "tinyexport_base.json"  # written beside adapter_config.json
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoraError(UserError, ValueError):
    """A LoRA option or adapter directory cannot be used (the message says which and the fix)."""


@dataclass(frozen=True)
class LoraSpec:
    targets: tuple[str, ...] = DEFAULT_TARGETS
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.targets:
            raise LoraError("--lora-targets is empty; name projections, e.g. q_proj,v_proj")
        if self.rank <= 0 or self.alpha <= 0:
            raise LoraError(f"--rank and --alpha must be positive, got {self.rank} and {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise LoraError(f"--lora-dropout must be in [0, 1), got {self.dropout}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets), "scaling": self.scaling}


def parse_targets(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def check_targets(model: Any, targets: tuple[str, ...]) -> None:
    """Every target must name a Linear projection inside the decoder layers (lm_head/embeddings are not
    adapted: SmolLM2 ties them, and a merged adapter would then change both)."""
    import torch

    present = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"
    }
    missing = [t for t in targets if t not in present]
    if missing:
        raise LoraError(
            f"LoRA target module(s) {', '.join(missing)} do not exist in the model's decoder layers; "
            f"choose among {','.join(p for p in DECODER_PROJECTIONS if p in present)}"
        )


def peft_config(spec: LoraSpec):
    from peft import LoraConfig

    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: Any, spec: LoraSpec):
    """``model`` wrapped in a peft ``PeftModel`` with fresh adapters (B = 0: the identity until trained)."""
    from peft import get_peft_model

    check_targets(model, spec.targets)
    return get_peft_model(model, peft_config(spec))


def base_record(checkpoint: Any, source_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "base": {**source_ref, "name": checkpoint.name, "directory": str(checkpoint.directory)},
        "base_fingerprint": checkpoint.fingerprint(),
    }


def write_base_record(adapter_dir: Path, checkpoint: Any, source_ref: dict[str, Any], spec: LoraSpec) -> None:
    record = {**base_record(checkpoint, source_ref), "lora": spec.to_json()}
    (Path(adapter_dir) / BASE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def read_adapter(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's base record; LoraError if the directory is not an adapter written by `finetune`."""
    adapter_dir = Path(adapter_dir)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_RECORD):
        if not (adapter_dir / name).is_file():
            raise LoraError(
                f"adapter {adapter_dir} has no {name}; pass the adapter/ directory written by `tinyexport finetune`"
            )
    try:
        record = json.loads((adapter_dir / BASE_RECORD).read_text())
        fingerprint = str(record["base_fingerprint"])
        spec = str(record["base"]["spec"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise LoraError(f"{adapter_dir / BASE_RECORD} is malformed ({err}); re-run `tinyexport finetune`") from None
    return {**record, "base_fingerprint": fingerprint, "base": {**record["base"], "spec": spec}}


def check_base(adapter_dir: Path, checkpoint: Any) -> dict[str, Any]:
    """LoraError unless ``checkpoint`` is the very checkpoint the adapter was trained on."""
    record = read_adapter(adapter_dir)
    if checkpoint.fingerprint() != record["base_fingerprint"]:
        raise LoraError(
            f"adapter {Path(adapter_dir)} was trained on another base checkpoint (fingerprint "
            f"{record['base_fingerprint'][:12]}, {checkpoint.name} has {checkpoint.fingerprint()[:12]}); "
            f"pass --checkpoint {record['base']['spec']}"
        )
    return record


def adapter_base_spec(
    adapter_dir: Path, override: str | None, random_weights: bool, seed: int
) -> tuple[str, bool, int]:
    """(spec, random_weights, seed) of the adapter's base: ``override`` or the one its record names.
    The resolved checkpoint must then pass ``check_base``."""
    record = read_adapter(adapter_dir)
    if override is not None:
        return override, random_weights, seed
    base = record["base"]
    return base["spec"], bool(base.get("random_weights", False)), int(base.get("seed", 0))


def load_base_model(checkpoint: Any):
    """transformers' LlamaForCausalLM of ``checkpoint`` (fp32, eager attention), as the reference runs it."""
    import torch
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(checkpoint.directory), dtype=torch.float32, attn_implementation="eager")


def unmerged_model(checkpoint: Any, adapter_dir: Path):
    """Base + the adapter as peft applies it at run time (``x W + s x A B``), never merged."""
    from peft import PeftModel

    check_base(adapter_dir, checkpoint)
    return PeftModel.from_pretrained(load_base_model(checkpoint), str(adapter_dir), is_trainable=False).eval()


def unmerged_reference(checkpoint: Any, adapter_dir: Path, *, max_len: int):
    """An ``HFRunner`` over base + unmerged adapter: the reference for a merged export."""
    from tinyexport.runners.hf_runner import HFRunner

    return HFRunner(unmerged_model(checkpoint, adapter_dir), checkpoint.config, max_len=max_len, name="hf+lora")
