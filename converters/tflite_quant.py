"""TFLite quantization: each recipe name -> a litert-torch generative quant recipe, applied by
ai-edge-quantizer to the float flatbuffer. No quantization arithmetic is written here.

Every recipe quantizes every op ai-edge-quantizer supports (regex ``.*``): the fully-connected
weights of attention, MLP and lm_head, and the embedding lookup table (shared with lm_head when the
embeddings are tied, e.g. SmolLM2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    quantizer.Quantizer(float_model, aeq_recipe).quantize(serialize_to_path=output, enable_progress_report=False)
