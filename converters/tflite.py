"""TFLite (LiteRT) converter: one ``model.tflite`` with ``prefill_{N}`` and ``decode`` signatures.

Steps: build our ``Llama`` with the ``dynamic_update_slice`` cache writer; trace one signature per
prefill length plus ``decode`` (all sharing the same weight tensors, stored once); lower them with
litert-torch into a float flatbuffer; then, for a quantized recipe, let ai-edge-quantizer rewrite that
file into ``model.tflite`` (``tflite_quant``). The I/O names are those of ``tflite_io``.

Memory: see ``CONVERT_OPTIONS``; the float flatbuffer goes to disk and the quantizer memory-maps it,
so the float model is never held in RAM next to its quantized copy.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinyexport.formats.tflite_io import decode_signature, prefill_signature, signature_names

from .export_config import ExportConfig
from .tflite_file import constant_bytes_by_type

# litert-torch Converter.convert options. ``lightweight_conversion`` keeps the weights as resource
# constants that point at the (memory-mapped) torch tensors instead of copying them into MLIR
# attributes. Measured on the 1.1B shape with --quantize: 6.5 GB peak RSS this way; 13.9 GB when
# litert-torch quantizes the in-memory flatbuffer itself (``quant_config=``), which is why the float
# model goes to disk and ai-edge-quantizer memory-maps it instead (``tflite_quant.quantize_file``).
# (Runtime constant folding, on by default with lightweight conversion, made no difference there.)
CONVERT_OPTIONS: Mapping[str, Any] = MappingProxyType({"lightweight_conversion": True})


def convert(
    checkpoint: Any, export: ExportConfig, out_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Write ``out_dir/model.tflite``; return the manifest's TFLite fields (signatures, options).
    ``progress`` is told each stage as it starts."""
    out_dir = Path(out_dir)
    target = out_dir / "model.tflite"
    if export.recipe == "fp32":
        _write_float_model(checkpoint, export, target, progress)
    else:
        from .tflite_quant import generative_recipe, quantize_file

        generative_recipe(export.recipe)  # an unknown recipe fails here, not after minutes of conversion
        float_path = out_dir / ".float.tflite"  # inside the atomic temp dir: removed on any failure
        _write_float_model(checkpoint, export, float_path, progress)
        progress(f"quantizing to {export.recipe} (ai-edge-quantizer)")
        quantize_file(float_path, export.recipe, target)
        float_path.unlink()
        target.chmod(0o644)  # the quantizer's writer leaves it executable
    progress("reading the signatures back")
    stored = constant_bytes_by_type(target)
    return {
        "signatures": describe_signatures(target),
        "weight_bytes": sum(stored.values()),
        "tflite": {
            "constant_bytes_by_type": stored,
            "convert_options": dict(CONVERT_OPTIONS),
            "attention_spans": [*sorted(export.decode_spans), export.kv_cache_max_len],
        },
    }


def _write_float_model(checkpoint: Any, export: ExportConfig, path: Path, progress: Callable[[str], None]) -> None:
    progress("loading weights")
    import litert_torch

    from tinyexport.models.loading import load_model

    from .tflite_graph import DUS_WRITER, SignatureModule, sample_inputs

    config, cache_len = checkpoint.config, export.kv_cache_max_len
    model = load_model(
        checkpoint,
        max_seq_len=cache_len,
        attention=export.attention,
        flash_block_size=export.flash_block_size,
        kv_writer=DUS_WRITER,
    )
    converter = litert_torch.Converter()
    for span in [*sorted(export.decode_spans), None]:  # the spans, then the whole cache
        span_prefills = span is None or export.prefill_spans
        for length in sorted(n for n in export.prefill_seq_lens if span_prefills and (span is None or n <= span)):
            converter.signature(
                prefill_signature(length, span),
                SignatureModule(model, export.prefill_logits, span),
                sample_kwargs=sample_inputs(config, length, cache_len),
            )
        converter.signature(
            decode_signature(span),
            SignatureModule(model, "all", span),
            sample_kwargs=sample_inputs(config, 1, cache_len),
        )
    names = signature_names(export.prefill_seq_lens, export.decode_spans, export.prefill_spans)
    progress(f"tracing and lowering {len(names)} signatures: {', '.join(names)} (litert-torch)")
    edge_model = converter.convert(**CONVERT_OPTIONS)
    del converter
    progress(f"writing {'the float flatbuffer' if path.name.startswith('.') else path.name}")
    edge_model.export(str(path))
    del edge_model, model
    gc.collect()


def describe_signatures(path: Path) -> dict[str, Any]:
    """Signature name -> {"inputs"|"outputs": {tensor: {"shape", "dtype"}}}, read back from the file."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    described = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        described[name] = {
            side: {
                tensor: {"shape": [int(d) for d in info["shape"]], "dtype": info["dtype"].__name__}
                for tensor, info in sorted(details.items())
            }
            for side, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details()))
        }
    return described
