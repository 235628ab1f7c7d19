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

from tinyexport.formats.tflite_io import INPUT_POS, LOGITS, TOKENS, cache_names
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
        self.span = span  # attend to cache slots [0, span) only (a static slice); None: every slot
        self.names = cache_names(model.config.num_layers)
        self.eval()

    def forward(self, tokens: Tensor, input_pos: Tensor, **caches: Tensor) -> dict[str, Tensor]:
        kv = [(caches[k], caches[v]) for k, v in zip(self.names[::2], self.names[1::2])]
        logits, new_kv = self.model(tokens, input_pos, kv, logits=self.logits, attend_len=self.span)
        out = {LOGITS: logits}
        for (k_name, v_name), (k, v) in zip(zip(self.names[::2], self.names[1::2]), new_kv):
            out[k_name], out[v_name] = k, v
        return out


def sample_inputs(config: ModelConfig, length: int, cache_len: int) -> dict[str, Tensor]:
    """Example inputs for tracing a signature of ``length`` tokens over a cache of ``cache_len`` slots."""
    shape = (1, config.num_kv_heads, cache_len, config.head_dim)
    inputs = {TOKENS: torch.zeros((1, length), dtype=torch.int32), INPUT_POS: torch.arange(length, dtype=torch.int32)}
    # distinct tensors: torch.export must not see the caches as aliases of one another
    inputs.update({name: torch.zeros(shape, dtype=torch.float32) for name in cache_names(config.num_layers)})
    return inputs
