"""What XNNPACK runs for one fully-connected layer under each TFLite weight recipe, and how fast.

    python scripts/tflite_fc_kernels.py [--in 2048 --out 5632 --pairs 4 --rounds 5 --calls 20]

Builds a float ``.tflite`` of ``--pairs`` up/down fully-connected pairs on x of shape [1, in] (decode
steps' matmuls, the TinyLlama MLP shape by default) with litert-torch, quantizes it with ai-edge-quantizer under each
recipe (the dynamic-range recipes ``converters/tflite_quant.py`` uses, plus int4 granularities
litert-torch's recipe matrix lacks), then for each file reports: weight bytes, the CPU time per call
through LiteRT's ``CompiledModel`` (XNNPACK; recipes interleaved over ``--rounds``, median), its
effective weight bandwidth, and the output's relative error against the float chain.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build_float(path: Path, n_in: int, n_out: int, pairs: int, seed: int = 0):
    """``pairs`` x (up [n_in -> n_out], down [n_out -> n_in]) linear layers in a chain: enough distinct
    weights (pairs x 2 x n_in x n_out) to stream from memory each call, as a decode step does."""
    import litert_torch
    import torch

    torch.manual_seed(seed)
    layers = []
    for _ in range(pairs):
        layers += [torch.nn.Linear(n_in, n_out, bias=False), torch.nn.Linear(n_out, n_in, bias=False)]
    chain = torch.nn.Sequential(*layers).eval()
    with torch.no_grad():
        for layer in layers:
            layer.weight.normal_(0, layer.in_features**-0.5)
    litert_torch.convert(chain, (torch.zeros(1, n_in),)).export(str(path))
    return chain


def recipes() -> dict[str, tuple[int, str]]:
    """label -> (weight bits, ai-edge-quantizer granularity); dynamic-range (int8 activations) each."""
    return {
        "dynamic_int8 (channelwise)": (8, "CHANNELWISE"),
        "int4 channelwise": (4, "CHANNELWISE"),  # not in litert-torch's recipe matrix; ai-edge-quantizer has it
        "int4 block32 (int4_block32)": (4, "BLOCKWISE_32"),
        "int4 block64": (4, "BLOCKWISE_64"),
        "int4 block128": (4, "BLOCKWISE_128"),
        "int4 block256": (4, "BLOCKWISE_256"),
    }


def aeq_recipe(bits: int, granularity: str) -> list[dict]:
    """The ai-edge-quantizer recipe litert-torch's translate_recipe writes for a dynamic layer recipe."""
    from ai_edge_quantizer import qtyping

    return [
        {
            "regex": ".*",
            "operation": "*",
            "algorithm_key": "min_max_uniform_quantize",
            "op_config": {
                "weight_tensor_config": {
                    "num_bits": bits,
                    "symmetric": True,
                    "granularity": qtyping.QuantGranularity[granularity],
                    "dtype": "INT",
                },
                "compute_precision": "INTEGER",
                "explicit_dequantize": False,
                "skip_checks": False,
                "min_weight_elements": 0,
            },
        }
    ]


def quantize(float_path: Path, spec: tuple[int, str], out: Path) -> None:
    from ai_edge_quantizer import quantizer

    recipe = aeq_recipe(*spec)
    quantizer.Quantizer(str(float_path), recipe).quantize(serialize_to_path=str(out), enable_progress_report=False)


def open_compiled(path: Path, scratch: Path, threads: int):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    cpu = CpuOptions(num_threads=threads, xnnpack_weight_cache_path=str(scratch / f"{path.stem}.xnn"))
    model = CompiledModel.from_file(
        str(path), options=Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
    )
    sig = next(iter(model.get_signature_list()))
    (name_in,) = model.get_input_tensor_details(sig)
    (name_out,) = model.get_output_tensor_details(sig)
    buf_in = model.create_input_buffer_by_name(sig, name_in)
    buf_out = model.create_output_buffer_by_name(sig, name_out)
    return model, sig, name_in, name_out, buf_in, buf_out


def main() -> None:
    from tinyexport.converters.tflite_file import constant_bytes_by_type

    parser = argparse.ArgumentParser()
    parser.add_argument("--in", dest="n_in", type=int, default=2048)
    parser.add_argument("--out", dest="n_out", type=int, default=5632)
    parser.add_argument("--pairs", type=int, default=4, help="up/down layer pairs in the chain")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated substrings of recipe names")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        float_path = scratch / "float.tflite"
        chain = build_float(float_path, args.n_in, args.n_out, args.pairs)
        x = np.random.default_rng(1).standard_normal((1, args.n_in)).astype(np.float32)
        exact = x
        for layer in chain:
            exact = exact @ layer.weight.detach().numpy().T
        files = {"fp32": float_path}
        for label, layer_recipe in recipes().items():
            if args.only and not any(s in label for s in args.only.split(",")):
                continue
            files[label] = scratch / f"{len(files)}.tflite"
            quantize(float_path, layer_recipe, files[label])
        opened = {label: open_compiled(path, scratch, args.threads) for label, path in files.items()}
        errors, times = {}, {label: [] for label in files}
        for label, (model, sig, name_in, name_out, buf_in, buf_out) in opened.items():
            buf_in.write(x)
            model.run_by_name(sig, {name_in: buf_in}, {name_out: buf_out})
            got = buf_out.read(args.n_in, np.float32).reshape(1, args.n_in)
            errors[label] = float(np.linalg.norm(got - exact) / np.linalg.norm(exact))
        for _ in range(args.rounds):
            for label, (model, sig, name_in, name_out, buf_in, buf_out) in opened.items():
                start = time.process_time()
                for _ in range(args.calls):
                    model.run_by_name(sig, {name_in: buf_in}, {name_out: buf_out})
                times[label].append((time.process_time() - start) / args.calls * 1e3)
        print(
            f"{args.pairs} x (FC {args.n_in}->{args.n_out}, FC {args.n_out}->{args.n_in}), batch 1, "
            f"{args.threads} thread(s), CPU time per call, median of {args.rounds}"
        )
        print(f"{'recipe':<30}{'weight MB':>10}{'ms/call':>9}{'GB/s':>7}{'rel err':>9}")
        for label, path in files.items():
            stored = sum(constant_bytes_by_type(path).values())
            ms = statistics.median(times[label])
            print(f"{label:<30}{stored / 1e6:>10.1f}{ms:>9.3f}{stored / ms / 1e6:>7.1f}{errors[label]:>9.4f}")


if __name__ == "__main__":
    main()
