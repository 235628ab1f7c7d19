"""Weight quantization of an ONNX graph one initializer at a time, so memory stays at one tensor.

onnxruntime's ``MatMulNBitsQuantizer`` and ``quantize_dynamic`` load the whole float graph as one
protobuf, then build the quantized copy beside it (the 1.1B shape peaked at 10.5 GB for int8 and
11.6 GB for int4, ~2.5x its fp32 weights). Here the float graph is first written to a scratch file
with its tensors as external data (``offload``) and the torch weights are dropped; then each weight
is read from that file, quantized with onnxruntime's own arithmetic (the same C++ block kernels
``quantize_matmul_{4,8}bits`` and numpy functions the two tools call, so the bytes are identical),
appended to a scratch data file, and freed before the next one is read (``quantize_weights``).

What each weight becomes is what the two tools make of our graphs:

* a ``MatMul`` whose 2-D weight is an initializer -> ``com.microsoft.MatMulNBits`` (symmetric, blocks
  of 32 along K, ``bits`` 8 or 4, ``accuracy_level`` 4): inputs ``A, {w}_Q{bits}, {w}_scales``;
* ``embedding="block"`` (int4): a ``Gather`` over an initializer -> ``GatherBlockQuantized`` (int4,
  symmetric, blocks of 32 along the hidden axis): ``{w}_Q4``, ``{w}_scales``;
* ``embedding="uint8"`` (``quantize_dynamic``'s treatment of a Gather): the table as uint8 with one
  asymmetric scale and zero point, ``Gather`` -> ``DequantizeLinear``.

Other nodes and weights are left as they are (MatMul weights of another rank stay float, as the size
check of the pipeline would then report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # int8 activations inside the MatMulNBits kernel


@dataclass(frozen=True)
class StreamRecipe:
    bits: int  # MatMul weights: 8 or 4
    embedding: str  # "block" (GatherBlockQuantized, int4) or "uint8" (Gather + DequantizeLinear)


def offload(model, path: Path):
    """Write ``model`` to ``path`` with every tensor in ``path.data`` and return it read back with lazy
    external tensors. ``model`` is left as it was (the torch weights it points at are the caller's to
    free: ``onnx.free_weights``)."""
    import onnx_ir as ir

    ir.save(model, path, external_data=path.name + ".data")
    return ir.load(path)


class _DataFile:
    """Appends tensors to one external-data file and hands back ``ExternalTensor`` references to them."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle, self.path, self.offset = handle, path, 0

    def add(self, name: str, data: np.ndarray, dtype=None, shape=None):
        import onnx_ir as ir

        data = np.ascontiguousarray(data)
        dtype = dtype or ir.DataType.from_numpy(data.dtype)
        self.handle.write(memoryview(data).cast("B"))
        tensor = ir.ExternalTensor(
            self.path.name,
            self.offset,
            data.nbytes,
            dtype,
            shape=ir.Shape(data.shape if shape is None else shape),
            name=name,
            base_dir=str(self.path.parent),
        )
        self.offset += data.nbytes
        return ir.Value(name=name, const_value=tensor, shape=tensor.shape, type=ir.TensorType(dtype))


def _read(value) -> np.ndarray:
    """The initializer's data as a fresh in-memory array (read, not memory-mapped: the pages go to the
    page cache, not this process's resident set), then the lazy tensor is released."""
    import onnx_ir as ir

    tensor = value.const_value
    if isinstance(tensor, ir.ExternalTensor):
        array = np.fromfile(
            tensor.path, dtype=tensor.dtype.numpy(), count=tensor.size, offset=tensor.offset or 0
        ).reshape(tensor.shape.numpy())
        tensor.release()
        return array
    return tensor.numpy()


def _weight(node, index: int):
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None or not value.is_initializer() or value.const_value is None:
        return None
    return value


def quantize_weights(model, recipe: StreamRecipe, data_path: Path) -> dict[str, int]:
    """Rewrite ``model`` in place, weight by weight; quantized tensors go to ``data_path``. Returns counts."""
    import onnx_ir as ir
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        DefaultWeightOnlyQuantizer,
    )

    blocks = DefaultWeightOnlyQuantizer(
        DefaultWeightOnlyQuantConfig(
            block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL, bits=recipe.bits
        )
    )
    graph = model.graph
    counts = {"matmul": 0, "gather": 0}
    with open(data_path, "wb") as handle:
        out = _DataFile(handle, data_path)
        for node in list(graph):
            if node.op_type == "MatMul" and node.domain == "" and (weight := _weight(node, 1)) is not None:
                if weight.shape is None or len(weight.shape) != 2:
                    continue
                replacement = _matmul_nbits(node, weight, blocks, recipe.bits, out)
                counts["matmul"] += 1
            elif node.op_type == "Gather" and node.domain == "" and (table := _weight(node, 0)) is not None:
                if table.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
                    continue
                if recipe.embedding == "block":
                    replacement = _gather_block(node, table, blocks, out)
                else:
                    replacement = _gather_uint8(node, table, out)
                counts["gather"] += 1
            else:
                continue
            for value in [v for v in replacement.initializers if v.name not in graph.initializers]:
                graph.register_initializer(value)
            graph.insert_after(node, replacement.nodes)
            for old, new in zip(node.outputs, replacement.outputs):
                ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
                name, old.name = old.name, None
                new.name = name
            graph.remove(node, safe=True)
    _drop_unused_initializers(graph)
    model.opset_imports.setdefault("com.microsoft", 1)
    return counts


@dataclass
class _Replacement:
    nodes: list
    outputs: list
    initializers: list


def _matmul_nbits(node, weight, blocks, bits: int, out: _DataFile) -> _Replacement:
    import onnx_ir as ir

    w = _read(weight)
    k, n = w.shape
    packed, scales, _ = blocks.qbits_block_quant(w)  # symmetric: the zero points are not stored
    del w
    q = out.add(f"{weight.name}_Q{bits}", packed)
    s = out.add(f"{weight.name}_scales", scales)
    del packed, scales
    attributes = [
        ir.AttrInt64("K", k),
        ir.AttrInt64("N", n),
        ir.AttrInt64("accuracy_level", ACCURACY_LEVEL),
        ir.AttrInt64("bits", bits),
        ir.AttrInt64("block_size", BLOCK_SIZE),
    ]
    new = ir.Node(
        "com.microsoft",
        "MatMulNBits",
        [node.inputs[0], q, s],
        attributes=attributes,
        name=f"{node.name}_Q{bits}" if node.name else "",
    )
    _copy_type(node.outputs[0], new.outputs[0])
    return _Replacement([new], [new.outputs[0]], [q, s])


def _gather_block(node, table, blocks, out: _DataFile) -> _Replacement:
    import onnx_ir as ir

    data = _read(table)
    axis = 1
    quantized, scales, _ = blocks.quantize_ndarray(data, axis, BLOCK_SIZE, True)
    shape = data.shape
    del data
    q = out.add(f"{table.name}_Q4", quantized, dtype=ir.DataType.INT4, shape=shape)
    s = out.add(f"{table.name}_scales", scales)
    del quantized, scales
    gather_axis = node.attributes.get_int("axis", 0)
    new = ir.Node(
        "com.microsoft",
        "GatherBlockQuantized",
        [q, node.inputs[1], s],
        attributes=[
            ir.AttrInt64("block_size", BLOCK_SIZE),
            ir.AttrInt64("gather_axis", gather_axis),
            ir.AttrInt64("quantize_axis", axis),
        ],
        name=f"{node.name}_Q4" if node.name else "",
    )
    _copy_type(node.outputs[0], new.outputs[0])
    return _Replacement([new], [new.outputs[0]], [q, s])


def _gather_uint8(node, table, out: _DataFile) -> _Replacement:
    """``quantize_dynamic``'s Gather: uint8 table, one asymmetric scale/zero point, DequantizeLinear."""
    import onnx_ir as ir
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data

    data = _read(table)
    shape = data.shape
    zero_point, scale, quantized = quantize_data(data.reshape(-1), TensorProto.UINT8, False)
    del data
    q = out.add(f"{table.name}_quantized", np.asarray(quantized, dtype=np.uint8).reshape(shape))
    del quantized
    scale_value = _small(f"{table.name}_scale", np.asarray(scale, dtype=np.float32).reshape(()))
    zero_value = _small(f"{table.name}_zero_point", np.asarray(zero_point, dtype=np.uint8).reshape(()))
    output = node.outputs[0]
    gather = ir.Node("", "Gather", [q, node.inputs[1]], attributes=list(node.attributes.values()), name=node.name or "")
    gather.outputs[0].name = f"{output.name}_quantized"
    gather.outputs[0].dtype = ir.DataType.UINT8
    dequant = ir.Node(
        "",
        "DequantizeLinear",
        [gather.outputs[0], scale_value, zero_value],
        name=f"{output.name}_DequantizeLinear",
    )
    _copy_type(output, dequant.outputs[0])
    return _Replacement([gather, dequant], [dequant.outputs[0]], [q, scale_value, zero_value])


def _small(name: str, array: np.ndarray):
    import onnx_ir as ir

    return ir.Value(
        name=name,
        const_value=ir.tensor(array, name=name),
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
    )


def _copy_type(old, new) -> None:
    new.type, new.shape = old.type, old.shape


def _drop_unused_initializers(graph) -> None:
    for name, value in list(graph.initializers.items()):
        if not value.uses() and value not in graph.outputs:
            graph.initializers.pop(name)
