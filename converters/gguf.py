"""GGUF converter: checkpoint -> ``model.gguf`` for llama.cpp, written with the ``gguf`` package.

Tensor names come from the one name table (``models.weights.name_table``); q/k rows are permuted the
way llama.cpp's own converter does (our GGUF reader undoes it). Metadata: architecture ``llama``,
shapes, RoPE theta, norm eps, context length, the tokenizer (``converters/gguf_vocab.py``) and the
chat template. Recipes quantize with ``gguf.quants`` (llama.cpp's reference quantizers in numpy):
norms stay F32; the per-recipe tensor types are in ``GGUF_RECIPES``.
The pipeline (``converters/pipeline.py``) does the atomic directory, tokenizer files and manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .export_config import ExportConfig

MODEL_FILE = "model.gguf"


@dataclass(frozen=True)
class GGUFRecipe:
    """GGML tensor types (by name, see ``gguf.GGMLQuantizationType``) for a recipe's 2-D weights."""

    layers: str  # every projection of every block
    embeddings: str  # token_embd and output (the same tensor when tied)
    file_type: str  # gguf.LlamaFileType member recorded as general.file_type
    kv_cache: str = "F16"  # the runner's KV-cache type (llama.cpp's default is F16; fp32 keeps F32 end to end)


# q4_0 keeps token_embd/output at Q8_0: llama.cpp's own quantizer likewise gives the output tensor more
# bits than the blocks (Q6_K there; gguf-py has no Q6_K quantizer), and a tied table is both input and output.
GGUF_RECIPES: dict[str, GGUFRecipe] = {
    "fp32": GGUFRecipe("F32", "F32", "ALL_F32", kv_cache="F32"),
    "fp16": GGUFRecipe("F16", "F16", "MOSTLY_F16"),
    "q8_0": GGUFRecipe("Q8_0", "Q8_0", "MOSTLY_Q8_0"),
    "q4_0": GGUFRecipe("Q4_0", "Q8_0", "MOSTLY_Q4_0"),
}


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's rotary row order for q/k: HF rows (head, half, i) become (head, i, half).

    The inverse of ``models.weights._unpermute_qk``."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(config: Any, state: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, fp32 array in llama.cpp's layout) for every tensor, from our state dict."""
    from tinyexport.models.weights import name_table

    out = []
    for ours, _hf, gname in name_table(config):
        w = np.ascontiguousarray(state[ours].detach().numpy(), dtype=np.float32)
        if gname.endswith("attn_q.weight"):
            w = permute_qk(w, config.num_heads)
        elif gname.endswith("attn_k.weight"):
            w = permute_qk(w, config.num_kv_heads)
        out.append((gname, w))
    return out


def tensor_type(gname: str, array: np.ndarray, recipe: GGUFRecipe) -> str:
    if array.ndim == 1:
        return "F32"
    return recipe.embeddings if gname in ("token_embd.weight", "output.weight") else recipe.layers


def convert(checkpoint: Any, export: ExportConfig, out_dir: Path) -> dict[str, Any]:
    import gguf

    from tinyexport.models.weights import load_hf_weights

    from .gguf_vocab import read_vocab

    config = checkpoint.config
    recipe = GGUF_RECIPES[export.recipe]
    vocab = read_vocab(
        checkpoint.tokenizer_dir,
        vocab_size=config.vocab_size,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )
    check_block_sizes(config, recipe)
    state = load_hf_weights(config, checkpoint.directory)
    path = Path(out_dir) / MODEL_FILE
    writer = gguf.GGUFWriter(str(path), "llama")
    write_metadata(writer, config, checkpoint.name, recipe)
    vocab.write(writer)
    types: dict[str, int] = {}
    weight_bytes = 0
    for gname, w in gguf_tensors(config, state):
        qtype = gguf.GGMLQuantizationType[tensor_type(gname, w, recipe)]
        data = gguf.quants.quantize(w, qtype)
        writer.add_tensor(gname, data, raw_dtype=qtype)
        types[qtype.name] = types.get(qtype.name, 0) + 1
        weight_bytes += data.nbytes
    del state
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "signatures": {"llama.cpp": {"architecture": "llama", "tokenizer": vocab.model, "pre_tokenizer": vocab.pre}},
        "weight_bytes": weight_bytes,
        "gguf": {
            "writer": f"gguf {_version('gguf')}",
            "tensor_types": types,
            "file_type": recipe.file_type,
            "kv_cache_type": recipe.kv_cache,
            "tokenizer_model": vocab.model,
            "tokenizer_pre": vocab.pre,
        },
    }


def write_metadata(writer: Any, config: Any, name: str, recipe: GGUFRecipe) -> None:
    """The ``general.*`` and ``llama.*`` keys llama.cpp reads for a Llama model."""
    import gguf

    writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType[recipe.file_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_layers)
    writer.add_head_count(config.num_heads)
    writer.add_head_count_kv(config.num_kv_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))


def check_block_sizes(config: Any, recipe: GGUFRecipe) -> None:
    """Quantized GGML rows hold whole blocks of 32: every quantized matrix's row length must divide."""
    import gguf

    from tinyexport.errors import UserError

    widths = {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_heads * head_dim": config.q_dim,
    }
    for type_name in {recipe.layers, recipe.embeddings}:
        block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]][0]
        bad = {k: v for k, v in widths.items() if v % block}
        if bad:
            raise UserError(
                f"GGUF {type_name} stores rows in blocks of {block}, but {bad} is not a multiple of "
                f"{block}; use --quantize fp16 or fp32 for this model"
            )


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["GGUF_RECIPES", "MODEL_FILE", "convert", "permute_qk"]
