"""Checkpoints and statistics for the speculative-decoding and chat tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tinyexport.models.config import TINY, ModelConfig

from .eval_helpers import write_byte_tokenizer
from .tiny_models import hf_llama

# ChatML, as SmolLM2's template renders it (without its default system prompt).
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def text_checkpoint(directory: Path, seed: int, config: ModelConfig = TINY, zero_lm_head: bool = False) -> Path:
    """A tiny random Llama (transformers-initialised with ``seed``) with the byte tokenizer. With
    ``zero_lm_head`` every logit is 0, so its greedy choice is always token 0."""
    model = hf_llama(config, seed)
    if zero_lm_head:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    model.save_pretrained(str(directory))
    write_byte_tokenizer(directory)
    return Path(directory)


def ascii_chat_checkpoint(directory: Path, seed: int, max_positions: int = 512) -> Path:
    """A vocab-128 tiny Llama whose tokenizer maps each ASCII byte to its value and has a ChatML template:
    every id decodes to one ASCII character that encodes back to the same id, so a generated answer
    re-encodes to exactly the ids that were generated."""
    import dataclasses
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from .eval_helpers import _bytes_to_unicode

    config = dataclasses.replace(
        TINY, vocab_size=128, bos_token_id=None, eos_token_id=None, max_position_embeddings=max_positions
    )
    hf_llama(config, seed).save_pretrained(str(directory))
    vocab = {ch: b for b, ch in _bytes_to_unicode().items() if b < 128}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(Path(directory) / "tokenizer.json"))
    (Path(directory) / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    return Path(directory)


def chi_square(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """(statistic, degrees of freedom) of observed ``counts`` against ``probs``; cells expecting fewer
    than ``min_expected`` draws are pooled into one."""
    n = counts.sum()
    expected = probs * n
    big = expected >= min_expected
    obs = [*counts[big], counts[~big].sum()]
    exp = [*expected[big], expected[~big].sum()]
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    obs, exp = np.asarray(obs, float), np.asarray(exp, float)
    return float(((obs - exp) ** 2 / exp).sum()), len(exp) - 1


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper quantile of chi-square with ``df`` degrees of freedom (Wilson-Hilferty; z = 3.09: 0.999)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
