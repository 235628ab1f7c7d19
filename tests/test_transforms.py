"""Transforms on tiny random models: head pruning is exact masking, ratio 0 is the identity, int8 KV
error is within half a quantization step, and transforms survive a JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tinyexport.models.config import TINY, ModelConfig
from tinyexport.models.llama import dequantize_kv, empty_kv_cache, quantize_kv
from tinyexport.models.loading import build_model
from tinyexport.models.transforms import (
    Transform,
    TransformError,
    apply_transforms,
    choose_groups,
    choose_heads,
    head_importance,
    parse_transform,
    parse_transforms,
    remove_heads,
)
from tinyexport.models.weights import hf_to_ours

# 3 query heads per KV group, so pruning can leave layers with different group sizes
G3 = dataclasses.replace(TINY, num_heads=6, num_kv_heads=2, num_layers=3)


def _state(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    from tests.tiny_models import hf_llama

    return {k: v.detach().clone() for k, v in hf_to_ours(config, hf_llama(config, seed).state_dict()).items()}


def _run(config: ModelConfig, state, tokens: torch.Tensor, split: int = 5) -> torch.Tensor:
    """Logits of a prefill of ``tokens[:split]`` then token-by-token decode (fixed cache)."""
    model = build_model(config, state, max_seq_len=32)
    kv = empty_kv_cache(config, 32)
    rows = []
    with torch.inference_mode():
        logits, kv = model(tokens[None, :split], torch.arange(split), kv)
        rows.append(logits[0])
        for p in range(split, tokens.numel()):
            logits, kv = model(tokens[None, p : p + 1], torch.tensor([p]), kv)
            rows.append(logits[0])
    return torch.cat(rows)


def _masked(config: ModelConfig, state, removed) -> dict[str, torch.Tensor]:
    """The unpruned model with the removed heads' o_proj columns zeroed: what pruning must equal."""
    out = dict(state)
    hd = config.head_dim
    for layer, heads in enumerate(removed):
        wo = state[f"layers.{layer}.attn.wo.weight"].clone()
        for h in heads:
            wo[:, h * hd : (h + 1) * hd] = 0
        out[f"layers.{layer}.attn.wo.weight"] = wo
    return out


TOKENS = torch.tensor([3, 17, 200, 45, 9, 77, 128, 5, 250, 31, 64, 12])


def test_ratio_zero_is_identity() -> None:
    state = _state(G3)
    removed = choose_heads(G3, head_importance(G3, state, "o_proj"), 0.0)
    assert removed == ((), (), ())
    config, pruned = remove_heads(G3, state, removed)
    assert config == G3
    assert all(torch.equal(pruned[k], state[k]) for k in state)
    assert torch.equal(_run(config, pruned, TOKENS), _run(G3, state, TOKENS))


@pytest.mark.parametrize("removed", [((0, 4), (), (1, 2, 3, 5)), ((2, 5), (1, 3), (0, 4))])
def test_pruned_equals_masked(removed) -> None:
    state = _state(G3, seed=1)
    config, pruned = remove_heads(G3, state, removed)
    assert config.num_heads_per_layer in (None, tuple(6 - len(r) for r in removed))
    assert [config.layer_heads(i)[0] for i in range(3)] == [6 - len(r) for r in removed]
    assert pruned["layers.0.attn.wq.weight"].shape[0] == config.layer_heads(0)[0] * G3.head_dim
    assert config.num_parameters() < G3.num_parameters()
    got, want = _run(config, pruned, TOKENS), _run(G3, _masked(G3, state, removed), TOKENS)
    assert (got - want).abs().max().item() < 1e-5
    assert (want - _run(G3, state, TOKENS)).abs().max().item() > 1e-3  # the masking did change the model


@pytest.mark.parametrize("criterion", ["o_proj", "activation"])
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_planned_pruning_keeps_groups_regular(criterion: str, ratio: float) -> None:
    state = _state(G3, seed=2)
    t = parse_transform(f"prune-heads={ratio}:{criterion}")
    config, pruned, (planned,) = apply_transforms(G3, state, [t], calibration=TOKENS[None])
    removed = sum(len(r) for r in planned.removed)
    assert removed == pytest.approx(ratio * 18, abs=2)  # whole steps of one head per KV group
    for gone in planned.removed:
        per_group = [sum(1 for h in gone if h // 3 == g) for g in range(2)]
        assert per_group[0] == per_group[1] < 3
    got = _run(config, pruned, TOKENS)
    want = _run(G3, _masked(G3, state, planned.removed), TOKENS)
    assert (got - want).abs().max().item() < 1e-5


def test_criteria_rank_by_their_own_measure() -> None:
    """o_proj ranks by the weight block norm; scaling one head's block up makes it the most important."""
    state = _state(G3, seed=3)
    hd = G3.head_dim
    state["layers.1.attn.wo.weight"][:, 4 * hd : 5 * hd] *= 50
    for criterion in ("o_proj", "activation"):
        scores = head_importance(G3, state, criterion, TOKENS[None])
        assert int(torch.argmax(scores[1])) == 4
        assert all(s.shape == (6,) for s in scores)


def test_transforms_round_trip_json() -> None:
    state = _state(G3)
    ts = parse_transforms(["prune-heads=0.25:activation"], kv_cache="int8")
    config, _, planned = apply_transforms(G3, state, ts, calibration=TOKENS[None])
    back = tuple(Transform.from_json(t.to_json(G3)) for t in planned)
    assert back == planned
    config2, _, _ = apply_transforms(G3, _state(G3), back)  # no calibration needed: the plan is recorded
    assert config2 == config
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.kv_cache_dtype == "int8"


@pytest.mark.parametrize(
    "text",
    [
        "prune-heads=0",
        "prune-heads=1",
        "prune-heads=-0.2",
        "prune-heads=abc",
        "prune-heads=0.2:magic",
        "prune-heads=0.2:o_proj:everywhere",
        "kv-cache=int4",
        "sparsify=0.5",
        "prune-heads",
        "truncate-layers=0",
        "truncate-layers=-1",
        "truncate-layers=1.5",
        "truncate-layers=x",
    ],
)
def test_bad_transforms_refused(text: str) -> None:
    with pytest.raises(TransformError):
        parse_transform(text)


def test_ratio_that_empties_a_group_refused() -> None:
    state = _state(TINY)  # 2 heads per KV group: at most half can go
    with pytest.raises(TransformError, match="no head"):
        apply_transforms(TINY, state, [parse_transform("prune-heads=0.6")])
    config, _, _ = apply_transforms(TINY, state, [parse_transform("prune-heads=0.5:o_proj")])
    assert (config.num_heads, config.num_kv_heads, config.num_heads_per_layer) == (2, 2, None)  # uniform: collapsed


def test_per_layer_config_validated() -> None:
    with pytest.raises(ValueError, match="multiples"):
        dataclasses.replace(G3, num_heads_per_layer=(6, 5, 6), num_kv_heads_per_layer=(2, 2, 2))
    with pytest.raises(ValueError, match="num_layers"):
        dataclasses.replace(G3, num_heads_per_layer=(6, 4), num_kv_heads_per_layer=(2, 2))
    with pytest.raises(ValueError, match="maxima"):
        dataclasses.replace(G3, num_heads_per_layer=(4, 4, 2), num_kv_heads_per_layer=(2, 2, 2))
    pruned = G3.with_layer_heads((6, 4, 2), (2, 2, 2))
    with pytest.raises(ValueError, match="per-layer head counts"):
        pruned.to_hf_dict()


def test_int8_quantization_error_within_half_a_step() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 16, generator=gen) * torch.logspace(-3, 2, 7)[None, None, :, None]
    x[0, 0, 0] = 0.0  # an all-zero row quantizes to zeros
    q, scale = quantize_kv(x)
    assert q.dtype == torch.int8 and scale.shape == (2, 3, 7, 1)
    assert torch.equal(scale, x.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 127)
    err = (x - dequantize_kv(q, scale)).abs()
    assert bool((err <= scale / 2 * (1 + 1e-5)).all())
    assert torch.equal(dequantize_kv(q, scale)[0, 0, 0], torch.zeros(16))
    assert int(q.abs().amax()) == 127  # the largest element of each row maps to +-127


def test_int8_kv_model_matches_prefill_and_decode() -> None:
    """The int8 cache is written then read: a prefill of all tokens and token-by-token decoding see
    the same quantized keys, so they agree to float rounding; and stay near the fp32 model."""
    state = _state(TINY)
    int8 = dataclasses.replace(TINY, kv_cache_dtype="int8")
    by_decode = _run(int8, state, TOKENS, split=1)
    model = build_model(int8, state, max_seq_len=32)
    with torch.inference_mode():
        all_at_once, kv = model(TOKENS[None], torch.arange(TOKENS.numel()), empty_kv_cache(int8, 32))
    assert kv[0][0].dtype == torch.int8 and kv[0][2].shape == (1, 2, 32, 1)
    assert (by_decode - all_at_once[0]).abs().max().item() < 1e-5
    fp32 = _run(TINY, state, TOKENS, split=1)
    diff = (by_decode - fp32).abs().max().item()
    assert 0 < diff < 0.05 * fp32.abs().max().item()


def test_mixed_precision_bf16() -> None:
    state = _state(TINY)
    config, mixed, _ = apply_transforms(TINY, state, [parse_transform("mixed-precision=bf16")])
    assert mixed["layers.0.mlp.w_up.weight"].dtype == torch.bfloat16
    assert mixed["tok_embeddings.weight"].dtype == torch.float32
    got, want = _run(config, mixed, TOKENS), _run(TINY, state, TOKENS)
    assert got.dtype == torch.float32
    diff = (got - want).abs().max().item()
    assert 0 < diff < 0.05 * want.abs().max().item()


def test_allocation_layer_normalises_scores() -> None:
    """Layer 0's heads all 10x weaker: raw (global) scores prune layer 0 first; per-layer normalised
    scores do not single it out."""
    state = _state(G3, seed=5)
    state["layers.0.attn.wo.weight"] = state["layers.0.attn.wo.weight"] * 0.1
    _, _, (raw,) = apply_transforms(G3, state, [parse_transform("prune-heads=0.2:o_proj:global")])
    _, _, (norm,) = apply_transforms(G3, state, [parse_transform("prune-heads=0.2:o_proj")])
    assert len(raw.removed[0]) == 4 and raw.removed[1:] == ((), ())  # 0.2 * 18 -> 4 heads, all in layer 0
    assert norm.removed != raw.removed
    assert norm.label == "prune-heads=0.2:o_proj" and raw.label == "prune-heads=0.2:o_proj:global"
    scores = head_importance(G3, state, "o_proj")
    relative = [s / s.mean() for s in scores]
    assert norm.removed == choose_heads(G3, relative, 0.2)


def test_truncate_layers_after_pruning_round_trips() -> None:
    """prune-heads then truncate-layers=2 on a 3-layer model: the per-layer heads are cut with the
    layers, layer 2's weights are gone, the others untouched; the manifest entries re-apply to the same."""
    from tinyexport.models.transforms import transforms_json

    state = _state(G3)
    ts = parse_transforms(["prune-heads=0.25:activation", "truncate-layers=2"])
    config, out, planned = apply_transforms(G3, state, ts, calibration=TOKENS[None])
    pruned, _, _ = apply_transforms(G3, state, planned[:1])
    assert config.num_layers == 2 and config.layer_heads(0) == pruned.layer_heads(0)
    assert config.layer_heads(1) == pruned.layer_heads(1)
    assert not any(k.startswith("layers.2.") for k in out)
    assert torch.equal(out["layers.1.mlp.w_up.weight"], state["layers.1.mlp.w_up.weight"])
    assert torch.equal(out["norm.weight"], state["norm.weight"])
    entries = transforms_json(G3, planned)
    assert entries[1] == {"name": "truncate-layers", "params": {"layers": 2}, "removed": {"layers": 1}}
    back = tuple(Transform.from_json(e) for e in entries)
    assert back == planned and apply_transforms(G3, _state(G3), back)[0] == config
    with pytest.raises(TransformError, match="keep between 1 and 2"):
        apply_transforms(G3, state, parse_transforms(["truncate-layers=3"]))


# ------------------------------------------------------------------------------------------ whole KV groups
@pytest.mark.parametrize("removed", [((0, 1, 2), (), (3, 4, 5)), ((3, 4, 5), (0, 1, 2, 4), ())])
def test_group_pruned_equals_masked(removed) -> None:
    """Removing a KV group (its K/V rows and its query heads) = zeroing its heads' o_proj columns; also
    mixed with within-group removal in one layer (layer 1: group 0 whole, one head of group 1)."""
    state = _state(G3, seed=6)
    config, pruned = remove_heads(G3, state, removed)
    kept_kv = [2 - sum(1 for g in range(2) if all(h in r for h in range(3 * g, 3 * g + 3))) for r in removed]
    assert [config.layer_heads(i)[1] for i in range(3)] == kept_kv
    for layer, n_kv in enumerate(kept_kv):
        assert pruned[f"layers.{layer}.attn.wk.weight"].shape[0] == n_kv * G3.head_dim
        assert pruned[f"layers.{layer}.attn.wv.weight"].shape[0] == n_kv * G3.head_dim
    # the kept K/V rows are the kept group's rows of the source
    hd, kept = G3.head_dim, 1 if 0 in removed[0] else 0
    assert torch.equal(pruned["layers.0.attn.wk.weight"], state["layers.0.attn.wk.weight"][kept * hd : (kept + 1) * hd])
    got, want = _run(config, pruned, TOKENS), _run(G3, _masked(G3, state, removed), TOKENS)
    assert (got - want).abs().max().item() < 1e-5
    assert (want - _run(G3, state, TOKENS)).abs().max().item() > 1e-3


@pytest.mark.parametrize("criterion", ["o_proj", "activation"])
def test_planned_group_pruning(criterion: str) -> None:
    """prune-heads=R:groups removes whole groups (never a layer's last), lowest summed importance first."""
    state = _state(G3, seed=7)
    t = parse_transform(f"prune-heads=0.34:{criterion}:groups")
    assert t.param("unit") == "groups" and t.label == f"prune-heads=0.34:{criterion}:groups"
    config, pruned, (planned,) = apply_transforms(G3, state, [t], calibration=TOKENS[None])
    assert sum(len(r) for r in planned.removed) == 6  # round(0.34 * 18) = 6 heads = 2 whole groups
    assert all(len(r) in (0, 3) for r in planned.removed)  # whole groups only, each layer keeps one
    assert sum(config.layer_heads(i)[1] for i in range(3)) == 4
    got = _run(config, pruned, TOKENS)
    want = _run(G3, _masked(G3, state, planned.removed), TOKENS)
    assert (got - want).abs().max().item() < 1e-5
    entry = planned.to_json(G3)
    assert entry["removed"]["kv_heads"] == 2 and entry["params"]["unit"] == "groups"
    assert entry["removed"]["parameters"] == 2 * (6 + 2) * G3.head_dim * G3.hidden_size
    assert G3.num_parameters() - config.num_parameters() == entry["removed"]["parameters"]
    assert Transform.from_json(entry) == planned


def test_group_choice_follows_summed_importance() -> None:
    state = _state(G3, seed=8)
    hd = G3.head_dim
    for layer in range(3):  # make group 1 of every layer ten times weaker, layer 2's the weakest
        w = state[f"layers.{layer}.attn.wo.weight"]
        w[:, 3 * hd :] *= 0.1 if layer < 2 else 0.01
    (removed,) = [choose_groups(G3, head_importance(G3, state, "o_proj"), 0.1)]  # round(1.8) = 2 -> one group
    assert removed == ((), (), (3, 4, 5))


def test_group_ratio_zero_is_identity() -> None:
    state = _state(G3)
    removed = choose_groups(G3, head_importance(G3, state, "o_proj"), 0.0)
    assert removed == ((), (), ())
    config, pruned = remove_heads(G3, state, removed)
    assert config == G3 and all(torch.equal(pruned[k], state[k]) for k in state)


def test_group_ratio_that_empties_a_layer_refused() -> None:
    state = _state(G3)  # 2 groups per layer: at most half the heads can go as whole groups
    with pytest.raises(TransformError, match="no KV group"):
        apply_transforms(G3, state, [parse_transform("prune-heads=0.6:groups")])
    with pytest.raises(TransformError, match="one group must remain"):
        remove_heads(G3, state, ((0, 1, 2, 3, 4, 5), (), ()))
    with pytest.raises(TransformError, match="unknown or repeated"):
        parse_transform("prune-heads=0.2:groups:groups")


def test_uniform_group_pruning_collapses_to_plain_gqa() -> None:
    state = _state(G3)
    config, _ = remove_heads(G3, state, ((3, 4, 5), (0, 1, 2), (0, 1, 2)))
    assert (config.num_heads, config.num_kv_heads, config.num_heads_per_layer) == (3, 1, None)


def test_default_criterion_is_the_data_aware_one() -> None:
    """`activation` measured better than `o_proj` on SmolLM2 (docs/optimize.md), so a bare ratio means it."""
    t = parse_transform("prune-heads=0.25")
    assert t.param("criterion") == "activation" and t.label == "prune-heads=0.25:activation"
    assert parse_transform("prune-heads=0.25:o_proj").param("criterion") == "o_proj"
    with pytest.raises(TransformError, match="calibration"):  # the default reads data: none given, none invented
        apply_transforms(TINY, _state(TINY), [t])
