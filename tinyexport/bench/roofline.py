"""Roofline bounds: decode is bounded by memory bandwidth, prefill by matmul throughput.

Decode, one token: every weight is read once (except an untied embedding table, of which one row is
gathered), plus the K and V cache slots the attention actually reads:

* ``growing`` caches (torch runner, transformers, ONNX ``past`` -> ``present``) read the filled slots,
  ``fill + 1`` per step, so decode slows down gently as the context grows;
* a ``fixed`` cache (TFLite: one static ``kv_cache_max_len`` buffer, masked) reads all its slots every
  step, however few are filled -- a 1024-slot cache costs the same at token 10 as at token 1000 --
  unless the file has attention spans (``decode_s{W}``): then a step reads the smallest span ``W`` that
  holds ``fill + 1`` slots.

The bound counts only these compulsory reads (no activations, no copies of the cache a runtime may
make), so it is a true upper bound: ``decode tok/s <= bandwidth / bytes per token``.

Prefill of ``T`` tokens: ``prefill tok/s <= matmul peak * T / FLOPs(prefill)``, FLOPs from
``tinyexport.flops`` with the keys the candidate attends and the logits positions it computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tinyexport.flops import estimate
from tinyexport.models.config import ModelConfig

# How each backend's decode reads its KV cache (see the module docstring).
CACHE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "torch": "growing",  # fixed buffer, but attention reads only the filled slots (attend_len)
        "hf": "growing",  # transformers DynamicCache
        "onnx": "growing",  # past_key_values -> present, one slot longer per step
        "tflite": "fixed",  # static kv_cache_max_len buffer, masked
        "gguf": "growing",  # llama.cpp attends the filled cells only (rounded up to its padding)
        "executorch": "fixed",  # mutable-buffer cache of kv_cache_max_len slots, masked
    }
)


@dataclass(frozen=True)
class MemoryModel:
    config: ModelConfig
    weight_bytes: int  # stored weights (artefact manifest's weight_bytes, else its model files; checkpoint files)
    cache_kind: str  # "growing" | "fixed"
    capacity: int  # cache slots (what a fixed cache reads every step)
    kv_dtype_bytes: int = 4
    spans: tuple[
        int, ...
    ] = ()  # attention spans (< capacity) of a fixed cache: a step reads the smallest one that fits

    def __post_init__(self) -> None:
        if self.cache_kind not in ("growing", "fixed"):
            raise ValueError(f"cache_kind must be 'growing' or 'fixed', got {self.cache_kind!r}")

    @property
    def weight_bytes_per_token(self) -> float:
        """Weights read per decode step, assuming every parameter takes the same bytes on disk."""
        c = self.config
        total = c.num_parameters()
        skipped = 0 if c.tie_embeddings else c.vocab_size * c.hidden_size - c.hidden_size
        return self.weight_bytes * (total - skipped) / total

    @property
    def kv_bytes_per_slot(self) -> int:
        """K and V bytes of one cache slot, summed over layers (KV heads may differ per layer after
        ``prune-heads=R:groups``); an int8 cache holds 1 byte per element plus a 4-byte scale per head."""
        c = self.config
        kv_heads = sum(c.layer_heads(i)[1] for i in range(c.num_layers))
        per_head = c.head_dim + 4 if c.kv_cache_dtype == "int8" else c.head_dim * self.kv_dtype_bytes
        return 2 * kv_heads * per_head

    def kv_slots_read(self, fill: int) -> int:
        """Slots read by a decode step that starts with ``fill`` tokens in the cache."""
        if self.cache_kind == "growing":
            return fill + 1
        return min(w for w in (*self.spans, self.capacity) if w >= min(fill + 1, self.capacity))

    def bytes_per_token(self, fill: int) -> float:
        return self.weight_bytes_per_token + self.kv_slots_read(fill) * self.kv_bytes_per_slot

    def mean_bytes_per_token(self, fills: Iterable[int]) -> float:
        fills = list(fills)
        return sum(self.bytes_per_token(f) for f in fills) / len(fills)


def decode_bound(memory: MemoryModel, fills: Iterable[int], bandwidth_gb_s: float) -> dict[str, float]:
    """Upper bound on decode tok/s over steps starting at ``fills`` (time per step = bytes / bandwidth)."""
    per_token = memory.mean_bytes_per_token(fills)
    return {
        "bytes_per_token": per_token,
        "weight_bytes_per_token": memory.weight_bytes_per_token,
        "bound_tok_s": bandwidth_gb_s * 1e9 / per_token,
    }


def prefill_bound(
    config: ModelConfig, tokens: int, key_len: int, logits: str, matmul_gflops: float
) -> dict[str, float]:
    """Upper bound on prefill tok/s from the FLOPs model and a measured matmul peak."""
    flops = estimate(config, tokens, key_len=key_len, logits="all" if logits == "all" else "last").total_flops
    return {"flops": flops, "flops_per_token": flops / tokens, "bound_tok_s": matmul_gflops * 1e9 * tokens / flops}
