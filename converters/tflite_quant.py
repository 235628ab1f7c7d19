"""TFLite quantization: each recipe name -> a litert-torch generative quant recipe, applied by
ai-edge-quantizer to the float flatbuffer. No quantization arithmetic is written here.

Every recipe quantizes every op ai-edge-quantizer supports (regex ``.*``): the fully-connected
weights of attention, MLP and lm_head, and the embedding lookup table (shared with lm_head when the
embeddings are tied, e.g. SmolLM2).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from litert_torch.generative.quantize import quant_attrs, quant_recipe, quant_recipe_utils

_Dtype, _Gran = quant_attrs.Dtype, quant_attrs.Granularity


def _dynamic(
    dtype: quant_attrs.Dtype, granularity: quant_attrs.Granularity
) -> Callable[[], quant_recipe.LayerQuantRecipe]:
    return lambda: quant_recipe_utils.create_layer_quant_dynamic(dtype, granularity)


def _weight_only(
    dtype: quant_attrs.Dtype, granularity: quant_attrs.Granularity
) -> Callable[[], quant_recipe.LayerQuantRecipe]:
    return lambda: quant_recipe_utils.create_layer_quant_weight_only(dtype, granularity)


# recipe name (converters.recipes.RECIPES) -> the litert-torch layer recipe applied to the whole model.
LAYER_RECIPES: Mapping[str, Callable[[], quant_recipe.LayerQuantRecipe]] = MappingProxyType(
    {
        "fp16": quant_recipe_utils.create_layer_quant_fp16,
        "dynamic_int8": _dynamic(_Dtype.INT8, _Gran.CHANNELWISE),
        "weight_only_int8": _weight_only(_Dtype.INT8, _Gran.CHANNELWISE),
        "int4_block32": _dynamic(_Dtype.INT4, _Gran.BLOCKWISE_32),
    }
)


def generative_recipe(recipe: str) -> quant_recipe.GenerativeQuantRecipe:
    """The litert-torch recipe for ``recipe`` (validated against litert-torch's supported schemes)."""
    try:
        layer = LAYER_RECIPES[recipe]()
    except KeyError:
        raise ValueError(f"no TFLite quantization for recipe {recipe!r} (known: {', '.join(LAYER_RECIPES)})") from None
    result = quant_recipe.GenerativeQuantRecipe(default=layer)
    result.verify()
    return result


def quantize_file(float_model: Path, recipe: str, output: Path) -> None:
    """Quantize the flatbuffer ``float_model`` with ``recipe`` into ``output`` (both memory-mapped)."""
    from ai_edge_quantizer import quantizer
    from litert_torch.quantize import translate_recipe

    aeq_recipe = translate_recipe.translate_to_ai_edge_recipe(generative_recipe(recipe))
    with _fp16_cast_once() if recipe == "fp16" else contextlib.nullcontext():
        quantizer.Quantizer(float_model, aeq_recipe).quantize(serialize_to_path=output, enable_progress_report=False)


# ai-edge-quantizer ops whose float-casting materializer is ``float_casting.materialize_fc_conv``
_CAST_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")


@contextlib.contextmanager
def _fp16_cast_once() -> Iterator[None]:
    """One float16 copy of each weight however many signatures use it, for the duration of one quantization.

    ai-edge-quantizer 0.10.0's ``float_casting.materialize_fc_conv`` caches the float16 cast of a weight
    per buffer, then hands every op a fresh ``astype(float16)`` copy anyway; each op's copy is held until
    the model is written, so a weight shared by S signatures is held S + 1 times (the 1.1B fp16
    conversion peaked at 15.7 GB). Here the FULLY_CONNECTED and EMBEDDING_LOOKUP materializers of the
    ``float_casting`` algorithm are wrapped, through the library's own registry, so that every op gets
    the cached copy (same values, so the same file); the original registrations are restored on exit.
    """
    from ai_edge_quantizer import algorithm_manager, qtyping

    algorithm = algorithm_manager.AlgorithmName.FLOAT_CASTING
    key = qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT)
    saved = {}
    for op in (qtyping.TFLOperationName(name) for name in _CAST_OPS):
        saved[op] = (
            algorithm_manager.get_init_qsv_func(algorithm, op),
            algorithm_manager.get_quantization_func(algorithm, op, qtyping.QuantizeMode.CALIBRATE),
            algorithm_manager.get_quantization_func(algorithm, op, qtyping.QuantizeMode.MATERIALIZE),
            algorithm_manager.get_update_qsv_func(algorithm, op),
        )
    for op, (init, calibrate, materialize, update) in saved.items():
        algorithm_manager.register_quantized_op(
            algorithm,
            op,
            init,
            calibration_func=calibrate,
            materialize_func=_shared_cast(materialize, key),
            update_qsv_func=update,
        )
    try:
        yield
    finally:
        for op, (init, calibrate, materialize, update) in saved.items():
            algorithm_manager.register_quantized_op(
                algorithm, op, init, calibration_func=calibrate, materialize_func=materialize, update_qsv_func=update
            )


def _shared_cast(materialize: Callable, key) -> Callable:
    """``materialize`` with each op's float16 weight replaced by the copy cached for its buffer."""
    from ai_edge_quantizer import qtyping

    def materialize_shared(op_info, graph_info, tensor_name_to_qsv, tensor_quant_params_cache):
        params = materialize(op_info, graph_info, tensor_name_to_qsv, tensor_quant_params_cache)
        weight = graph_info.subgraph_tensors[op_info.op.inputs[1]]
        cached = tensor_quant_params_cache.lookup(weight.buffer, key)
        for tensor_params in params:
            consumers = tensor_params.consumers or []
            for i, consumer in enumerate(consumers):
                if isinstance(consumer.parameters, qtyping.NonLinearQuantParams) and cached is not None:
                    consumers[i] = dataclasses.replace(consumer, parameters=cached)  # the op's own copy is freed
        return params

    return materialize_shared
