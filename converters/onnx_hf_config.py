"""``config.json`` and ``generation_config.json``: what Optimum's ``ORTModelForCausalLM`` (and transformers'
``generate``) read beside an ONNX model, so the artefact directory loads as it is.

``config.json`` is the source checkpoint's own config with the exported architecture laid over it (so
a future export that changes the shape -- pruned heads, fewer layers -- is reflected, not contradicted),
``max_position_embeddings`` lowered to the graph's capacity (its RoPE table holds
``kv_cache_max_len`` positions) and ``use_cache`` true (the graph takes ``past_key_values``). The result
is read back with the same parser ``--checkpoint`` uses; a config that does not describe the exported
model is refused instead of shipped. ``generation_config.json`` is the source's, or one made from the
config's special token ids.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tinyexport.errors import CheckError
from tinyexport.models.config import ModelConfig, UnsupportedModelError, config_from_hf_dict

HF_CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
# ModelConfig.to_hf_dict keys that describe the architecture; everything else of the source is kept.
_NOT_SHAPE = ("architectures", "torch_dtype")


class HFConfigError(CheckError):
    """The config.json written beside the ONNX model would not describe the exported model."""


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise HFConfigError(f"{path} is not a JSON object; cannot derive the artefact's {path.name}")
    return data


def hf_config(source: dict[str, Any], exported: ModelConfig, *, context_length: int) -> dict[str, Any]:
    """The source ``config.json`` dict updated to describe ``exported`` as the ONNX graph runs it."""
    out = dict(source)
    out.update({k: v for k, v in exported.to_hf_dict().items() if k not in _NOT_SHAPE})
    out["max_position_embeddings"] = min(exported.max_position_embeddings, context_length)
    out["use_cache"] = True
    expected = dataclasses.replace(exported, max_position_embeddings=out["max_position_embeddings"])
    try:
        described = config_from_hf_dict(out)
    except (UnsupportedModelError, ValueError) as err:
        raise HFConfigError(f"the artefact's config.json would not describe the exported model ({err})") from None
    if described != expected:
        differ = sorted(
            f.name for f in dataclasses.fields(ModelConfig) if getattr(described, f.name) != getattr(expected, f.name)
        )
        raise HFConfigError(f"the artefact's config.json would describe another model (fields {differ} differ)")
    return out


def generation_config(source: dict[str, Any] | None, exported: ModelConfig) -> dict[str, Any]:
    """The source's generation config, with bos/eos/pad ids from the model config where it has none."""
    out = dict(source or {})
    for key, value in (("bos_token_id", exported.bos_token_id), ("eos_token_id", exported.eos_token_id)):
        if out.get(key) is None and value is not None:
            out[key] = value
    if out.get("pad_token_id") is None and exported.eos_token_id is not None:
        out["pad_token_id"] = exported.eos_token_id  # batch-1 generate never pads; silences the warning
    return out


def write_hf_configs(directory: Path, source_dir: Path, exported: ModelConfig, *, context_length: int) -> list[str]:
    """Write both files into ``directory`` from the checkpoint directory ``source_dir``; return their names."""
    source = _read_json(Path(source_dir) / HF_CONFIG)
    gen_path = Path(source_dir) / GENERATION_CONFIG
    gen_source = _read_json(gen_path) if gen_path.is_file() else None
    config = hf_config(source, exported, context_length=context_length)
    (Path(directory) / HF_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (Path(directory) / GENERATION_CONFIG).write_text(
        json.dumps(generation_config(gen_source, exported), indent=2) + "\n"
    )
    return [HF_CONFIG, GENERATION_CONFIG]
