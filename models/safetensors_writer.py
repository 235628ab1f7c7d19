"""Stream tensors into a .safetensors file one at a time (a 1.1B checkpoint never sits twice in RAM)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

from .config import ModelConfig
from .weights import expected_shapes, name_table

_DTYPES = {torch.float32: ("F32", 4)}


def write_safetensors_streaming(
    path: Path, config: ModelConfig, tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype = torch.float32
) -> None:
    """Write HF-named tensors of ``config``'s shapes, in table order, to ``path``.

    The header is computed from the config before any tensor exists; each tensor must arrive in
    ``name_table`` order with the expected shape (checked).
    """
    tag, itemsize = _DTYPES[dtype]
    shapes = expected_shapes(config)
    order = [(hf, shapes[ours]) for ours, hf, _ in name_table(config)]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in order:
        size = itemsize * int(torch.Size(shape).numel())
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for (name, shape), (got_name, tensor) in zip(order, tensors, strict=True):
            if got_name != name or tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"expected {name} {list(shape)}, got {got_name} {list(tensor.shape)}")
            out.write(tensor.to(dtype).contiguous().numpy().tobytes())
