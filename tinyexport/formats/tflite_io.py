"""The I/O contract of a tinyexport ``.tflite`` file: signature and tensor names. Pure data, no torch.

Shared by the converter (which writes these names) and ``TFLiteRunner`` (which reads them), so the
two can never disagree. Every signature has the same inputs and outputs:

    inputs   tokens [1, T] int32, input_pos [T] int32, kv_cache_k_{i} / kv_cache_v_{i} [1, n_kv_i, S, hd]
    outputs  logits [1, T or 1, V] float32, kv_cache_k_{i} / kv_cache_v_{i} (the updated caches)

``T`` is the signature's length (``prefill_{T}`` or ``decode`` with T = 1) and ``S`` the
kv_cache_max_len. Outputs carry the input names, so a caller feeds them straight back. ``n_kv_i`` is
layer i's KV head count (``ModelConfig.layer_heads``). An int8 KV cache (``kv_cache_dtype="int8"``)
stores k/v as int8 and adds per layer ``kv_cache_k_scale_{i}`` / ``kv_cache_v_scale_{i}`` float32
[1, n_kv_i, S, 1], inputs and outputs alike.
"""

from __future__ import annotations

TOKENS = "tokens"
INPUT_POS = "input_pos"
LOGITS = "logits"
DECODE = "decode"
PREFILL_PREFIX = "prefill_"


def prefill_signature(length: int) -> str:
    return f"{PREFILL_PREFIX}{length}"


def prefill_length(signature: str) -> int | None:
    """``"prefill_64"`` -> 64; None for any other name."""
    if signature.startswith(PREFILL_PREFIX) and signature[len(PREFILL_PREFIX) :].isdigit():
        return int(signature[len(PREFILL_PREFIX) :])
    return None


def cache_names(num_layers: int, int8: bool = False) -> list[str]:
    """``kv_cache_k_0, kv_cache_v_0, kv_cache_k_1, ...``: per-layer key and value caches, in the order of
    a layer's cache tuple (``+ kv_cache_k_scale_{i}, kv_cache_v_scale_{i}`` for an int8 cache)."""
    kinds = ("k", "v", "k_scale", "v_scale") if int8 else ("k", "v")
    return [f"kv_cache_{kind}_{i}" for i in range(num_layers) for kind in kinds]


def cache_specs(config) -> dict[str, tuple[tuple[int, ...], str]]:
    """Cache tensor name -> (shape without the cache length, i.e. (1, n_kv, hd) or (1, n_kv, 1), dtype)."""
    int8 = config.kv_cache_dtype == "int8"
    names = cache_names(config.num_layers, int8)
    per_layer = len(names) // config.num_layers
    specs = {}
    for index, name in enumerate(names):
        n_kv, kind = config.layer_heads(index // per_layer)[1], index % per_layer
        if kind < 2:
            specs[name] = ((1, n_kv, config.head_dim), "int8" if int8 else "float32")
        else:
            specs[name] = ((1, n_kv, 1), "float32")
    return specs


def signature_names(prefill_seq_lens: tuple[int, ...] | list[int]) -> list[str]:
    return [prefill_signature(n) for n in sorted(prefill_seq_lens)] + [DECODE]
