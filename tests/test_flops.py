"""The analytical FLOPs model: hand-computed totals, FlopCounterMode agreement, the CLI and its bad input."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from tinyexport.flops import LAYER_COMPONENTS, MATMUL_COMPONENTS, counted_matmul_flops, estimate
from tinyexport.models.config import TINY, TINYLLAMA_1_1B

from .cli_helpers import assert_bad_input, run_cli
from .tiny_models import TINY_VARIANTS

# TINY: hidden 64, intermediate 128, 2 layers, 4 query / 2 KV heads, head_dim 16, vocab 256; 8 tokens.
# Written out by hand, term by term (multiply-add = 2 FLOPs):
TINY_T8 = {
    "q_proj": 2 * 8 * 64 * 64,  # 65536
    "k_proj": 2 * 8 * 64 * 32,  # 32768 (GQA: 2 KV heads x 16)
    "v_proj": 2 * 8 * 64 * 32,
    "o_proj": 2 * 8 * 64 * 64,
    "attn_scores": 2 * 4 * 8 * 8 * 16,  # 8192: every query head against 8 keys
    "attn_values": 2 * 4 * 8 * 8 * 16,
    "gate_proj": 2 * 8 * 64 * 128,  # 131072
    "up_proj": 2 * 8 * 64 * 128,
    "down_proj": 2 * 8 * 128 * 64,
    "attn_norm": 8 * (4 * 64 + 3),  # 2072
    "mlp_norm": 8 * (4 * 64 + 3),
    "rope": 8 * (4 + 2) * (3 * 16 + 8),  # 2688: q and k head vectors, 3 per element + negating half
    "softmax": 6 * 4 * 8 * 8,  # 1536
    "swiglu_act": 4 * 8 * 128,  # 4096
    "swiglu_product": 8 * 128,
    "residual": 2 * 8 * 64,
}
TINY_T8_LM_HEAD = 2 * 8 * 64 * 256  # 262144
TINY_T8_FINAL_NORM = 8 * (4 * 64 + 3)


def test_tiny_totals_match_hand_computation():
    est = estimate(TINY, 8)
    per_layer = sum(TINY_T8.values())
    assert per_layer == 620720
    assert est.total_flops == 2 * per_layer + TINY_T8_LM_HEAD + TINY_T8_FINAL_NORM == 1505656
    assert est.matmul_flops == 1474560
    assert est.flops_per_token == 1505656 / 8
    for layer in est.layers:
        assert layer == TINY_T8
    comps = est.components
    assert comps["lm_head"] == TINY_T8_LM_HEAD and comps["q_proj"] == 2 * 65536
    assert sum(est.shares().values()) == pytest.approx(1.0)
    assert sum(est.group_shares().values()) == pytest.approx(1.0)


def test_options_change_exactly_their_terms():
    base = estimate(TINY, 8)
    assert base.total_flops - estimate(TINY, 8, softmax=False).total_flops == 2 * 1536
    last = estimate(TINY, 8, logits="last")
    assert base.total_flops - last.total_flops == (TINY_T8_LM_HEAD - 2 * 64 * 256) + (TINY_T8_FINAL_NORM - (4 * 64 + 3))
    batch = estimate(TINY, 8, batch_size=3)
    assert batch.total_flops == 3 * base.total_flops and batch.flops_per_token == base.flops_per_token
    # A decode step: one token against 100 keys; only the attention products and softmax scale with keys.
    d100, d200 = estimate(TINY, 1, key_len=100, logits="last"), estimate(TINY, 1, key_len=200, logits="last")
    assert d200.total_flops - d100.total_flops == TINY.num_layers * 100 * TINY.num_heads * (2 * 2 * 16 + 6)


@pytest.mark.parametrize("variant", ["gqa", "mqa", "headdim24", "tied_oddvocab", "mha_theta"])
@pytest.mark.parametrize("seq_len, logits", [(8, "all"), (13, "last")])
def test_matmul_terms_equal_flop_counter_mode(variant, seq_len, logits):
    config = TINY_VARIANTS[variant]
    est = estimate(config, seq_len, logits=logits)
    counted = counted_matmul_flops(config, seq_len, logits=logits)
    comps = est.components
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"):
        assert counted[name] == comps[name], name
    assert counted["attn_products"] == comps["attn_scores"] + comps["attn_values"]
    assert counted["total"] == est.matmul_flops == sum(comps[n] for n in MATMUL_COMPONENTS)
    # FlopCounterMode counts no element-wise op: the difference is exactly our non-matmul terms.
    assert est.total_flops - counted["total"] == sum(v for k, v in comps.items() if k not in MATMUL_COMPONENTS) > 0


def test_tinyllama_cli_json_csv_and_validation(tmp_path):
    out_json, out_csv = tmp_path / "f.json", tmp_path / "f.csv"
    res = run_cli(
        "flops",
        "--config",
        "tinyllama-1.1b",
        "--seq-len",
        "128",
        "--validate",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    assert res.code == 0, res.stderr
    assert "exact match" in res.stdout
    doc = json.loads(out_json.read_text())
    for key in ("config", "seq_len", "batch_size", "total_flops", "flops_per_token", "components", "layers"):
        assert key in doc
    assert doc["config"]["name"] == "tinyllama-1.1b" and doc["seq_len"] == 128 and doc["batch_size"] == 1
    assert doc["flop_counter_mode"]["total"] == doc["matmul_flops"]
    assert len(doc["layers"]) == TINYLLAMA_1_1B.num_layers
    assert set(LAYER_COMPONENTS) <= set(doc["layers"][0])
    assert doc["total_flops"] == sum(doc["components"].values())
    assert doc["flops_per_token"] == pytest.approx(doc["total_flops"] / 128)
    # Every token multiplies every non-embedding weight once: >= 2 x those parameters per token.
    non_embedding = TINYLLAMA_1_1B.num_parameters() - TINYLLAMA_1_1B.vocab_size * TINYLLAMA_1_1B.hidden_size
    assert doc["flops_per_token"] > 2 * non_embedding
    rows = list(csv.DictReader(out_csv.open()))
    by_name = {r["component"]: r for r in rows}
    assert int(by_name["total"]["flops"]) == doc["total_flops"]
    assert int(by_name["gate_proj"]["flops"]) == doc["components"]["gate_proj"]


def test_checkpoint_dir_is_read_for_its_config_only(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    cfg = dataclasses.replace(TINY, num_layers=3)
    (d / "config.json").write_text(json.dumps(cfg.to_hf_dict()))  # no weights at all: never needed
    res = run_cli("flops", "--checkpoint", str(d), "--seq-len", "8", "--json", str(tmp_path / "f.json"))
    assert res.code == 0, res.stderr
    assert json.loads((tmp_path / "f.json").read_text())["total_flops"] == estimate(cfg, 8).total_flops


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["flops", "--config", "gpt5"], ["unknown preset", "gpt5"]),
        (["flops", "--config", "tiny", "--seq-len", "0"], ["seq_len", "positive"]),
        (["flops", "--config", "tiny", "--seq-len", "-4"], ["seq_len", "positive"]),
        (["flops", "--config", "tiny", "--batch-size", "0"], ["batch_size"]),
        (["flops"], ["exactly one of"]),
        (["flops", "--config", "tiny", "--checkpoint", "tiny"], ["exactly one of"]),
        (["flops", "--checkpoint", "/no/such/dir"], ["neither a preset"]),
    ],
)
def test_bad_input(tmp_path, args, fragments):
    assert_bad_input(run_cli(*args, cache=tmp_path), *fragments)
