"""Tiny random Llama configs and HF checkpoints built by transformers itself (shared by the tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from tinyexport.models.config import TINY, ModelConfig
from tinyexport.models.weights import name_table

# Variants the issue asks for: GQA, MQA, head_dim not hidden/heads, tied embeddings, odd vocab.
TINY_VARIANTS: dict[str, ModelConfig] = {
    "gqa": TINY,
    "mqa": dataclasses.replace(TINY, num_kv_heads=1),
    "headdim24": dataclasses.replace(TINY, head_dim=24),
    "tied_oddvocab": dataclasses.replace(TINY, tie_embeddings=True, vocab_size=257),
    "mha_theta": dataclasses.replace(TINY, num_kv_heads=4, rope_theta=100000.0, num_layers=3),
}


def hf_llama(config: ModelConfig, seed: int = 0):
    """transformers' LlamaForCausalLM of this config, initialised by transformers with ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = {k: v for k, v in config.to_hf_dict().items() if k not in ("architectures", "model_type", "torch_dtype")}
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**hf_cfg, attn_implementation="eager")).eval()
    with torch.no_grad():  # non-trivial norms so a mis-mapped norm weight cannot hide
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def save_hf_checkpoint(config: ModelConfig, directory: Path, seed: int = 0, safe: bool = True) -> Path:
    model = hf_llama(config, seed)
    model.save_pretrained(str(directory), safe_serialization=safe)
    return directory


def _permute_like_llama_cpp(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's q/k permutation (written out independently of our reader)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(cfg, hf_state, path):
    """A llama.cpp-layout F32 GGUF of ``hf_state`` (q/k rows permuted as llama.cpp's converter does)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.num_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    for _, hf_name, gguf_name in name_table(cfg):
        w = hf_state[hf_name].numpy().astype(np.float32)
        if gguf_name.endswith("attn_q.weight"):
            w = _permute_like_llama_cpp(w, cfg.num_heads)
        elif gguf_name.endswith("attn_k.weight"):
            w = _permute_like_llama_cpp(w, cfg.num_kv_heads)
        writer.add_tensor(gguf_name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
