"""Level 1: the re-implementation against transformers' LlamaForCausalLM on tiny random configs."""

from __future__ import annotations

import pytest
import torch

from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.models.llama import empty_kv_cache
from tinyexport.models.loading import build_model
from tinyexport.models.weights import hf_to_ours

from .bounds import FLASH_VS_STANDARD_DECODE_MAX_ABS, FLASH_VS_STANDARD_PREFILL_MAX_ABS, REIMPL_TINY_MAX_ABS
from .tiny_models import TINY_VARIANTS, hf_llama

SEQ = 37  # not a multiple of any flash block size used below


def _tokens(vocab: int, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=sorted(TINY_VARIANTS))
def pair(request):
    config = TINY_VARIANTS[request.param]
    hf = hf_llama(config, seed=3)
    ours_state = hf_to_ours(config, {k: v for k, v in hf.state_dict().items()})
    return config, hf, ours_state


@pytest.mark.parametrize("attention", ATTENTION_IMPLS)
def test_full_forward_matches_hf(pair, attention):
    config, hf, state = pair
    tokens = _tokens(config.vocab_size, SEQ)
    model = build_model(config, state, max_seq_len=64, attention=attention, flash_block_size=16)
    with torch.no_grad():
        ref = hf(tokens).logits
        ours, _ = model(tokens, torch.arange(SEQ), empty_kv_cache(config, 64))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= REIMPL_TINY_MAX_ABS
    assert ref.abs().max().item() > 10 * REIMPL_TINY_MAX_ABS  # the comparison is not between two near-zero tensors


@pytest.mark.parametrize("writer", ["index_copy", "concat"])
@pytest.mark.parametrize("attention", ATTENTION_IMPLS)
def test_prefill_then_decode_equals_full_forward(pair, attention, writer):
    config, _hf, state = pair
    tokens = _tokens(config.vocab_size, SEQ, seed=2)
    model = build_model(config, state, max_seq_len=64, attention=attention, flash_block_size=8, kv_writer=writer)
    cache_len = 64 if writer == "index_copy" else 0  # concat starts from an empty past, like Optimum
    with torch.no_grad():
        full, _ = model(tokens, torch.arange(SEQ), empty_kv_cache(config, cache_len))
        kv = empty_kv_cache(config, cache_len)
        first, kv = model(tokens[:, :20], torch.arange(20), kv)
        steps = [first]
        for i in range(20, SEQ):
            out, kv = model(tokens[:, i : i + 1], torch.tensor([i]), kv)
            steps.append(out)
    incremental = torch.cat(steps, dim=1)
    assert (incremental - full).abs().max().item() <= REIMPL_TINY_MAX_ABS
    expected_len = 64 if writer == "index_copy" else SEQ
    assert kv[0][0].shape == (1, config.num_kv_heads, expected_len, config.head_dim)


@pytest.mark.parametrize("block", [4, 8, 16, 37, 64, 100])
def test_flash_equals_standard_for_any_block_size(pair, block):
    config, _, state = pair
    tokens = _tokens(config.vocab_size, SEQ, seed=4)
    std = build_model(config, state, max_seq_len=64, attention="standard")
    flash = build_model(config, state, max_seq_len=64, attention="flash", flash_block_size=block)
    with torch.no_grad():
        a, kv_a = std(tokens, torch.arange(SEQ), empty_kv_cache(config, 64))
        b, kv_b = flash(tokens, torch.arange(SEQ), empty_kv_cache(config, 64))
        assert (a - b).abs().max().item() <= FLASH_VS_STANDARD_PREFILL_MAX_ABS
        nxt = tokens[:, :1]
        da, _ = std(nxt, torch.tensor([SEQ]), kv_a)
        db, _ = flash(nxt, torch.tensor([SEQ]), kv_b)
    assert (da - db).abs().max().item() <= FLASH_VS_STANDARD_DECODE_MAX_ABS


def test_last_logits_only_is_the_last_row(pair):
    config, _, state = pair
    tokens = _tokens(config.vocab_size, 9)
    model = build_model(config, state, max_seq_len=32)
    with torch.no_grad():
        all_rows, _ = model(tokens, torch.arange(9), empty_kv_cache(config, 32))
        last, _ = model(tokens, torch.arange(9), empty_kv_cache(config, 32), logits="last")
    assert last.shape == (1, 1, config.vocab_size)
    torch.testing.assert_close(last[:, 0], all_rows[:, -1], rtol=0, atol=1e-6)


def test_unknown_attention_is_refused():
    from tinyexport.models.llama import get_attention

    with pytest.raises(ValueError, match="unknown attention implementation 'bogus'"):
        get_attention("bogus")
