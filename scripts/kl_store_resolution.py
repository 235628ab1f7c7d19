"""How much the fixed16 reference store changes KL, measured: the same candidates scored against a
float32 store (exact) and a fixed16 store of the same reference, on the default corpus.

Candidates are our model with weights rounded the way quantization recipes round them (fp16; int8
per output channel; int4 in blocks of 32 along the input), applied in torch so no converter is needed.

    .venv/bin/python scripts/kl_store_resolution.py --tokens 1024 --window 256 --stride 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinyexport.corpus import default_corpus
from tinyexport.models.llama import KV_WRITERS
from tinyexport.models.loading import load_model
from tinyexport.paths import cache_dir
from tinyexport.resolve import open_checkpoint
from tinyexport.runners.hf_runner import HFRunner
from tinyexport.runners.torch_runner import TorchRunner
from tinyexport.tokenizer import Tokenizer
from tinyexport.verify.quality import score_text
from tinyexport.verify.reference_store import ReferenceKey, ReferenceStore, reference_writer
from tinyexport.verify.windows import SlidingWindow


def fake_quantize(weight: torch.Tensor, recipe: str) -> torch.Tensor:
    if recipe == "fp16":
        return weight.half().float()
    if recipe == "int8_channel":
        scale = weight.abs().amax(dim=1, keepdim=True) / 127
        return torch.round(weight / scale).clamp(-127, 127) * scale
    if recipe == "int4_block32":
        blocks = weight.reshape(weight.shape[0], -1, 32)
        scale = blocks.abs().amax(dim=2, keepdim=True) / 7
        return (torch.round(blocks / scale).clamp(-7, 7) * scale).reshape(weight.shape)
    raise ValueError(recipe)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--stride", type=int, default=128)
    args = parser.parse_args()

    ckpt = open_checkpoint("smollm2-135m")
    tokenizer = Tokenizer(ckpt.tokenizer_dir)
    ids = tokenizer.encode(default_corpus(cache_dir()).default_text.read_text())[: args.tokens]
    protocol = SlidingWindow(args.window, args.stride)
    rows = protocol.scored_tokens(ids.size)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        reference = HFRunner.from_checkpoint(ckpt, max_len=args.window)
        for precision in ("float32", "fixed16"):
            key = ReferenceKey(
                ckpt.fingerprint(),
                tokenizer.vocab_fingerprint(),
                "macbeth",
                args.window,
                args.stride,
                int(ids.size),
                precision,
            )
            with reference_writer(key, Path(tmp), rows, ckpt.config.vocab_size) as writer:
                score_text(reference, ids, protocol, writer=writer)
                writer.finish({})
            stores[precision] = ReferenceStore.open(key, Path(tmp))
        del reference
        out = {
            "tokens": int(ids.size),
            "scored": rows,
            "fixed16_resolution_mean": float(stores["fixed16"].resolution.mean()),
            "fixed16_resolution_p99": float(np.percentile(stores["fixed16"].resolution, 99)),
            "candidates": {},
        }
        for recipe in ("fp16", "int8_channel", "int4_block32"):
            model = load_model(ckpt, max_seq_len=args.window, kv_writer=KV_WRITERS["index_copy_inplace"])
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() == 2:
                        p.copy_(fake_quantize(p, recipe))
            runner = TorchRunner(model, max_len=args.window)
            row = {}
            for precision, store in stores.items():
                kl = score_text(runner, ids, protocol, reference=store).kl
                row[precision] = {"kl_mean": float(kl.mean()), "kl_p99": float(np.percentile(kl, 99))}
            row["relative_difference_mean"] = row["fixed16"]["kl_mean"] / row["float32"]["kl_mean"] - 1
            row["relative_difference_p99"] = row["fixed16"]["kl_p99"] / row["float32"]["kl_p99"] - 1
            out["candidates"][recipe] = row
            print(recipe, json.dumps(row), flush=True)
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
