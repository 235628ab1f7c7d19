"""The streamed ONNX quantizer (one weight at a time) against onnxruntime's own tools run the old way
(whole graph in memory: ``MatMulNBitsQuantizer`` + ``quantize_dynamic``) on the same fp32 graph:
identical quantized tensors and bit-identical logits through onnxruntime, for both recipes; and the
int4 blocks dequantize to the float weights within half a step (numpy, independent of both)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.onnx import save_model
from tinyexport.converters.onnx_quantize import ONNX_RECIPES, untie_lm_head
from tinyexport.converters.pipeline import export_artefact

from .tiny_models import TINY_VARIANTS, save_hf_checkpoint

STEPS = 6


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    """A tiny tied-embedding fp32 artefact (lm_head untied by the quantized recipes, as for SmolLM2)."""
    from tinyexport.resolve import open_checkpoint

    root = tmp_path_factory.mktemp("stream_quant")
    hf = save_hf_checkpoint(TINY_VARIANTS["tied_oddvocab"], root / "hf", seed=5)
    target = root / "fp32"
    export_artefact(
        open_checkpoint(str(hf)),
        ExportConfig(format="onnx", recipe="fp32", kv_cache_max_len=32, prefill_seq_lens=(8,)),
        target,
        source_ref={"spec": str(hf), "random_weights": False, "seed": 0},
    )
    return target / "model.onnx"


def _old_path(fp32: ir.Model, recipe: str, scratch) -> onnx.ModelProto:
    """What onnx_quantize did before streaming: the whole graph through onnxruntime's tools."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    untie_lm_head(fp32)
    src = scratch / "old_fp32.onnx"
    ir.save(fp32, src, external_data=src.name + ".data")
    bits, gather = (8, False) if recipe == "dynamic_int8" else (4, True)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)),
        bits=bits,
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        op_types_to_quantize=("MatMul", "Gather") if gather else ("MatMul",),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    quantizer.process()
    if recipe == "int4_block32":
        return quantizer.model.model
    mid, dst = scratch / "old_nbits8.onnx", scratch / "old_int8.onnx"
    quantizer.model.save_model_to_file(str(mid), use_external_data_format=True)
    quantize_dynamic(
        mid,
        dst,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["Gather"],
        use_external_data_format=True,
    )
    return onnx.load(str(dst))


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _logits(session, n_steps: int) -> np.ndarray:
    """Prefill 5 tokens then ``n_steps`` greedy decode steps; every step's logits stacked."""
    inputs = {i.name: i for i in session.get_inputs()}
    past = {n: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for n, i in inputs.items() if n.startswith("past")}
    ids = np.array([[3, 17, 250, 9, 41]], np.int64)
    position, rows = 0, []
    for _ in range(n_steps + 1):
        length = ids.shape[1]
        feed = {
            "input_ids": ids,
            "position_ids": np.arange(position, position + length, dtype=np.int64)[None],
            "attention_mask": np.ones((1, position + length), np.int64),
            **past,
        }
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        logits = outputs["logits"][:, -1]
        rows.append(logits)
        past = {n: outputs[n.replace("past_key_values", "present")] for n in past}
        position += length
        ids = logits.argmax(-1)[:, None].astype(np.int64)
    return np.concatenate(rows)


@pytest.mark.parametrize("recipe", ["dynamic_int8", "int4_block32"])
def test_streamed_equals_onnxruntime_tools(fp32_model, recipe, tmp_path):
    old = _old_path(ir.load(fp32_model), recipe, tmp_path)
    old_path = tmp_path / "old.onnx"
    onnx.save(old, str(old_path))

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    new_model, facts = ONNX_RECIPES[recipe].apply(ir.load(fp32_model), scratch)
    new_path = tmp_path / "new.onnx"
    save_model(new_model, new_path)
    assert facts["lm_head_untied"]

    new = onnx.load(str(new_path))
    old_tensors = {t.name: numpy_helper.to_array(t) for t in old.graph.initializer}
    new_tensors = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    assert set(new_tensors) == set(old_tensors)
    for name, array in old_tensors.items():
        assert new_tensors[name].dtype == array.dtype and np.array_equal(new_tensors[name], array), name
    old_ops = sorted((n.domain, n.op_type, n.name) for n in old.graph.node)
    assert sorted((n.domain, n.op_type, n.name) for n in new.graph.node) == old_ops
    quantized_ops = {"dynamic_int8": "MatMulNBits", "int4_block32": "GatherBlockQuantized"}[recipe]
    assert any(op == quantized_ops for _, op, _ in old_ops)

    np.testing.assert_array_equal(_logits(_session(new_path), STEPS), _logits(_session(old_path), STEPS))


def test_int4_blocks_dequantize_to_the_weights(fp32_model, tmp_path):
    """numpy, independent of onnxruntime: each 32-block of a projection is scale x int4, within half a
    step except where the code clips."""
    fp32 = onnx.load(str(fp32_model))
    weights = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    new_model, _ = ONNX_RECIPES["int4_block32"].apply(ir.load(fp32_model), tmp_path)
    name = "layers.0.mlp.w_down.weight_t"
    packed = new_model.graph.initializers[f"{name}_Q4"].const_value.numpy()  # (N, K/32, 16) uint8
    scales = new_model.graph.initializers[f"{name}_scales"].const_value.numpy()  # (N, K/32)
    low, high = (packed & 0x0F).astype(np.int8), (packed >> 4).astype(np.int8)
    codes = np.stack([low, high], axis=-1).reshape(*packed.shape[:2], 32) - 8  # symmetric: zero point 8
    dequantized = (codes * scales[..., None]).reshape(packed.shape[0], -1).T  # (K, N) like the weight
    weight = weights[name]
    assert dequantized.shape == weight.shape
    step = np.repeat(np.abs(scales.T), 32, axis=0)
    error = np.abs(dequantized - weight)
    # codes run -8..7 with the block's largest |w| at -8: a value of the other sign near it clips at 7
    assert np.all(error <= step + 1e-6) and np.mean(error <= step / 2 + 1e-6) > 0.95
    assert error.max() > 0  # really quantized
