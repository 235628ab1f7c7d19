"""Read facts back from a written ``.tflite`` flatbuffer (no interpreter, no torch): how many bytes of
constant data it stores, and of which element types. The converter records these in the manifest and
the export pipeline checks them against the recipe (fp32 weights left behind cannot hide in them).
"""

from __future__ import annotations

import mmap
from collections import Counter
from pathlib import Path


def constant_bytes_by_type(path: Path) -> dict[str, int]:
    """Bytes of constant tensor data per element type (e.g. ``{"INT8": ..., "FLOAT32": ...}``).

    Each buffer is counted once however many signatures (subgraphs) use it. Buffers stored after the
    flatbuffer (files over 2 GB keep an offset and size instead of inline data) are counted by size.
    """
    from ai_edge_litert import schema_py_generated as schema

    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        sizes = {}
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            sizes[i] = buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()
        seen: dict[int, str] = {}
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                if sizes.get(tensor.Buffer(), 0) > 0:
                    seen.setdefault(tensor.Buffer(), type_names.get(tensor.Type(), str(tensor.Type())))
        counts: Counter[str] = Counter()
        for index, type_name in seen.items():
            counts[type_name] += sizes[index]
    return dict(sorted(counts.items()))


def signature_keys(path: Path) -> list[str]:
    """The file's SignatureDef keys in stored order (the interpreter APIs return them as an unordered
    mapping; LiteRT-LM walks them in this order)."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        return [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]
