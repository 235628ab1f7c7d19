"""Quality of symmetric int4 weights per granularity, simulated in torch (no conversion needed).

    python scripts/int4_granularity_quality.py [--checkpoint smollm2-135m] [--tokens 512]

Every ``nn.Linear`` weight and the embedding table of the transformers model get the rounding
ai-edge-quantizer's dynamic-range int4 recipes apply (symmetric, scale = max|w| / 7 per block of
``B`` input elements or per output channel, values clamped to [-8, 7]); the int8 dynamic quantization
of activations that XNNPACK adds at run time is not simulated. Reports mean KL(fp32 || int4) and
top-1 agreement over ``--tokens`` tokens of the default corpus, per granularity, against the fp32 model.
"""

from __future__ import annotations

import argparse

import torch


def fake_int4(weight: torch.Tensor, block: int | None) -> torch.Tensor:
    """Symmetric int4 round trip of ``weight`` (out, in) per block of ``block`` inputs (None: per row)."""
    out, n_in = weight.shape
    size = n_in if block is None else block
    w = weight.reshape(out, n_in // size, size)
    scale = w.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 7.0
    return (torch.clamp(torch.round(w / scale), -8, 7) * scale).reshape(out, n_in)


def main() -> None:
    from transformers import AutoModelForCausalLM

    from tinyexport.corpus import default_corpus
    from tinyexport.paths import cache_dir
    from tinyexport.resolve import open_checkpoint
    from tinyexport.tokenizer import Tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--blocks", default="32,64,128,256,channel")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    ckpt = open_checkpoint(args.checkpoint)
    text = default_corpus(cache_dir()).default_text.read_text()
    ids = torch.tensor([Tokenizer(ckpt.directory).encode(text)[: args.tokens]])
    model = AutoModelForCausalLM.from_pretrained(str(ckpt.directory), torch_dtype=torch.float32).eval()
    reference = torch.log_softmax(model(ids).logits[0].double(), -1)
    originals = {name: p.detach().clone() for name, p in model.named_parameters() if p.dim() == 2}
    print(f"{args.checkpoint}, {ids.shape[1]} tokens, symmetric int4 weights (linear layers + embedding)")
    print(f"{'granularity':<14}{'KL mean':>10}{'top-1':>8}")
    for text_block in args.blocks.split(","):
        block = None if text_block == "channel" else int(text_block)
        if block is not None and any(w.shape[1] % block for w in originals.values()):
            print(f"{text_block:<14}{'(an input width is not a multiple of the block)':>30}")
            continue
        for name, p in model.named_parameters():
            if name in originals:
                p.copy_(fake_int4(originals[name], block))
        got = torch.log_softmax(model(ids).logits[0].double(), -1)
        kl = (reference.exp() * (reference - got)).sum(-1).mean().item()
        top1 = (reference.argmax(-1) == got.argmax(-1)).double().mean().item()
        print(f"{text_block:<14}{kl:>10.4f}{top1:>8.4f}")


if __name__ == "__main__":
    main()
