"""The Llama-family re-implementation (``tinyexport.models``): config, model, weights, checkpoints.

Only ``config`` is imported eagerly; the rest needs torch and is imported where it is used.
"""

from .config import DEFAULT_CHECKPOINT, PRESETS, ModelConfig

__all__ = ["DEFAULT_CHECKPOINT", "PRESETS", "ModelConfig"]
