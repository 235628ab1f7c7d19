"""The I/O contract of a tinyexport ``.tflite`` file: signature and tensor names. Pure data, no torch.

Shared by the converter (which writes these names) and ``TFLiteRunner`` (which reads them), so the
two can never disagree. Every signature has the same inputs and outputs:

    inputs   tokens [1, T] int32, input_pos [T] int32, kv_cache_k_{i} / kv_cache_v_{i} [1, n_kv, S, hd]
    outputs  logits [1, T or 1, V] float32, kv_cache_k_{i} / kv_cache_v_{i} (the updated caches)

``T`` is the signature's length (``prefill_{T}`` or ``decode`` with T = 1) and ``S`` the
kv_cache_max_len. Outputs carry the input names, so a caller feeds them straight back.
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


def cache_names(num_layers: int) -> list[str]:
    """``kv_cache_k_0, kv_cache_v_0, kv_cache_k_1, ...``: per-layer key and value caches."""
    return [f"kv_cache_{kind}_{i}" for i in range(num_layers) for kind in ("k", "v")]


def signature_names(prefill_seq_lens: tuple[int, ...] | list[int]) -> list[str]:
    return [prefill_signature(n) for n in sorted(prefill_seq_lens)] + [DECODE]
