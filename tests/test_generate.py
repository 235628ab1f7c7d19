"""Streaming generation over the Runner protocol."""

from __future__ import annotations

import numpy as np
import pytest

from tinyexport.generate import GenerationStats, SamplingConfig, TextStream, sample_next, stream_tokens
from tinyexport.runners.decoding import greedy_generate

from .cli_helpers import assert_bad_input, run_cli


def test_sampling_rules():
    rng = np.random.default_rng(0)
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    assert sample_next(logits, SamplingConfig(), rng) == 1
    assert all(sample_next(logits, SamplingConfig(temperature=5.0, top_k=1), rng) == 1 for _ in range(20))
    assert all(sample_next(logits, SamplingConfig(temperature=1.0, top_p=0.01), rng) == 1 for _ in range(20))
    draws = {sample_next(logits, SamplingConfig(temperature=1.0, top_k=2), rng) for _ in range(200)}
    assert draws == {1, 2}
    a = [sample_next(logits, SamplingConfig(temperature=1.0), np.random.default_rng(7)) for _ in range(5)]
    b = [sample_next(logits, SamplingConfig(temperature=1.0), np.random.default_rng(7)) for _ in range(5)]
    assert a == b
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)


def test_stream_equals_greedy_generate(tiny_hf_dir, tmp_path):
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner

    runner = TorchRunner.from_checkpoint(resolve_checkpoint(str(tiny_hf_dir), cache=tmp_path), max_len=64)
    prompt = np.arange(5, 17)
    expected = greedy_generate(runner, prompt, 10).tokens
    stats = GenerationStats()
    got = list(stream_tokens(runner, prompt, 10, SamplingConfig(), stats=stats))
    assert got == expected
    assert stats.new_tokens == 10 and stats.prompt_tokens == 12 and stats.stop_reason == "max_new_tokens"
    stopped = list(stream_tokens(runner, prompt, 10, SamplingConfig(), stop_ids=[expected[3]], stats=GenerationStats()))
    assert stopped == expected[: expected.index(expected[3]) + 1]


@pytest.mark.slow
def test_text_stream_rebuilds_the_text():
    from tinyexport.resolve import open_checkpoint
    from tinyexport.tokenizer import Tokenizer

    tok = Tokenizer(open_checkpoint("smollm2-135m").tokenizer_dir)
    text = "Café — naïve 東京 🙂 done."
    ids = tok.encode(text)
    stream = TextStream(tok)
    assert "".join(stream.push(int(i)) for i in ids) == tok.decode(ids) == text


@pytest.mark.slow
def test_generate_cli_chat_answers():
    res = run_cli("generate", "--chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "12")
    assert res.code == 0, res.stderr
    assert "Paris" in res.stdout
    assert "ms/token" in res.stderr


def test_generate_without_tokenizer_is_bad_input(tiny_hf_dir, tmp_path):
    assert_bad_input(run_cli("generate", "--checkpoint", str(tiny_hf_dir), cache=tmp_path), "no tokenizer")
