"""TorchRunner: the PyTorch re-implementation behind the Runner protocol."""

from __future__ import annotations

import numpy as np
import torch

from tinyexport.models.checkpoint import Checkpoint
from tinyexport.models.llama import KV_WRITERS, Llama, empty_kv_cache
from tinyexport.models.loading import load_model

from .base import as_tokens, check_capacity, check_rollback


class TorchRunner:
    """Eager PyTorch, fixed-size cache written in place, attention limited to the filled slots."""

    logits_positions = "all"

    def __init__(self, model: Llama, *, max_len: int | None = None, name: str | None = None) -> None:
        if model.kv_writer.grows:
            raise ValueError("TorchRunner needs a fixed-size cache writer, not 'concat'")
        self.model = model.eval()
        self.config = model.config
        self.max_len = max_len or model.max_seq_len
        if self.max_len > model.max_seq_len:
            raise ValueError(f"max_len {self.max_len} exceeds the model's RoPE table ({model.max_seq_len})")
        self.name = name or f"torch:{model.attention}"
        self.reset()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        attention: str = "standard",
        max_len: int = 2048,
        flash_block_size: int = 128,
        name: str | None = None,
    ) -> TorchRunner:
        model = load_model(
            checkpoint,
            max_seq_len=max_len,
            attention=attention,
            flash_block_size=flash_block_size,
            kv_writer=KV_WRITERS["index_copy_inplace"],
        )
        return cls(model, max_len=max_len, name=name)

    def reset(self) -> None:
        self.position = 0
        self.kv = empty_kv_cache(self.config, self.max_len)

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on. Their slots stay written but are never read again: a call
        at ``position`` overwrites its own slots first and attends to ``attend_len`` = its end only."""
        check_rollback(self.name, self.position, position)
        self.position = position

    @torch.inference_mode()
    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        end = self.position + ids.size
        input_pos = torch.arange(self.position, end, dtype=torch.long)
        logits, self.kv = self.model(torch.from_numpy(ids)[None], input_pos, self.kv, attend_len=end)
        self.position = end
        return logits[0].float().numpy()

    def decode(self, token: int) -> np.ndarray:
        return self.prefill(np.array([token]))[-1]
