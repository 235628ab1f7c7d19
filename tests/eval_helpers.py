"""Checkpoints with a tokenizer for the eval tests: a byte-level tokenizer (id = byte value, vocab 256),
tiny random Llamas carrying it, and a *bigram* Llama whose next-token logits are an explicit table,
so perplexity and multiple-choice picks can be computed by hand."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from tinyexport.models.config import TINY, ModelConfig

from .tiny_models import hf_llama, save_hf_checkpoint

BIGRAM = dataclasses.replace(TINY, hidden_size=256, intermediate_size=32, num_layers=1, head_dim=16, rms_norm_eps=1e-6)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel pre-tokenizers use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def write_byte_tokenizer(directory: Path) -> Path:
    """tokenizer.json mapping every UTF-8 byte to the id equal to its value (no merges, no specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(Path(directory) / "tokenizer.json"))
    return Path(directory)


def byte_ids(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def tiny_text_checkpoint(directory: Path, seed: int = 0, config: ModelConfig = TINY) -> Path:
    save_hf_checkpoint(config, directory, seed=seed)
    return write_byte_tokenizer(directory)


def bigram_checkpoint(directory: Path, table: np.ndarray) -> Path:
    """A Llama whose logits after token i are ``table[i]`` (up to float32 rounding).

    One-hot embeddings, attention and MLP outputs zeroed (the residual stream stays the current
    token's one-hot), final RMSNorm scales it by s = 1/sqrt(1/256 + eps), lm_head column i = table[i]/s.
    """
    model = hf_llama(BIGRAM, seed=0)
    scale = 1.0 / math.sqrt(1.0 / BIGRAM.hidden_size + BIGRAM.rms_norm_eps)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(BIGRAM.vocab_size, BIGRAM.hidden_size))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.copy_(torch.from_numpy(np.asarray(table, dtype=np.float64).T / scale).float())
    model.save_pretrained(str(directory))
    return write_byte_tokenizer(directory)


def bigram_logprobs(table: np.ndarray) -> np.ndarray:
    t = np.asarray(table, dtype=np.float64)
    t = t - t.max(axis=1, keepdims=True)
    return t - np.log(np.exp(t).sum(axis=1, keepdims=True))


class LastPositionOnly:
    """A real runner seen the way an artefact exported with ``--prefill-logits last`` is: prefill
    returns only the last position's logits, so scoring must take the decode path."""

    logits_positions = "last"

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.config, self.max_len = f"{inner.name}:last", inner.config, inner.max_len

    @property
    def position(self) -> int:
        return self.inner.position

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        return self.inner.prefill(tokens)[-1:]

    def decode(self, token: int) -> np.ndarray:
        return self.inner.decode(token)

    def reset(self) -> None:
        self.inner.reset()

    def rollback(self, position: int) -> None:
        self.inner.rollback(position)


TEXT = (
    "Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day, to the last syllable "
    "of recorded time; and all our yesterdays have lighted fools the way to dusty death. Out, out, brief "
    "candle! Life's but a walking shadow, a poor player, that struts and frets his hour upon the stage, and "
    "then is heard no more. It is a tale told by an idiot, full of sound and fury, signifying nothing.\n"
)
WINDOW, STRIDE = 96, 40


def transformers_sliding_perplexity(model, ids: np.ndarray, window: int, stride: int) -> tuple[float, int]:
    """The protocol as transformers documents it: labels -100 outside each window's new tokens, the
    model's own shifted cross-entropy; the mean is re-weighted by the labels that really count."""
    nll_sum, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        inputs = torch.from_numpy(ids[begin:end])[None]
        labels = inputs.clone()
        labels[:, : -(end - prev_end)] = -100
        with torch.no_grad():
            loss = model(input_ids=inputs, labels=labels).loss.double().item()
        scored = int((labels[:, 1:] != -100).sum())
        nll_sum += loss * scored
        count += scored
        prev_end = end
        if end == len(ids):
            break
    return math.exp(nll_sum / count), count
