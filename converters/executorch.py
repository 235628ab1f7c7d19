"""ExecuTorch converter: checkpoint -> ``model.pte`` lowered to XNNPACK, with the KV cache in the program.

Our Llama (``models/llama.py``) is wrapped so that each layer's cache is a pair of registered buffers
written in place (``index_copy_`` at ``input_pos``, as ExecuTorch's own Llama example does); three
methods are exported with ``torch.export`` -- ``prefill`` (dynamic length 2..max(prefill_seq_lens)),
``decode`` (one token) and ``reset`` (zeroes the caches: memory-planned buffers start uninitialised) --
lowered together with ``to_edge_transform_and_lower`` and the ``XnnpackPartitioner``, and emitted with
``share_mutable_buffers`` so the three read and write one cache. Method names: ``formats/executorch_io.py``.

Recipes (``ET_RECIPES``) quantize every ``nn.Linear`` (LM head included) with torchao before export:
``8da4w`` is ExecuTorch's Llama recipe (int8 dynamic per-token activations, int4 weights with a scale
per group of 32); ``dynamic_int8`` the same with int8 per-channel weights. Embeddings stay fp32.
The pipeline (``converters/pipeline.py``) does the atomic directory, tokenizer files and manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.formats.executorch_io import DECODE, K_CACHE, METHODS, MIN_PREFILL, PREFILL, RESET, V_CACHE

from .export_config import ExportConfig

MODEL_FILE = "model.pte"


@dataclass(frozen=True)
class ETRecipe:
    """torchao weight quantization of the linear layers: ``None`` keeps fp32."""

    weight_bits: int | None = None  # 4 or 8
    group_size: int = 0  # 0: one scale per output channel; else per group of this many inputs


ET_RECIPES: dict[str, ETRecipe] = {
    "fp32": ETRecipe(),
    "8da4w": ETRecipe(weight_bits=4, group_size=32),
    "dynamic_int8": ETRecipe(weight_bits=8, group_size=0),
}


def max_prefill_len(export: ExportConfig) -> int:
    return max(MIN_PREFILL, min(max(export.prefill_seq_lens), export.kv_cache_max_len))


def check_group_size(config: Any, recipe: ETRecipe) -> None:
    """Grouped weights need every linear layer's input width to be a multiple of the group size."""
    from tinyexport.errors import UserError

    if not recipe.group_size:
        return
    widths = {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_heads * head_dim": config.q_dim,
    }
    bad = {k: v for k, v in widths.items() if v % recipe.group_size}
    if bad:
        raise UserError(
            f"ExecuTorch {recipe.weight_bits}-bit weights use groups of {recipe.group_size} inputs, but {bad} is "
            f"not a multiple of {recipe.group_size}; use --quantize dynamic_int8 or fp32 for this model"
        )


def quantize_linears(model: Any, recipe: ETRecipe) -> None:
    """torchao ``Int8DynamicActivationIntxWeightConfig`` on every nn.Linear, in place."""
    import torch
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    granularity = PerGroup(recipe.group_size) if recipe.group_size else PerAxis(0)
    dtype = {4: torch.int4, 8: torch.int8}[recipe.weight_bits]
    with torch.no_grad():
        quantize_(model, Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=granularity))


def delegable_norms(model: Any) -> None:
    """Swap every RMSNorm for one whose mean is over the two innermost dims of a 4-D view, the form the
    XNNPACK delegate takes (a 3-D mean stays outside it and splits each layer into more delegate calls)."""
    import torch
    from torch import nn

    from tinyexport.models.llama import RMSNorm

    class PooledRMSNorm(nn.Module):
        def __init__(self, norm: RMSNorm) -> None:
            super().__init__()
            self.eps = norm.eps
            self.weight = norm.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x32 = x.float()
            b, t, _ = x32.shape
            square = x32.pow(2).unsqueeze(-1)  # (B, T, h, 1)
            mean = square.mean(dim=(2, 3), keepdim=True).view(b, t, 1)  # (B, T, 1)
            return self.weight * (x32 * torch.rsqrt(mean + self.eps)).to(x.dtype)

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RMSNorm):
                setattr(parent, name, PooledRMSNorm(child))


def cached_module(model: Any, kv_cache_max_len: int, prefill_logits: str) -> Any:
    """``model`` with its KV cache as buffers; ``forward(tokens, input_pos) -> logits``, ``reset(x) -> x``."""
    import torch
    from torch import nn

    from tinyexport.models.llama import empty_kv_cache

    class CachedLlama(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.num_layers = model.config.num_layers
            self.logits = prefill_logits
            for i, (k, v) in enumerate(empty_kv_cache(model.config, kv_cache_max_len)):
                self.register_buffer(K_CACHE % i, k)
                self.register_buffer(V_CACHE % i, v)

        def caches(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
            return tuple((getattr(self, K_CACHE % i), getattr(self, V_CACHE % i)) for i in range(self.num_layers))

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            logits, _ = self.model(tokens, input_pos, self.caches(), logits=self.logits)
            return logits

        def reset(self, x: torch.Tensor) -> torch.Tensor:
            for k, v in self.caches():
                k.zero_()
                v.zero_()
            return x + 0

    return CachedLlama().eval()


def export_methods(module: Any, max_prefill: int) -> dict[str, Any]:
    """torch.export of prefill (dynamic length), decode (1 token) and reset, one module, one set of buffers."""
    import torch
    from torch.export import Dim, export

    def run(forward: Callable[..., Any], args: tuple, **kwargs: Any) -> Any:
        module.forward = forward  # the method exported under this name; buffers keep their names
        try:
            return export(module, args, strict=False, **kwargs)
        finally:
            del module.forward

    length = Dim("T", min=MIN_PREFILL, max=max_prefill)
    example = min(4, max_prefill)
    cls_forward = type(module).forward.__get__(module)
    with torch.no_grad():
        return {
            PREFILL: run(
                cls_forward,
                (torch.zeros(1, example, dtype=torch.long), torch.arange(example)),
                dynamic_shapes=({1: length}, {0: length}),
                # guards like T*min(hd, 32*T) == hd*T hold for every T >= 1 but the solver cannot prove it
                prefer_deferred_runtime_asserts_over_guards=True,
            ),
            DECODE: run(cls_forward, (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long))),
            RESET: run(module.reset, (torch.zeros(1),)),
        }


def convert(
    checkpoint: Any, export: ExportConfig, out_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    from tinyexport.models.llama import KV_WRITERS
    from tinyexport.models.loading import load_model

    recipe = ET_RECIPES[export.recipe]
    check_group_size(checkpoint.config, recipe)
    progress("loading the model")
    model = load_model(
        checkpoint,
        max_seq_len=export.kv_cache_max_len,
        attention=export.attention,
        flash_block_size=export.flash_block_size,
        kv_writer=KV_WRITERS["index_copy_inplace"],
    ).eval()
    delegable_norms(model)
    if recipe.weight_bits:
        progress(f"quantizing the linear layers (torchao, {export.recipe})")
        quantize_linears(model, recipe)
    module = cached_module(model, export.kv_cache_max_len, export.prefill_logits)
    longest = max_prefill_len(export)
    progress("torch.export of prefill, decode and reset")
    programs = export_methods(module, longest)
    progress("lowering to XNNPACK (to_edge_transform_and_lower)")
    edge = to_edge_transform_and_lower(
        programs, partitioner=[XnnpackPartitioner()], compile_config=EdgeCompileConfig(_check_ir_validity=False)
    )
    progress("emitting the ExecuTorch program")
    program = edge.to_executorch(
        ExecutorchBackendConfig(
            memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False, share_mutable_buffers=True),
            emit_mutable_buffer_names=True,
            # the cache writes become index_put on the buffers: write them in place, not into a copy per call
            run_reinplace_pass=True,
        )
    )
    data = program.buffer
    (Path(out_dir) / MODEL_FILE).write_bytes(data)
    delegated = {name: _delegate_count(edge.exported_program(name)) for name in METHODS}
    return {
        "signatures": {
            PREFILL: {"tokens": [1, f"{MIN_PREFILL}..{longest}"], "logits": export.prefill_logits},
            DECODE: {"tokens": [1, 1]},
            RESET: {},
        },
        **_stored_weights(model, recipe),
        "executorch": {
            "version": _version("executorch"),
            "torchao": _version("torchao") if recipe.weight_bits else None,
            "backend": "XnnpackBackend",
            "max_prefill_len": longest,
            "delegated_subgraphs": delegated,
            "weight_bits": recipe.weight_bits or 32,
            "group_size": recipe.group_size,
        },
    }


def _delegate_count(program: Any) -> int:
    return sum(
        1 for n in program.graph.nodes if n.op == "call_function" and "executorch_call_delegate" in str(n.target)
    )


def _stored_weights(model: Any, recipe: ETRecipe) -> dict[str, int]:
    """What the pipeline's size check compares (``weight_bytes`` against ``stored_parameters`` x 4 bytes).

    fp32: every parameter once. A quantized recipe quantizes every ``nn.Linear`` (``weight_bits`` plus an
    fp32 scale per group or channel) and keeps the embedding table and norms fp32 by design (ExecuTorch's
    Llama recipe), so only the linear weights are checked, against their own fp32 size: counting the fp32
    table would make the bound depend on the shape (SmolLM2's tied table is a fifth of its parameters and
    pushed dynamic_int8 to 0.46 of fp32 with every linear quantized). A tied LM head is a linear here."""
    from torch import nn

    if not recipe.weight_bits:
        params = {id(p): p.numel() for p in model.parameters()}
        return {"weight_bytes": 4 * sum(params.values()), "stored_parameters": sum(params.values())}
    total = count = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            out_f, in_f = module.out_features, module.in_features
            groups = in_f // recipe.group_size if recipe.group_size else 1
            total += out_f * in_f * recipe.weight_bits // 8 + out_f * groups * 4
            count += out_f * in_f
    return {"weight_bytes": total, "stored_parameters": count}


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["ET_RECIPES", "MODEL_FILE", "convert"]
