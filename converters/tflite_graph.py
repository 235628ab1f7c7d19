"""The torch side of a TFLite export: the cache writer and one exportable module per signature.

The model (``models.llama.Llama``) is built once with ``DUS_WRITER``, so each layer's new keys and
values enter its cache as one ``dynamic_update_slice`` at ``input_pos[0]`` (LiteRT updates the slice
in place instead of copying the cache, as ``index_copy`` would lower to a scatter). The writer assumes
the positions of one call are contiguous from ``input_pos[0]``; that is what every signature feeds,
and a write must fit inside the cache (``input_pos[0] + T <= S``; the runtime clamps otherwise).
"""

from __future__ import annotations

import torch
from litert_torch.generative.custom_ops.dynamic_update_slice import dynamic_update_slice
from torch import Tensor, nn

from tinyexport.formats.tflite_io import INPUT_POS, LOGITS, TOKENS, cache_names, cache_specs
from tinyexport.models.config import ModelConfig
from tinyexport.models.llama import KVWriter, Llama, LogitsPositions


def _write_dynamic_update_slice(cache: Tensor, new: Tensor, input_pos: Tensor) -> Tensor:
    """cache (B, n_kv, S, hd) <- new (B, n_kv, T, hd) at slot input_pos[0] (contiguous positions)."""
    zero = torch.zeros([], dtype=torch.int32)
    start = input_pos[0].to(torch.int32).reshape([])
    return dynamic_update_slice(cache, new, [zero, zero, start, zero])


DUS_WRITER = KVWriter("dynamic_update_slice", _write_dynamic_update_slice, grows=False)


class SignatureModule(nn.Module):
    """One signature: flat named inputs -> {"logits", "kv_cache_k_0", ...} (outputs named as inputs)."""

    def __init__(self, model: Llama, logits: LogitsPositions, span: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.logits = logits
        config = model.config
        names = cache_names(config.num_layers, config.kv_cache_dtype == "int8")
        per_layer = len(names) // config.num_layers  # (k, v) or (k, v, k_scale, v_scale)
        self.layer_names = [names[i : i + per_layer] for i in range(0, len(names), per_layer)]
        self.span = span  # attend to cache slots [0, span) only (a static slice); None: every slot
        self.eval()

    def forward(self, tokens: Tensor, input_pos: Tensor, **caches: Tensor) -> dict[str, Tensor]:
        kv = [tuple(caches[n] for n in names) for names in self.layer_names]
        logits, new_kv = self.model(tokens, input_pos, kv, logits=self.logits, attend_len=self.span)
        out = {LOGITS: logits}
        for names, layer_cache in zip(self.layer_names, new_kv):
            out.update(zip(names, layer_cache))
        return out


def sample_inputs(config: ModelConfig, length: int, cache_len: int) -> dict[str, Tensor]:
    """Example inputs for tracing a signature of ``length`` tokens over a cache of ``cache_len`` slots."""
    inputs = {TOKENS: torch.zeros((1, length), dtype=torch.int32), INPUT_POS: torch.arange(length, dtype=torch.int32)}
    # distinct tensors: torch.export must not see the caches as aliases of one another
    for name, ((b, n_kv, last), dtype) in cache_specs(config).items():
        inputs[name] = torch.zeros((b, n_kv, cache_len, last), dtype=getattr(torch, dtype))
    return inputs
