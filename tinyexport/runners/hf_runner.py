"""HFRunner: transformers' LlamaForCausalLM in fp32, the reference (eager attention; sdpa for long windows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tinyexport.models.checkpoint import Checkpoint
from tinyexport.models.config import ModelConfig

from .base import as_tokens, check_capacity, check_rollback

HF_ATTENTION = ("eager", "sdpa")


class HFRunner:
    logits_positions = "all"

    def __init__(self, model: Any, config: ModelConfig, *, max_len: int = 2048, name: str = "hf") -> None:
        self.model = model.eval()
        self.config = config
        self.max_len = max_len
        self.name = name
        self.reset()

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, *, max_len: int = 2048, name: str = "hf", attention: str = "eager"
    ) -> HFRunner:
        """``attention``: transformers' ``attn_implementation``, ``eager`` (every score materialised: the
        most literal reference) or ``sdpa`` (torch's fused kernel, same fp32 math to ~1e-6)."""
        from transformers import LlamaForCausalLM

        if attention not in HF_ATTENTION:
            raise ValueError(f"transformers attention {attention!r}: choose one of {', '.join(HF_ATTENTION)}")
        model = LlamaForCausalLM.from_pretrained(
            str(checkpoint.directory), dtype=torch.float32, attn_implementation=attention
        )
        return cls(model, checkpoint.config, max_len=max_len, name=name)

    def reset(self) -> None:
        from transformers import DynamicCache

        self.position = 0
        self.cache = DynamicCache()

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on (``DynamicCache.crop``)."""
        check_rollback(self.name, self.position, position)
        if position < self.position:
            self.cache.crop(position)
        self.position = position

    @torch.inference_mode()
    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        out = self.model(input_ids=torch.from_numpy(ids)[None], past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.position += ids.size
        return out.logits[0].float().numpy()

    def decode(self, token: int) -> np.ndarray:
        return self.prefill(np.array([token]))[-1]
