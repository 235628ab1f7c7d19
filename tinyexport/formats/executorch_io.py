"""The method contract of a tinyexport ExecuTorch program (``model.pte``). Pure data, no executorch
import. Shared by the converter and ``ExecuTorchRunner``, so neither can disagree.

    prefill(tokens (1, T) int64, input_pos (T,) int64) -> logits (1, T or 1, V) float32,  2 <= T <= max
    decode(tokens (1, 1) int64, input_pos (1,) int64)  -> logits (1, 1, V) float32
    reset(dummy (1,) float32)                          -> (1,) float32; zeroes every KV-cache buffer

The KV cache is not an input: it is one pair of mutable buffers per layer (``k_cache_{i}``,
``v_cache_{i}``, (1, n_kv, kv_cache_max_len, hd) float32), written in place at ``input_pos`` and shared by
the three methods (ExecuTorch's ``share_mutable_buffers``). ``prefill`` returns every position's logits
or the last one's, as the manifest's ``prefill_logits`` says.
"""

from __future__ import annotations

PREFILL = "prefill"
DECODE = "decode"
RESET = "reset"
METHODS = (PREFILL, DECODE, RESET)
K_CACHE = "k_cache_%d"
V_CACHE = "v_cache_%d"
MIN_PREFILL = 2  # a one-token call goes to ``decode`` (torch.export specialises a dynamic dim of size 1)
