"""Weight loading: one name table (ours <-> HF <-> GGUF) used for safetensors, pytorch_model.bin and GGUF.

Unknown or missing tensors are refused with a message listing them; shape mismatches name the tensor
and both shapes. ``pytorch_model.bin`` is read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tinyexport.errors import UserError

from .config import ModelConfig, config_from_gguf_metadata


class WeightsError(UserError, ValueError):
    """Weights missing, unknown, malformed or of the wrong shape (message says which)."""


# (ours, HF, GGUF) -- "{i}" is the layer index. The one table every loader uses.
_LAYER_TABLE: tuple[tuple[str, str, str], ...] = (
    ("layers.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight", "blk.{i}.attn_norm.weight"),
    ("layers.{i}.attn.wq.weight", "model.layers.{i}.self_attn.q_proj.weight", "blk.{i}.attn_q.weight"),
    ("layers.{i}.attn.wk.weight", "model.layers.{i}.self_attn.k_proj.weight", "blk.{i}.attn_k.weight"),
    ("layers.{i}.attn.wv.weight", "model.layers.{i}.self_attn.v_proj.weight", "blk.{i}.attn_v.weight"),
    ("layers.{i}.attn.wo.weight", "model.layers.{i}.self_attn.o_proj.weight", "blk.{i}.attn_output.weight"),
    ("layers.{i}.mlp_norm.weight", "model.layers.{i}.post_attention_layernorm.weight", "blk.{i}.ffn_norm.weight"),
    ("layers.{i}.mlp.w_gate.weight", "model.layers.{i}.mlp.gate_proj.weight", "blk.{i}.ffn_gate.weight"),
    ("layers.{i}.mlp.w_up.weight", "model.layers.{i}.mlp.up_proj.weight", "blk.{i}.ffn_up.weight"),
    ("layers.{i}.mlp.w_down.weight", "model.layers.{i}.mlp.down_proj.weight", "blk.{i}.ffn_down.weight"),
)
_GLOBAL_TABLE: tuple[tuple[str, str, str], ...] = (
    ("tok_embeddings.weight", "model.embed_tokens.weight", "token_embd.weight"),
    ("norm.weight", "model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "lm_head.weight", "output.weight"),
)
# Buffers some older HF checkpoints carry; recomputed here, so safe to drop.
_IGNORABLE_HF_SUFFIXES = ("rotary_emb.inv_freq",)


def name_table(config: ModelConfig) -> list[tuple[str, str, str]]:
    """Expanded (ours, hf, gguf) rows for this config (lm_head omitted when embeddings are tied)."""
    rows = [(o.format(i=i), h.format(i=i), g.format(i=i)) for i in range(config.num_layers) for o, h, g in _LAYER_TABLE]
    rows += [r for r in _GLOBAL_TABLE if not (config.tie_embeddings and r[0] == "lm_head.weight")]
    return rows


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter name -> shape, derived from the config alone."""
    h, i, hd = config.hidden_size, config.intermediate_size, config.head_dim

    def per_layer(n: int) -> dict[str, tuple[int, ...]]:
        n_h, n_kv = config.layer_heads(n)  # per-layer counts after head pruning, else the config's
        return {
            "attn_norm.weight": (h,),
            "attn.wq.weight": (n_h * hd, h),
            "attn.wk.weight": (n_kv * hd, h),
            "attn.wv.weight": (n_kv * hd, h),
            "attn.wo.weight": (h, n_h * hd),
            "mlp_norm.weight": (h,),
            "mlp.w_gate.weight": (i, h),
            "mlp.w_up.weight": (i, h),
            "mlp.w_down.weight": (h, i),
        }

    shapes = {f"layers.{n}.{k}": s for n in range(config.num_layers) for k, s in per_layer(n).items()}
    shapes["tok_embeddings.weight"] = (config.vocab_size, h)
    shapes["norm.weight"] = (h,)
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    return shapes


def check_hf_layout(config: ModelConfig, hf_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse unknown/missing HF tensor names and wrong shapes, naming them (no tensor data needed)."""
    if config.num_layers * len(_LAYER_TABLE) > len(hf_shapes):  # before any per-layer table is built
        raise WeightsError(
            f"checkpoint does not match a Llama of this config: {config.num_layers} layers need "
            f"{config.num_layers * len(_LAYER_TABLE)} layer tensors, the weights hold {len(hf_shapes)} tensors in all"
        )
    table = {hf: ours for ours, hf, _ in name_table(config)}
    ignorable = {k for k in hf_shapes if k.endswith(_IGNORABLE_HF_SUFFIXES)}
    if config.tie_embeddings:
        ignorable.add("lm_head.weight")  # transformers ignores it too when embeddings are tied
    unknown = sorted(set(hf_shapes) - set(table) - ignorable)
    missing = sorted(set(table) - set(hf_shapes))
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing tensors {_short_list(missing)}")
        if unknown:
            parts.append(f"unknown tensors {_short_list(unknown)}")
        raise WeightsError("checkpoint does not match a Llama of this config: " + "; ".join(parts))
    shapes = expected_shapes(config)
    for hf, ours in table.items():
        got = tuple(hf_shapes[hf])
        if got != shapes[ours]:
            raise WeightsError(f"tensor {ours} ({hf}) has shape {list(got)} but the config needs {list(shapes[ours])}")


def hf_to_ours(config: ModelConfig, hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an HF state dict to ours; refuse unknown/missing keys and wrong shapes."""
    check_hf_layout(config, {k: tuple(v.shape) for k, v in hf_state.items()})
    table = {hf: ours for ours, hf, _ in name_table(config)}
    return {table[k]: v for k, v in hf_state.items() if k in table}


def ours_to_hf(config: ModelConfig, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    table = {ours: hf for ours, hf, _ in name_table(config)}
    return {table[k]: v for k, v in state.items() if k in table}


def check_shapes(config: ModelConfig, state: Mapping[str, Tensor]) -> None:
    for name, shape in expected_shapes(config).items():
        got = tuple(state[name].shape)
        if got != shape:
            raise WeightsError(f"tensor {name} has shape {list(got)} but the config needs {list(shape)}")


def _short_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)} in all)"


# ------------------------------------------------------------------------------------------- HF dirs
def weight_files(directory: Path) -> list[Path]:
    """The weight files of an HF model directory: sharded or single safetensors, else pytorch_model.bin."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as err:
            raise WeightsError(f"{index} is not a valid safetensors index ({err})") from None
        files = [directory / s for s in shard_names]
        absent = [str(f.name) for f in files if not f.is_file()]
        if absent:
            raise WeightsError(f"{index} names shards that are missing: {absent}")
        return files
    single = sorted(directory.glob("*.safetensors"))
    if single:
        return single
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if bins:
        return bins
    raise WeightsError(f"{directory} has config.json but no *.safetensors or pytorch_model.bin weights")


SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


def read_safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a .safetensors header, every entry validated against the file: the
    header length against the file size (before it is read), dtypes, shapes, and each tensor's byte
    range against the data that follows (it must hold exactly shape x itemsize bytes)."""
    path = Path(path)

    def bad(what: str) -> WeightsError:
        return WeightsError(f"{path} is not a valid safetensors file: {what}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise bad(f"{size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(prefix, "little")
            if n > size - 8 or n > SAFETENSORS_MAX_HEADER:
                raise bad(f"header length {n} exceeds the {size - 8} bytes that follow (or the 100 MB limit)")
            blob = handle.read(n)
    except OSError as err:
        raise WeightsError(f"cannot read weights file {path}: {err.strerror or err}") from None
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise bad(f"header is not JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data_bytes = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise bad("__metadata__ is not a map of strings")
            continue
        if not isinstance(info, dict):
            raise bad(f"entry {name[:80]!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_ITEMSIZE:
            raise bad(f"tensor {name[:80]!r} has unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name[:80]!r} has a malformed shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise bad(f"tensor {name[:80]!r} has data offsets outside the file's {data_bytes} data bytes")
        elements = 1
        for d in shape:
            elements *= d
        if elements * SAFETENSORS_ITEMSIZE[dtype] != offsets[1] - offsets[0]:
            raise bad(
                f"tensor {name[:80]!r} of shape {shape} {dtype} does not fill its {offsets[1] - offsets[0]} bytes"
            )
        shapes[name] = tuple(shape)
    return shapes


def read_hf_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an HF directory, from safetensors headers (no data read)."""
    files = weight_files(directory)
    if files[0].suffix != ".safetensors":
        return {k: tuple(v.shape) for k, v in read_hf_state(directory).items()}
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        shapes.update(read_safetensors_header(path))
    return shapes


def read_hf_state(directory: Path) -> dict[str, Tensor]:
    """Read every tensor of an HF directory (safetensors via mmap; .bin with weights_only=True)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, Tensor] = {}
    for path in weight_files(directory):
        try:
            if path.suffix == ".safetensors":
                read_safetensors_header(path)  # every size checked before the library maps it
                part = load_file(str(path))
            else:
                part = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as err:
            raise WeightsError(f"cannot read weights file {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(part, dict) or not all(isinstance(v, Tensor) for v in part.values()):
            raise WeightsError(f"{path} does not hold a flat dict of tensors")
        state.update(part)
    return state


def load_hf_weights(config: ModelConfig, directory: Path) -> dict[str, Tensor]:
    """Our state dict (fp32) from an HF checkpoint directory."""
    return {k: v.float() for k, v in hf_to_ours(config, read_hf_state(directory)).items()}


# ---------------------------------------------------------------------------------------------- GGUF
def _unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of q/k rows.

    llama.cpp's converter maps HF rows (head, half, i) to (head, i, half) so RoPE pairs are adjacent;
    reading the GGUF rows as (head, i, half) and swapping back restores HF's half-split layout.
    """
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path: Path) -> tuple[ModelConfig, dict[str, Tensor], dict[str, object]]:
    """Config, HF-named fp32 state dict (dequantized) and raw metadata from a llama.cpp GGUF file.

    The file is parsed by ``gguf_file`` (every declared size checked against the file before use); each
    tensor's name and shape are checked against the config before it is dequantized."""
    import gguf

    from .config import UnsupportedModelError
    from .gguf_file import read_gguf_file

    gf = read_gguf_file(path)
    meta: dict[str, object] = {}
    for key, value in gf.metadata.items():
        if key in _GGUF_COUNTED_ARRAYS and isinstance(value, list):
            meta[key] = len(value)  # counts only; the tokenizer is converted separately
        else:
            meta[key] = value
    try:
        config = config_from_gguf_metadata(meta, set(gf.tensors))
    except UnsupportedModelError:
        raise
    except (TypeError, ValueError, ArithmeticError) as err:
        raise WeightsError(f"GGUF {path.name} has llama metadata of the wrong type or value ({err})") from None
    if config.num_layers * len(_LAYER_TABLE) > len(gf.tensors):  # before any per-layer table is built
        raise WeightsError(
            f"GGUF {path.name} declares {config.num_layers} layers but holds only {len(gf.tensors)} tensors"
        )
    gguf_to_hf = {g: h for _, h, g in name_table(config)}
    unknown = sorted(set(gf.tensors) - set(gguf_to_hf) - {"rope_freqs.weight"})
    missing = sorted(set(gguf_to_hf) - set(gf.tensors))
    if unknown or missing:
        raise WeightsError(
            f"GGUF {path.name} does not match a Llama of its own metadata: "
            f"missing {_short_list(missing)}, unknown {_short_list(unknown)}"
        )
    shapes = expected_shapes(config)
    ours = {h: o for o, h, _ in name_table(config)}
    state: dict[str, Tensor] = {}
    for gname, hname in gguf_to_hf.items():
        t = gf.tensors[gname]
        if t.shape != shapes[ours[hname]]:
            raise WeightsError(
                f"GGUF {path.name}: tensor {gname} has shape {list(t.shape)} but its metadata needs "
                f"{list(shapes[ours[hname]])}"
            )
        try:
            w = np.asarray(gguf.quants.dequantize(gf.tensor_array(gname), t.ggml_type), dtype=np.float32)
        except NotImplementedError:
            raise WeightsError(
                f"GGUF {path.name}: tensor {gname} has a ggml type this reader cannot dequantize"
            ) from None
        w = w.reshape(t.shape)
        if gname.endswith("attn_q.weight"):
            w = _unpermute_qk(w, config.num_heads)
        elif gname.endswith("attn_k.weight"):
            w = _unpermute_qk(w, config.num_kv_heads)
        state[hname] = torch.from_numpy(np.array(w, dtype=np.float32, order="C", copy=True))
    return config, state, meta


_GGUF_COUNTED_ARRAYS = (
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
)


# ------------------------------------------------------------------------------------- random weights
def random_weights(config: ModelConfig, seed: int, std: float = 0.02) -> Iterator[tuple[str, Tensor]]:
    """Deterministic random HF-named weights of the config's shape (norms = 1, matrices ~ N(0, std)).

    Yields tensor by tensor so a 1.1B checkpoint never needs two copies in memory.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = expected_shapes(config)
    for ours, hf, _ in name_table(config):
        shape = shapes[ours]
        if len(shape) == 1:
            yield hf, torch.ones(shape)
        else:
            yield hf, torch.empty(shape).normal_(0.0, std, generator=gen)
