"""The export-format registry: where each format's converter and runner live, and its model file name.

Converters and runners are named as ``"module:attribute"`` and imported only when used, so the CLI
and a runtime-only install never import torch or an unused runtime. Pure data.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    model_file: str  # main file inside an artefact dir
    converter: str  # "module:function" -> convert(checkpoint, export_config, out_dir) -> manifest dict
    runner: str  # "module:Class" -> Class.from_artefact(artefact)
    runtime_package: str  # what `pip install` provides the runner on a device
    transforms: tuple[str, ...] = ()  # models.transforms names its converter and runner carry
    # True: which prefill positions get logits is chosen when the runner opens (its ``logits="all"|"last"``
    # option), not baked into the file; verify and eval then ask for every position.
    runtime_logits: bool = False
    # True: the runtime itself loads torch (ExecuTorch's Python pybindings link libtorch), so the format
    # cannot run in a torch-free install the way TFLite, ONNX and GGUF artefacts do.
    runtime_needs_torch: bool = False
    # Runner options for sharing the cores with another runtime in the same process (a speculative pair
    # alternates two runners): onnxruntime's intra-op threads otherwise keep spin-waiting after a run
    # returns, on the cores the other runner is computing on.
    shared_cpu_options: tuple[tuple[str, Any], ...] = ()


FORMATS: Mapping[str, Format] = MappingProxyType(
    {
        f.name: f
        for f in (
            Format(
                "tflite",
                "LiteRT (TFLite) flatbuffer with prefill_N / decode signatures and a KV cache",
                "model.tflite",
                "tinyexport.converters.tflite:convert",
                "tinyexport.runners.tflite_runner:TFLiteRunner",
                "ai-edge-litert",
                ("prune-heads", "kv-cache", "truncate-layers"),
            ),
            Format(
                "onnx",
                "ONNX graph with past_key_values / present KV cache (Optimum / onnxruntime-genai names)",
                "model.onnx",
                "tinyexport.converters.onnx:convert",
                "tinyexport.runners.ort_runner:ORTRunner",
                "onnxruntime",
                ("prune-heads", "kv-cache", "truncate-layers"),
                shared_cpu_options=(("spin_between_runs", False),),
            ),
            Format(
                "gguf",
                "llama.cpp GGUF (llama tensor names; tokenizer and chat template in the metadata)",
                "model.gguf",
                "tinyexport.converters.gguf:convert",
                "tinyexport.runners.gguf_runner:GGUFRunner",
                "llama-cpp-python",
                runtime_logits=True,
            ),
            Format(
                "executorch",
                "ExecuTorch program lowered to XNNPACK: prefill / decode / reset methods, KV cache as mutable buffers",
                "model.pte",
                "tinyexport.converters.executorch:convert",
                "tinyexport.runners.executorch_runner:ExecuTorchRunner",
                "executorch",
                runtime_needs_torch=True,
            ),
        )
    }
)


def load_object(path: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
