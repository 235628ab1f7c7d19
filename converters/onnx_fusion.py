"""Graph rewrites that let onnxruntime run the exported decoder with few, fused kernels.

Applied to the traced graph (``onnx_export``) before quantization:

* RMSNorm -> ``SimplifiedLayerNormalization``, residual add + RMSNorm ->
  ``com.microsoft.SkipSimplifiedLayerNormalization`` (onnxscript's ORT fusion rules);
* per layer, RoPE + KV concat + GQA attention (27 nodes) -> one
  ``com.microsoft.GroupQueryAttention`` (rotary inside, positions from ``position_ids``, ``present`` =
  ``past`` + new, exactly the graph's contract), fed by one packed Q|K|V MatMul instead of three.

A SmolLM2 decode step goes from ~1750 kernels to ~330. Both ops are what onnxruntime-genai's own model
builder emits, so genai runs the result natively. The attention rewrite walks the graph from each
``present.{i}.key|value`` output and checks every node on the way; if the traced graph does not have
the expected shape (e.g. ``--attention flash`` was traced), nothing is rewritten and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexport.formats import onnx_io as io
from tinyexport.models.config import ModelConfig

MS_DOMAIN = "com.microsoft"


class _NoMatch(Exception):
    """The subgraph is not the one our model traces to."""


def _producer(value, op_type: str):
    node = value.producer() if value is not None else None
    if node is None or node.op_type != op_type or node.domain not in ("", "ai.onnx"):
        raise _NoMatch(f"{getattr(value, 'name', None)} is not produced by {op_type}")
    return node


def _only_consumer(value, op_type: str):
    users = [u.node for u in value.uses()]
    if len(users) != 1 or users[0].op_type != op_type:
        raise _NoMatch(f"{value.name} is not used by exactly one {op_type}")
    return users[0]


def _perm(node) -> list[int]:
    attr = node.attributes.get("perm")
    return list(attr.as_ints()) if attr is not None else []


@dataclass
class _Attention:
    """One layer's traced attention, located from its present outputs."""

    q_lin: object  # (B, T, n_h*hd) values
    k_lin: object
    v_lin: object
    past_k: object
    past_v: object
    present_k: object
    present_v: object
    out: object  # (B, T, n_h*hd), input of the output projection
    projections: tuple  # the three MatMul nodes (q, k, v)


def _rope_input(value):
    """``x*cos + rotate_half(x)*sin`` -> x (the Transpose output feeding RoPE)."""
    add = _producer(value, "Add")
    for operand in add.inputs:
        mul = _producer(operand, "Mul")
        for factor in mul.inputs:
            node = factor.producer() if factor is not None else None
            if node is not None and node.op_type == "Transpose" and _perm(node) == [0, 2, 1, 3]:
                return node
    raise _NoMatch(f"{value.name} is not a RoPE of a transposed projection")


def _projection(transpose):
    """Transpose(Reshape(MatMul(x, W))) -> the MatMul node."""
    reshape = _producer(transpose.inputs[0], "Reshape")
    return _producer(reshape.inputs[0], "MatMul")


def _skip_reshape(value):
    node = value.producer()
    return node.inputs[0] if node is not None and node.op_type == "Reshape" else value


def _find_attention(present_k, present_v) -> _Attention:
    cat_k, cat_v = _producer(present_k, "Concat"), _producer(present_v, "Concat")
    past_k, k_rot = cat_k.inputs
    past_v, v_t = cat_v.inputs
    k_proj = _projection(_rope_input(k_rot))
    v_tr = _producer(v_t, "Transpose")
    if _perm(v_tr) != [0, 2, 1, 3]:
        raise _NoMatch("value transpose")
    v_proj = _projection(v_tr)
    # scores = MatMul(Reshape(rope(q)), Transpose(present_k)); probs @ present_v -> out
    k_users = [u.node for u in present_k.uses()]
    k_t = [n for n in k_users if n.op_type == "Transpose"]
    if len(k_t) != 1 or _perm(k_t[0]) != [0, 1, 3, 2]:
        raise _NoMatch("key transpose for QK^T")
    scores = _only_consumer(k_t[0].outputs[0], "MatMul")
    q_rot = _skip_reshape(scores.inputs[0])  # (B, n_kv, g*T, hd) grouping; elided when g == 1
    q_proj = _projection(_rope_input(q_rot))
    scaled = _only_consumer(scores.outputs[0], "Mul")
    masked = _only_consumer(scaled.outputs[0], "Where")
    softmax = _only_consumer(masked.outputs[0], "Softmax")
    pv = _only_consumer(softmax.outputs[0], "MatMul")
    if pv.inputs[1] is not present_v:
        raise _NoMatch("probs @ V does not read present.value")
    ungrouped = pv.outputs[0]
    users = [u.node for u in ungrouped.uses()]
    if len(users) == 1 and users[0].op_type == "Reshape":  # back to (B, n_h, T, hd); elided when g == 1
        ungrouped = users[0].outputs[0]
    back = _only_consumer(ungrouped, "Transpose")
    merged = _only_consumer(back.outputs[0], "Reshape")
    if q_proj.inputs[0] is not k_proj.inputs[0] or q_proj.inputs[0] is not v_proj.inputs[0]:
        raise _NoMatch("q, k, v projections read different inputs")
    return _Attention(
        q_proj.outputs[0],
        k_proj.outputs[0],
        v_proj.outputs[0],
        past_k,
        past_v,
        present_k,
        present_v,
        merged.outputs[0],
        (q_proj, k_proj, v_proj),
    )


def _const(name: str, array: np.ndarray):
    import onnx_ir as ir

    return ir.Value(
        name=name,
        const_value=ir.tensor(array, name=name),
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
    )


def _packed_weight(projections) -> np.ndarray | None:
    """Q|K|V weights concatenated along the output axis, if all three are plain fp32 initializers."""
    arrays = []
    for node in projections:
        weight = node.inputs[1]
        if weight is None or not weight.is_initializer() or weight.const_value is None:
            return None
        arrays.append(weight.const_value.numpy())
    if any(a.ndim != 2 or a.dtype != np.float32 for a in arrays):
        return None
    return np.concatenate(arrays, axis=1)


def fuse_attention(model, config: ModelConfig, rope_cos: np.ndarray, rope_sin: np.ndarray) -> int:
    """Replace every layer's attention by ``GroupQueryAttention``; returns the number of layers fused
    (all or none). ``rope_cos/sin`` are the model's (max_len, head_dim) tables."""
    import onnx_ir as ir

    if config.head_dim % 16:
        return 0  # onnxruntime's CPU GroupQueryAttention needs head_size % 16 == 0
    if config.kv_cache_dtype != "float32":
        return 0  # GroupQueryAttention keeps a float cache; an int8 cache stays explicit ops
    graph = model.graph
    outputs = {v.name: v for v in graph.outputs}
    inputs = {v.name: v for v in graph.inputs}
    try:
        found = [
            _find_attention(outputs[io.PRESENT_KEY % i], outputs[io.PRESENT_VALUE % i])
            for i in range(config.num_layers)
        ]
    except (_NoMatch, KeyError, ValueError):
        return 0

    half = config.head_dim // 2
    cos = _const("rope.cos_cache", np.ascontiguousarray(rope_cos[:, :half], dtype=np.float32))
    sin = _const("rope.sin_cache", np.ascontiguousarray(rope_sin[:, :half], dtype=np.float32))
    graph.register_initializer(cos)
    graph.register_initializer(sin)
    mask = inputs[io.ATTENTION_MASK]
    one = _const("gqa.one", np.array(1, dtype=np.int64))
    axis1 = _const("gqa.axis1", np.array([1], dtype=np.int64))
    for c in (one, axis1):
        graph.register_initializer(c)
    # seqlens_k = sum(attention_mask) - 1 per row; total_sequence_length = attention_mask.shape[1]
    total_sum = ir.Node("", "ReduceSum", [mask, axis1], attributes=[ir.AttrInt64("keepdims", 0)], name="gqa/mask_sum")
    minus = ir.Node("", "Sub", [total_sum.outputs[0], one], name="gqa/seqlens")
    seqlens = ir.Node(
        "", "Cast", [minus.outputs[0]], attributes=[ir.AttrInt64("to", ir.DataType.INT32)], name="gqa/seqlens_k"
    )
    shape = ir.Node(
        "", "Shape", [mask], attributes=[ir.AttrInt64("start", 1), ir.AttrInt64("end", 2)], name="gqa/mask_len"
    )
    squeeze = ir.Node("", "Squeeze", [shape.outputs[0]], name="gqa/total")
    total = ir.Node(
        "",
        "Cast",
        [squeeze.outputs[0]],
        attributes=[ir.AttrInt64("to", ir.DataType.INT32)],
        name="gqa/total_sequence_length",
    )
    prelude = [total_sum, minus, seqlens, shape, squeeze, total]
    first = next(iter(graph))
    graph.insert_before(first, prelude)

    position_ids = inputs[io.POSITION_IDS]
    for i, att in enumerate(found):
        anchor = att.out.producer()
        packed = _packed_weight(att.projections)
        if packed is not None:
            weight = _const(f"layers.{i}.attn.wqkv.weight_t", packed)
            graph.register_initializer(weight)
            qkv = ir.Node("", "MatMul", [att.projections[0].inputs[0], weight], name=f"layers.{i}.attn.wqkv")
            qkv_inputs = [qkv.outputs[0], None, None]
            new_nodes = [qkv]
        else:
            qkv_inputs = [att.q_lin, att.k_lin, att.v_lin]
            new_nodes = []
        gqa = ir.Node(
            MS_DOMAIN,
            "GroupQueryAttention",
            [*qkv_inputs, att.past_k, att.past_v, seqlens.outputs[0], total.outputs[0], cos, sin, position_ids],
            attributes=[
                ir.AttrInt64("num_heads", config.layer_heads(i)[0]),  # per layer: pruning may differ
                ir.AttrInt64("kv_num_heads", config.layer_heads(i)[1]),
                ir.AttrFloat32("scale", config.head_dim**-0.5),
                ir.AttrInt64("do_rotary", 1),
                ir.AttrInt64("rotary_interleaved", 0),
            ],
            num_outputs=3,
            name=f"layers.{i}.attn.gqa",
        )
        new_nodes.append(gqa)
        graph.insert_before(anchor, new_nodes)
        out, pk, pv = gqa.outputs
        out.shape, out.dtype = att.out.shape, att.out.dtype
        ir.convenience.replace_all_uses_with(att.out, out)
        for old, new in ((att.present_k, pk), (att.present_v, pv)):
            new.shape, new.dtype = old.shape, old.dtype
            name = old.name
            index = list(graph.outputs).index(old)
            graph.outputs[index] = new
            old.name = None
            new.name = name
    model.opset_imports.setdefault(MS_DOMAIN, 1)
    return len(found)


def fuse_norms(model) -> dict[str, int]:
    """Residual add + RMSNorm -> ``SkipSimplifiedLayerNormalization`` (onnxscript's ORT rules).

    The rules first form ``SimplifiedLayerNormalization``, an onnxruntime-only op in the standard ONNX
    domain that ``onnx.checker`` rejects; the one or two not absorbed into a skip norm are written
    back as the primitive ``x / sqrt(mean(x^2) + eps) * w`` that onnxruntime re-fuses at load time.
    """
    from onnxscript.rewriter.ort_fusions.rms_normalization import fuse_rms_normalization
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_rms_normalization

    fuse_rms_normalization(model)
    count = fuse_skip_rms_normalization(model)
    _expand_plain_rmsnorms(model)
    return {"SkipSimplifiedLayerNormalization": count}


def _expand_plain_rmsnorms(model) -> None:
    import onnx_ir as ir

    graph = model.graph
    for k, node in enumerate([n for n in graph if n.op_type == "SimplifiedLayerNormalization" and n.domain == ""]):
        x, weight = node.inputs[0], node.inputs[1]
        eps = node.attributes["epsilon"].as_float() if "epsilon" in node.attributes else 1e-5
        two = _const(f"rmsnorm{k}.two", np.array(2.0, dtype=np.float32))
        eps_c = _const(f"rmsnorm{k}.eps", np.array(eps, dtype=np.float32))
        axes = _const(f"rmsnorm{k}.axes", np.array([-1], dtype=np.int64))
        for c in (two, eps_c, axes):
            graph.register_initializer(c)
        square = ir.Node("", "Pow", [x, two], name=f"rmsnorm{k}/pow")
        mean = ir.Node(
            "",
            "ReduceMean",
            [square.outputs[0], axes],
            attributes=[ir.AttrInt64("keepdims", 1)],
            name=f"rmsnorm{k}/mean",
        )
        shifted = ir.Node("", "Add", [mean.outputs[0], eps_c], name=f"rmsnorm{k}/add_eps")
        root = ir.Node("", "Sqrt", [shifted.outputs[0]], name=f"rmsnorm{k}/sqrt")
        normed = ir.Node("", "Div", [x, root.outputs[0]], name=f"rmsnorm{k}/div")
        scaled = ir.Node("", "Mul", [normed.outputs[0], weight], name=f"rmsnorm{k}/scale")
        graph.insert_before(node, [square, mean, shifted, root, normed, scaled])
        out = node.outputs[0]
        scaled.outputs[0].shape, scaled.outputs[0].dtype = out.shape, out.dtype
        ir.convenience.replace_all_uses_with(out, scaled.outputs[0])
        if out in graph.outputs:
            raise _NoMatch("an RMSNorm output is a graph output")
        graph.remove(node, safe=True)


def fuse_for_ort(model, config: ModelConfig, rope_cos: np.ndarray, rope_sin: np.ndarray) -> dict[str, int]:
    """All rewrites; returns how many of each were applied (recorded in the manifest)."""
    counts = {"GroupQueryAttention": fuse_attention(model, config, rope_cos, rope_sin)}
    counts.update(fuse_norms(model))
    import onnx_ir as ir

    ir.passes.common.RemoveUnusedNodesPass()(model)
    return counts
