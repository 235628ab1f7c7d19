"""What one signature of a .tflite file executes: ops by type with the elements they write, and the
cache-sized ops in particular (those whose output has the cache length S in its shape).

    python scripts/tflite_op_census.py out/a/model.tflite [out/b/model.tflite ...] [--signature decode]

Used to explain the int8-KV decode cost: how many elements per step are dequantized (CAST/MUL over
whole [1, n_kv, S, hd] caches) next to what the attention matmuls read. Reads the flatbuffer only
(the schema module LiteRT ships); runs nothing.
"""

from __future__ import annotations

import argparse
import collections
import math

from ai_edge_litert import schema_py_generated as schema

_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 9: 1, 10: 8, 16: 2}  # FLOAT32 FLOAT16 INT32 UINT8 INT64 INT8 ...


def _op_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def census(path: str, signature: str, slots: int) -> None:
    with open(path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    names = _op_names()
    sig = next(s for s in model.signatureDefs if s.signatureKey.decode() == signature)
    graph = model.subgraphs[sig.subgraphIndex]
    by_op: collections.Counter[str] = collections.Counter()
    written: collections.Counter[str] = collections.Counter()
    cache_ops: collections.Counter[str] = collections.Counter()
    cache_bytes: collections.Counter[str] = collections.Counter()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        by_op[name] += 1
        for index in op.outputs:
            tensor = graph.tensors[index]
            shape = list(tensor.shape) if tensor.shape is not None else []
            elements = math.prod(shape) if shape else 1
            written[name] += elements
            if slots in shape:
                cache_ops[name] += 1
                cache_bytes[name] += elements * _TYPE_BYTES.get(tensor.type, 4)
    print(f"{path} [{signature}]: {len(graph.operators)} ops")
    for name, count in by_op.most_common():
        extra = ""
        if cache_ops[name]:
            extra = f"   cache-sized: {cache_ops[name]} ops writing {cache_bytes[name] / 1e6:.1f} MB"
        print(f"  {name:<24}{count:>5}{written[name] / 1e6:>10.2f} M elements written{extra}")
    total = sum(cache_bytes.values())
    print(f"  all cache-sized outputs: {total / 1e6:.1f} MB written per call")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--signature", default="decode")
    parser.add_argument("--slots", type=int, default=1024, help="the cache length S (kv_cache_max_len)")
    args = parser.parse_args()
    for path in args.models:
        census(path, args.signature, args.slots)


if __name__ == "__main__":
    main()
