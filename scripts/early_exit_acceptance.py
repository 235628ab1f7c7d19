#!/usr/bin/env python3
"""Greedy acceptance of every layer-truncated self-draft (``--transform truncate-layers=N``) at k = 1.

The target (the whole checkpoint, our torch model) answers each chat prompt greedily; then one forward
pass over prompt + answer records every layer's output, and the final norm + LM head turn the output of
layer N into the logits that ``truncate-layers=N`` computes (``tests/test_speculative.py`` checks that
equality). The fraction of answer positions where that argmax equals the target's token is the
acceptance rate of a k = 1 greedy speculative round with that draft (same context, same rule).

    .venv/bin/python scripts/early_exit_acceptance.py [--checkpoint smollm2-135m] [--new-tokens 128]
"""

from __future__ import annotations

import argparse

PROMPTS = (
    "Write a short story about a robot who learns to paint.",
    "Explain in a few sentences why the sky is blue.",
    "Give three tips for learning a new language.",
)


def main() -> None:
    import numpy as np
    import torch

    from tinyexport.models.llama import empty_kv_cache
    from tinyexport.models.loading import load_model
    from tinyexport.resolve import open_checkpoint
    from tinyexport.tokenizer import Tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="smollm2-135m")
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = open_checkpoint(args.checkpoint)
    tokenizer = Tokenizer(ckpt.directory)
    cache = 1024
    model = load_model(ckpt, max_seq_len=cache).eval()
    layers = model.config.num_layers
    agree, total = np.zeros(layers), 0
    outputs: dict[int, torch.Tensor] = {}
    for i, block in enumerate(model.layers):
        block.register_forward_hook(lambda module, inputs, out, i=i: outputs.__setitem__(i, out[0]))
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer.encode(tokenizer.render_chat([{"role": "user", "content": prompt}])).tolist()
            kv = empty_kv_cache(model.config, cache)
            logits, kv = model(torch.tensor([ids]), torch.arange(len(ids)), kv, logits="last")
            answer: list[int] = []
            while len(answer) < args.new_tokens:
                answer.append(int(logits[0, -1].argmax()))
                if answer[-1] == model.config.eos_token_id:
                    break
                pos = torch.tensor([len(ids) + len(answer) - 1])
                logits, kv = model(torch.tensor([[answer[-1]]]), pos, kv, logits="last")
            full = ids + answer
            model(torch.tensor([full]), torch.arange(len(full)), empty_kv_cache(model.config, cache))
            rows = slice(len(ids) - 1, len(full) - 1)  # the positions that predict each answer token
            for n in range(layers):
                early = model.lm_head(model.norm(outputs[n][0, rows])).argmax(-1)
                agree[n] += int((early == torch.tensor(answer)).sum())
            total += len(answer)
    print(f"{ckpt.name}: {len(PROMPTS)} chat prompts, {total} greedy answer tokens of the full model")
    print("| truncate-layers | acceptance at k = 1 |")
    print("|---:|---:|")
    for n in range(layers):
        print(f"| {n + 1}{' (whole model)' if n + 1 == layers else ''} | {agree[n] / total:.1%} |")


if __name__ == "__main__":
    main()
