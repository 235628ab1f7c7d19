"""Build a ``Llama`` from a config and our-named weights, or straight from a resolved checkpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor

from .build import build_model
from .checkpoint import Checkpoint
from .config import ModelConfig
from .llama import Llama
from .transforms import Transform, TransformError, apply_transforms
from .weights import load_hf_weights

__all__ = ["build_model", "load_model", "load_state", "transform_checkpoint"]


def load_state(checkpoint: Checkpoint) -> tuple[ModelConfig, dict[str, Tensor]]:
    """The checkpoint's config and our-named weights, its transforms applied."""
    config = checkpoint.directory_config
    state = load_hf_weights(config, checkpoint.directory)
    if checkpoint.transforms:
        config, state, _ = apply_transforms(config, state, checkpoint.transforms)
    if config != checkpoint.config:
        raise TransformError(
            f"{checkpoint.name}: its transforms give a model of another shape than recorded; re-run `tinyexport convert`"
        )
    return config, state


def load_model(checkpoint: Checkpoint, **kwargs) -> Llama:
    """Our model with the checkpoint's weights, transforms applied (keyword arguments as ``build_model``)."""
    return build_model(*load_state(checkpoint), **kwargs)


def transform_checkpoint(checkpoint: Checkpoint, transforms: Sequence[Transform], calibration=None) -> Checkpoint:
    """``checkpoint`` with ``transforms`` planned on its weights (``calibration``: token ids for
    data-aware criteria); the weights are transformed again, from the plan, whenever they load."""
    if not transforms:
        return checkpoint
    base = checkpoint.directory_config
    state = load_hf_weights(base, checkpoint.directory)
    config, _, planned = apply_transforms(base, state, (*checkpoint.transforms, *transforms), calibration)
    return dataclasses.replace(checkpoint, config=config, transforms=planned, source_config=base)
