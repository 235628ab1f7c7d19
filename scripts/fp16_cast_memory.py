"""Peak RSS of the TFLite fp16 quantization step, cast once (``quantize_file``) or per op
(ai-edge-quantizer as it comes), on an existing float ``.tflite``; prints the file's sha256 too.
Run each mode in its own process, interleaved:

    for m in per_op once per_op once; do
        .venv/bin/python scripts/fp16_cast_memory.py $m FLOAT.tflite /tmp/out_$m.tflite
    done
"""

from __future__ import annotations

import hashlib
import resource
import sys
from pathlib import Path


def main() -> None:
    mode, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    from ai_edge_quantizer import quantizer
    from litert_torch.quantize import translate_recipe

    from tinyexport.converters.tflite_quant import generative_recipe, quantize_file

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if mode == "once":
        quantize_file(src, "fp16", dst)
    else:
        recipe = translate_recipe.translate_to_ai_edge_recipe(generative_recipe("fp16"))
        quantizer.Quantizer(src, recipe).quantize(serialize_to_path=dst, enable_progress_report=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()[:16]
    print(f"{mode}: peak RSS {before:.0f} MiB before quantizing, {after:.0f} MiB after; sha256 {digest}")


if __name__ == "__main__":
    main()
