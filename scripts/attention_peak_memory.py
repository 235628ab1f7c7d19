"""Peak memory of one attention call, standard vs flash, at a given sequence length.

Each measurement runs in a fresh subprocess; peak = ru_maxrss high-water mark minus the RSS right
before the call (inputs already allocated), so only the attention's temporaries are counted.

    .venv/bin/python scripts/attention_peak_memory.py --seq-len 2048 --preset tinyllama-1.1b
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
from tinyexport.models.config import PRESETS
from tinyexport.models.llama import get_attention
impl, seq, block, preset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = PRESETS[preset].config
torch.manual_seed(0)
q = torch.randn(1, cfg.num_kv_heads, cfg.group_size * seq, cfg.head_dim)
k = torch.randn(1, cfg.num_kv_heads, seq, cfg.head_dim)
v = torch.randn(1, cfg.num_kv_heads, seq, cfg.head_dim)
mask = (torch.arange(seq)[None, :] <= torch.arange(seq)[:, None]).repeat(cfg.group_size, 1)
attend = get_attention(impl, block)
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
with torch.inference_mode():
    attend(q[..., :64, :], k[..., :64, :], v[..., :64, :], mask[:64, :64], cfg.head_dim ** -0.5)  # warm kernels
    before = rss_kib()
    out = attend(q, k, v, mask, cfg.head_dim ** -0.5)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"impl": impl, "peak_extra_mib": (peak - before) / 1024, "out_mib": out.numel() * 4 / 2**20}))
"""


def measure(impl: str, seq: int, block: int, preset: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, impl, str(seq), str(block), preset], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--preset", default="tinyllama-1.1b")
    args = parser.parse_args()
    rows = [measure(impl, args.seq_len, args.block, args.preset) for impl in ("standard", "sdpa", "flash")]
    for row in rows:
        print(
            f"{row['impl']:>8}: +{row['peak_extra_mib']:8.1f} MiB over inputs (output itself {row['out_mib']:.1f} MiB)"
        )
    std = next(r for r in rows if r["impl"] == "standard")["peak_extra_mib"]
    flash = next(r for r in rows if r["impl"] == "flash")["peak_extra_mib"]
    print(f"standard / flash peak temporaries: {std / flash:.1f}x (seq {args.seq_len}, block {args.block}, one layer)")


if __name__ == "__main__":
    main()
