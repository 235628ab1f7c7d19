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

Attention spans (optional, ``--decode-spans``): ``decode_s{W}`` and ``prefill_{T}_s{W}`` take and
return the same full ``S``-slot caches but attend only to slots ``[0, W)``, so a call whose last
position is below ``W`` reads ``W`` slots instead of ``S``. A signature without a suffix spans all
``S`` slots. The weights are shared by every signature (stored once).
"""

from __future__ import annotations

TOKENS = "tokens"
INPUT_POS = "input_pos"
LOGITS = "logits"
DECODE = "decode"
PREFILL_PREFIX = "prefill_"


SPAN_SEPARATOR = "_s"


def prefill_signature(length: int, span: int | None = None) -> str:
    return f"{PREFILL_PREFIX}{length}" + (f"{SPAN_SEPARATOR}{span}" if span is not None else "")


def decode_signature(span: int | None = None) -> str:
    return DECODE + (f"{SPAN_SEPARATOR}{span}" if span is not None else "")


def parse_signature(signature: str) -> tuple[int, int | None] | None:
    """``"decode"`` -> (1, None), ``"prefill_64_s256"`` -> (64, 256): (tokens per call, attention
    span or None for the whole cache); None for a name that is not ours."""
    base, _, span_text = signature.partition(SPAN_SEPARATOR)
    if span_text and not span_text.isdigit():
        return None
    span = int(span_text) if span_text else None
    if base == DECODE:
        return 1, span
    if base.startswith(PREFILL_PREFIX) and base[len(PREFILL_PREFIX) :].isdigit():
        return int(base[len(PREFILL_PREFIX) :]), span
    return None


def prefill_length(signature: str) -> int | None:
    """``"prefill_64"`` (or ``"prefill_64_s256"``) -> 64; None for any other name."""
    parsed = parse_signature(signature)
    return parsed[0] if parsed and signature.startswith(PREFILL_PREFIX) else None


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


def signature_names(
    prefill_seq_lens: tuple[int, ...] | list[int],
    spans: tuple[int, ...] | list[int] = (),
    prefill_spans: bool = True,
) -> list[str]:
    """Every signature of a file: for each span (ascending, then the whole cache) the prefill lengths
    that fit in it (whole cache only when ``prefill_spans`` is false), then decode."""
    names = []
    for span in [*sorted(spans), None]:
        if span is None or prefill_spans:
            names += [prefill_signature(n, span) for n in sorted(prefill_seq_lens) if span is None or n <= span]
        names.append(decode_signature(span))
    return names
