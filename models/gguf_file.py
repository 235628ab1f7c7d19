"""A bounds-checked GGUF parser: metadata and tensor directory of a llama.cpp file, validated before
anything is allocated.

Every length, count and offset the file declares is checked against the bytes that remain before it is
used, so a corrupt or hostile file fails with a ``WeightsError`` naming the byte offset, in time linear
in the file's size, and never makes the reader allocate more than the file holds. Tensor data is
returned as read-only views of a memory map (numpy arrays shaped as ``gguf.quants.dequantize`` wants).

Layout (GGUF v2/v3, little-endian): magic ``GGUF``, u32 version, u64 tensor count, u64 metadata count;
metadata entries (string key, u32 type, value); tensor infos (string name, u32 n_dims, u64 dims...,
u32 ggml type, u64 offset); padding to ``general.alignment`` (default 32); tensor data.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
DEFAULT_ALIGNMENT = 32
# metadata value types: id -> (struct format, numpy dtype) for the fixed-size ones
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"),
    1: ("<b", "<i1"),
    2: ("<H", "<u2"),
    3: ("<h", "<i2"),
    4: ("<I", "<u4"),
    5: ("<i", "<i4"),
    6: ("<f", "<f4"),
    7: ("<?", "<u1"),
    10: ("<Q", "<u8"),
    11: ("<q", "<i8"),
    12: ("<d", "<f8"),
}
STRING, ARRAY = 8, 9
# element types stored as plain numbers (GGML F32, F16, I8, I16, I32, I64, F64, BF16 as raw u16)
_PLAIN_TENSOR_DTYPES = {0: "<f4", 1: "<f2", 24: "<i1", 25: "<i2", 26: "<i4", 27: "<i8", 28: "<f8"}


class GGUFFormatError(UserError, ValueError):
    """The file is not a well-formed GGUF (message names the byte offset and what was wrong)."""


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    ggml_type: int
    dims: tuple[int, ...]  # GGUF order: fastest-varying first
    offset: int  # absolute byte offset of the data in the file
    n_bytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy (row-major) shape: the dims reversed."""
        return tuple(reversed(self.dims))


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]
    data: Any  # the read-only memory map (or bytes) the tensors point into

    def tensor_array(self, name: str) -> np.ndarray:
        """The tensor's stored data as numpy wants it for ``gguf.quants.dequantize``: plain types typed and
        shaped, block-quantized types as uint8 rows of whole blocks."""
        t = self.tensors[name]
        plain = _PLAIN_TENSOR_DTYPES.get(t.ggml_type)
        if plain is not None:
            return np.frombuffer(
                self.data, dtype=plain, count=t.n_bytes // np.dtype(plain).itemsize, offset=t.offset
            ).reshape(t.shape)
        raw = np.frombuffer(self.data, dtype=np.uint8, count=t.n_bytes, offset=t.offset)
        return raw.reshape(*t.shape[:-1], -1) if len(t.shape) > 1 else raw


class _Cursor:
    def __init__(self, data: Any, path: Path) -> None:
        self.data, self.pos, self.size, self.path = data, 0, len(data), path

    def fail(self, what: str) -> GGUFFormatError:
        return GGUFFormatError(f"{self.path.name} is not a valid GGUF file: {what} at byte {self.pos}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise self.fail(f"{what} needs {n} bytes but {self.size - self.pos} remain")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        n = self.unpack("<Q", f"{what} length")
        self.need(n, what)
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, kind: int, key: str, depth: int = 0) -> Any:
        if kind in _SCALARS:
            value = self.unpack(_SCALARS[kind][0], f"value of {key!r}")
            return bool(value) if kind == 7 else value
        if kind == STRING:
            return self.string(f"value of {key!r}")
        if kind == ARRAY and depth == 0:
            elem = self.unpack("<I", f"array type of {key!r}")
            count = self.unpack("<Q", f"array length of {key!r}")
            if elem in _SCALARS:
                dtype = np.dtype(_SCALARS[elem][1])
                self.need(count * dtype.itemsize, f"{count} array items of {key!r}")
                values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
                self.pos += count * dtype.itemsize
                return [bool(v) for v in values] if elem == 7 else values.tolist()
            if elem == STRING:
                self.need(count * 8, f"{count} strings of {key!r}")  # each at least its u64 length
                return [self.string(f"item of {key!r}") for _ in range(count)]
            raise self.fail(f"array of {key!r} has unsupported element type {elem}")
        raise self.fail(f"metadata {key!r} has unsupported type {kind}")


def read_gguf_file(path: Path) -> GGUFFile:
    """Parse and validate ``path``; the tensor data stays on disk (memory-mapped)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data: Any = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as err:  # ValueError: the file was emptied between fstat and mmap
        raise GGUFFormatError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    cur = _Cursor(data, path)
    if cur.size < 24 or bytes(data[:4]) != MAGIC:
        raise GGUFFormatError(f"{path.name} is not a GGUF file (no GGUF magic and header)")
    cur.pos = 4
    version = cur.unpack("<I", "version")
    if version not in VERSIONS:
        raise cur.fail(f"unsupported GGUF version {version}")
    n_tensors = cur.unpack("<Q", "tensor count")
    n_kv = cur.unpack("<Q", "metadata count")
    cur.need(n_kv * 13, f"{n_kv} metadata entries")  # key length (8) + type (4) + 1-byte value at least
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        kind = cur.unpack("<I", f"type of {key!r}")
        if key in metadata:
            raise cur.fail(f"duplicate metadata key {key!r}")
        metadata[key] = cur.value(kind, key)
    cur.need(n_tensors * 24, f"{n_tensors} tensor infos")  # name length, n_dims, type, offset at least
    infos = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.unpack("<I", f"dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = tuple(cur.unpack("<Q", f"dimension of {name!r}") for _ in range(n_dims))
        ggml_type = cur.unpack("<I", f"type of {name!r}")
        offset = cur.unpack("<Q", f"data offset of {name!r}")
        infos.append((name, dims, ggml_type, offset))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
        raise cur.fail(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, GGUFTensor] = {}
    for name, dims, ggml_type, offset in infos:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise cur.fail(f"tensor {name!r} has unknown ggml type {ggml_type}") from None
        n_elements = 1
        for d in dims:
            n_elements *= d
        if n_elements == 0 or dims[0] % block:
            raise cur.fail(f"tensor {name!r} has shape {list(dims)}, not whole blocks of {block}")
        n_bytes = n_elements // block * type_size
        start = data_start + offset
        if start + n_bytes > cur.size or offset % alignment:
            raise cur.fail(
                f"tensor {name!r} ({n_bytes} bytes at offset {offset}) lies outside the file's {cur.size} bytes"
            )
        if name in tensors:
            raise cur.fail(f"duplicate tensor {name!r}")
        tensors[name] = GGUFTensor(name, ggml_type, dims, start, n_bytes)
    return GGUFFile(path, version, metadata, tensors, data)
