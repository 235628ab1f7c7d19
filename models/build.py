"""Build a ``Llama`` from a config and our-named weights (no checkpoint, no transforms)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .config import ModelConfig
from .llama import KVWriter, Llama
from .weights import check_shapes


def build_model(
    config: ModelConfig,
    state: Mapping[str, Tensor],
    *,
    max_seq_len: int | None = None,
    attention: str = "standard",
    flash_block_size: int = 128,
    kv_writer: str | KVWriter = "index_copy",
) -> Llama:
    """Construct on the meta device and adopt ``state``'s tensors (no random init, no extra copy)."""
    check_shapes(config, state)
    with torch.device("meta"):
        model = Llama(
            config, max_seq_len=max_seq_len, attention=attention, flash_block_size=flash_block_size, kv_writer=kv_writer
        )
    full = dict(state)
    if config.tie_embeddings:
        full["lm_head.weight"] = full["tok_embeddings.weight"]
    model.load_state_dict(full, strict=True, assign=True)
    if config.tie_embeddings:  # assign=True makes two Parameters; make it one so exporters store it once
        model.lm_head.weight = model.tok_embeddings.weight
    return model.eval()
