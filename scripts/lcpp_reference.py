#!/usr/bin/env python
"""llama.cpp's own GGUF conversion of a checkpoint, as artefacts `tinyexport bench/verify/eval` take.

    scripts/lcpp_reference.py --checkpoint smollm2-135m -o out/bench/smollm2-135m
    scripts/lcpp_reference.py --checkpoint tinyllama-1.1b --random-weights --seed 0 -o out/bench/tinyllama-1.1b-random

writes OUT/llamacpp_q8_0/ and OUT/llamacpp_q4_0/ (``--recipes`` also takes fp32, fp16): llama.cpp's
``convert_hf_to_gguf.py`` (from the llama-cpp-python sdist) to F32, then ``llama_model_quantize``. Each
directory holds the GGUF and a manifest (``producer: llama.cpp convert_hf_to_gguf``). ``--fetch`` lets it
``pip download`` the sdist when ``make install`` has not. Then e.g.

    tinyexport bench out/bench/smollm2-135m/gguf_q8_0 out/bench/smollm2-135m/llamacpp_q8_0 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="smollm2-135m")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, required=True, help="directory the artefacts go into")
    parser.add_argument("--recipes", default="q8_0,q4_0", help="comma-separated: fp32, fp16, q8_0, q4_0")
    parser.add_argument("--threads", type=int, default=2, help="quantizer threads")
    parser.add_argument("--fetch", action="store_true", help="pip download the llama-cpp-python sdist if missing")
    parser.add_argument("--force", action="store_true", help="replace existing artefacts")
    args = parser.parse_args(argv)

    from tinyexport.converters.llama_cpp_reference import reference_artefacts
    from tinyexport.errors import UserError
    from tinyexport.resolve import open_checkpoint

    start = time.perf_counter()
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    try:
        todo = [r for r in recipes if args.force or not (args.out / f"llamacpp_{r}" / "manifest.json").is_file()]
        if not todo:
            print(f"llama.cpp reference artefacts already in {args.out} (--force to rebuild)")
            return 0
        ckpt = open_checkpoint(args.checkpoint, args.random_weights, args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        made = reference_artefacts(
            ckpt,
            {"spec": args.checkpoint, "random_weights": args.random_weights, "seed": args.seed},
            args.out,
            todo,
            fetch=args.fetch,
            threads=args.threads,
            replace=args.force,
            progress=lambda line: print(f"[{time.perf_counter() - start:7.1f} s] {line}", flush=True),
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in made:
        print(f"wrote {path}")
    print(f"took {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
