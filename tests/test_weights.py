"""Weight loading: HF safetensors / .bin directories, GGUF files, random presets, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyexport.models.checkpoint import CheckpointError, resolve_checkpoint
from tinyexport.models.config import TINY, UnsupportedModelError, config_from_hf_dict, read_hf_config
from tinyexport.models.loading import load_model
from tinyexport.models.weights import WeightsError, load_hf_weights, name_table, ours_to_hf, read_gguf

from .tiny_models import TINY_VARIANTS, hf_llama, save_hf_checkpoint, write_gguf


def test_hf_dir_round_trip(tiny_hf_dir, tmp_path):
    ckpt = resolve_checkpoint(str(tiny_hf_dir), cache=tmp_path)
    assert ckpt.config == TINY
    model = load_model(ckpt)
    ref = hf_llama(TINY, seed=0)
    for name, tensor in ours_to_hf(TINY, model.state_dict()).items():
        torch.testing.assert_close(tensor, ref.state_dict()[name], rtol=0, atol=0)


def test_pytorch_bin_loads_like_safetensors(tmp_path):
    cfg = TINY_VARIANTS["tied_oddvocab"]
    a = load_hf_weights(cfg, save_hf_checkpoint(cfg, tmp_path / "st", seed=5, safe=True))
    b = load_hf_weights(cfg, save_hf_checkpoint(cfg, tmp_path / "bin", seed=5, safe=False))
    assert sorted(a) == sorted(b) and "lm_head.weight" not in a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_tied_model_stores_embedding_once(tmp_path):
    cfg = TINY_VARIANTS["tied_oddvocab"]
    ckpt = resolve_checkpoint(str(save_hf_checkpoint(cfg, tmp_path / "m")), cache=tmp_path)
    model = load_model(ckpt)
    assert model.lm_head.weight is model.tok_embeddings.weight


@pytest.mark.parametrize("variant", ["gqa", "tied_oddvocab"])
def test_gguf_reader_inverts_llama_cpp_layout(tmp_path, variant):
    cfg = TINY_VARIANTS[variant]
    hf_state = hf_llama(cfg, seed=7).state_dict()
    path = tmp_path / "tiny.gguf"
    write_gguf(cfg, hf_state, path)
    got_cfg, state, _ = read_gguf(path)
    assert got_cfg.num_heads == cfg.num_heads and got_cfg.num_kv_heads == cfg.num_kv_heads
    assert got_cfg.tie_embeddings == cfg.tie_embeddings
    for _, hf_name, _ in name_table(cfg):
        np.testing.assert_array_equal(state[hf_name].numpy(), hf_state[hf_name].numpy(), err_msg=hf_name)


def test_random_preset_is_deterministic(tmp_path):
    a = resolve_checkpoint("tiny", cache=tmp_path / "c1", random_weights=True, seed=3)
    b = resolve_checkpoint("tiny", cache=tmp_path / "c2", random_weights=True, seed=3)
    c = resolve_checkpoint("tiny", cache=tmp_path / "c2", random_weights=True, seed=4)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    state = load_hf_weights(TINY, a.directory)
    assert state["layers.0.attn.wq.weight"].std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize(
    "hf, match",
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "model_type is 'gpt2'"),
        ({"model_type": "llama", "attention_bias": True}, "attention_bias"),
        ({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
        ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act"),
        ({"model_type": "llama"}, "lacks required field"),
    ],
)
def test_unsupported_configs_say_why(hf, match):
    with pytest.raises(UnsupportedModelError, match=match):
        config_from_hf_dict(hf)


def test_wrong_shape_names_tensor_and_shapes(tmp_path, tiny_hf_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_hf_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        WeightsError,
        match=r"layers\.0\.mlp\.w_gate\.weight \(model\.layers\.0\.mlp\.gate_proj\.weight\) has shape \[128, 64\] but the config needs \[96, 64\]",
    ):
        load_hf_weights(read_hf_config(bad), bad)


def test_checkpoint_resolution_refusals(tmp_path):
    with pytest.raises(CheckpointError, match="neither a preset"):
        resolve_checkpoint(str(tmp_path / "nope"), cache=tmp_path)
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        resolve_checkpoint(str(tmp_path), cache=tmp_path)
    with pytest.raises(CheckpointError, match="--random-weights"):
        resolve_checkpoint("tinyllama-1.1b", cache=tmp_path)
