"""A GGUF file made by another tool (llama.cpp's ``convert_hf_to_gguf.py`` + ``llama_model_quantize``, or any
llama GGUF) -> a tinyexport artefact directory, so verify, eval and bench treat it like our own GGUFs.

The file is not rewritten: it is hard-linked (copied across file systems) or, for a bare file named on
the command line, symlinked, next to a ``manifest.json`` that says who produced it (``producer``), the
recipe its ``general.file_type`` corresponds to, its per-type tensor counts and the model config read
from its metadata. Tokenizer files are added only when the GGUF's token list equals the tokenizer's, so
the one-vocabulary policy of ``resolve`` still holds. numpy only (no torch, no gguf package).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tinyexport.artefact import MANIFEST, Artefact, ArtefactError, copy_tokenizer_files, load_artefact, write_manifest
from tinyexport.atomic import atomic_directory
from tinyexport.errors import UserError
from tinyexport.hashing import sha256_file
from tinyexport.models.config import ModelConfig, config_from_gguf_metadata

from .gguf import GGUF_RECIPES, MODEL_FILE

# general.file_type (llama.cpp's LlamaFileType) -> our recipe name
FILE_TYPE_RECIPES = {0: "fp32", 1: "fp16", 7: "q8_0", 2: "q4_0"}
# GGML type ids -> names, for the per-type tensor counts (the types tinyexport's recipes and llama.cpp's
# quantizer produce for these file types; anything else is counted under its id)
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 8: "Q8_0", 12: "Q4_K", 14: "Q6_K", 30: "BF16"}
DEFAULT_KV_CACHE = 1024  # what `tinyexport convert` gives a GGUF artefact
SHAPE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "rope_theta",
    "max_position_embeddings",
    "tie_embeddings",
)


def read_gguf_summary(path: Path) -> tuple[ModelConfig, str, dict[str, Any]]:
    """(config from the metadata, recipe, the ``gguf`` manifest fields) of a llama GGUF file."""
    from tinyexport.models.gguf_file import read_gguf_file

    gf = read_gguf_file(Path(path))
    meta = gf.metadata
    config = config_from_gguf_metadata(meta, set(gf.tensors))
    file_type = meta.get("general.file_type")
    recipe = FILE_TYPE_RECIPES.get(file_type) if isinstance(file_type, int) else None
    if recipe is None:
        raise UserError(
            f"{path}: GGUF file type {file_type!r} has no tinyexport recipe (accepted: "
            f"{', '.join(f'{v} ({k})' for k, v in FILE_TYPE_RECIPES.items())}); quantize it to one of those"
        )
    types: dict[str, int] = {}
    for t in gf.tensors.values():
        name = GGML_TYPE_NAMES.get(t.ggml_type, f"type{t.ggml_type}")
        types[name] = types.get(name, 0) + 1
    fields = {
        "tensor_types": types,
        "tensor_type_by_name": {
            n: GGML_TYPE_NAMES.get(t.ggml_type, f"type{t.ggml_type}") for n, t in gf.tensors.items()
        },
        "file_type": int(file_type),
        "kv_cache_type": GGUF_RECIPES[recipe].kv_cache,
        "tokenizer_model": meta.get("tokenizer.ggml.model"),
        "tokenizer_pre": meta.get("tokenizer.ggml.pre"),
        "general_name": meta.get("general.name"),
        "tokens": meta.get("tokenizer.ggml.tokens"),
    }
    fields["weight_bytes"] = sum(t.n_bytes for t in gf.tensors.values())
    return config, recipe, fields


def same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    """Equal on every field that shapes the computation (token ids and eps rounding aside)."""
    return all(getattr(a, f) == getattr(b, f) for f in SHAPE_FIELDS) and abs(a.rms_norm_eps - b.rms_norm_eps) <= (
        1e-6 * max(abs(b.rms_norm_eps), 1e-12)
    )


def vocabulary_matches(tokens: Any, tokenizer_dir: Path | None, config: ModelConfig) -> bool:
    """Whether the GGUF's token list is the one ``tokenizer_dir`` holds (as our converter would write it)."""
    from .gguf_vocab import read_vocab

    if tokenizer_dir is None or not isinstance(tokens, list):
        return False
    try:
        vocab = read_vocab(
            tokenizer_dir,
            vocab_size=config.vocab_size,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
        )
    except (UserError, ValueError, OSError, KeyError):
        return False
    return list(vocab.tokens) == tokens


def import_gguf(
    gguf_path: Path,
    target: Path,
    *,
    producer: Mapping[str, Any],
    checkpoint: Any = None,
    source_ref: Mapping[str, Any] | None = None,
    tokenizer_dir: Path | None = None,
    kv_cache_max_len: int = DEFAULT_KV_CACHE,
    link: str = "hardlink",
    replace_existing: bool = False,
) -> dict[str, Any]:
    """Write the artefact directory ``target`` for ``gguf_path``; return its manifest.

    ``checkpoint`` (a resolved Checkpoint, with ``source_ref`` as ``convert`` records it): the weights the
    file was converted from; its shape must equal the file's, and the artefact then records the checkpoint
    (config, fingerprint) exactly as ``tinyexport convert`` does, so verify finds its reference.
    ``link``: "hardlink" (copy when across file systems) or "symlink" (the file stays where it is)."""
    gguf_path = Path(gguf_path)
    config, recipe, fields = read_gguf_summary(gguf_path)
    tokens = fields.pop("tokens")
    source: dict[str, Any] = {"file": str(gguf_path.resolve())}
    if checkpoint is not None:
        if not same_shape(config, checkpoint.config):
            raise UserError(
                f"{gguf_path} holds a different model shape than checkpoint {checkpoint.name}; "
                "import the GGUF converted from that checkpoint"
            )
        tokenizer_dir = tokenizer_dir or checkpoint.tokenizer_dir
        source = {
            **dict(source_ref or {}),
            **source,
            "name": checkpoint.name,
            "directory": str(checkpoint.directory),
            "fingerprint": checkpoint.fingerprint(),
        }
        # token ids llama.cpp's converter read from tokenizer_config.json may differ from config.json's
        config = checkpoint.config
    kv_cache_max_len = min(kv_cache_max_len, config.max_position_embeddings)
    with_tokenizer = vocabulary_matches(tokens, tokenizer_dir, config)
    with atomic_directory(Path(target), replace=replace_existing) as tmp:
        _place(gguf_path, tmp / MODEL_FILE, link)
        if with_tokenizer:
            copy_tokenizer_files(tokenizer_dir, tmp)
        return write_manifest(
            tmp,
            {
                "format": "gguf",
                "recipe": recipe,
                "model_file": MODEL_FILE,
                "model_config": config.to_dict(),
                "kv_cache_max_len": kv_cache_max_len,
                "prefill_seq_lens": [],
                "prefill_logits": "last",
                "producer": dict(producer),
                "source": source,
                "signatures": {"llama.cpp": {"architecture": "llama", "tokenizer": fields["tokenizer_model"]}},
                "weight_bytes": fields.pop("weight_bytes"),
                "gguf": fields,
            },
        )


def wrap_gguf_file(path: Path, cache: Path, tokenizer_dirs: list[Path]) -> Artefact:
    """A bare ``.gguf`` named on the command line as an artefact: a directory under
    ``<cache>/gguf-files/<sha256 prefix>-<tokenizer tag>/<file stem>/`` holding a symlink to it and a manifest
    (producer from the file's ``general.name``), made once and reused while the file is unchanged.
    The first of ``tokenizer_dirs`` whose vocabulary the file carries is copied in."""
    path = Path(path)
    config, _, fields = read_gguf_summary(path)
    tokenizer = next((d for d in tokenizer_dirs if vocabulary_matches(fields["tokens"], d, config)), None)
    tag = sha256_file(Path(tokenizer) / "tokenizer.json")[:8] if tokenizer is not None else "no-tokenizer"
    target = Path(cache) / "gguf-files" / f"{sha256_file(path)[:16]}-{tag}" / path.stem
    if (target / MANIFEST).is_file():
        try:
            return load_artefact(target)
        except ArtefactError:
            pass  # stale (the file moved or changed): rebuild below
    producer = {"tool": "unknown (a GGUF file given to tinyexport)", "general.name": fields.get("general_name")}
    import_gguf(path, target, producer=producer, tokenizer_dir=tokenizer, link="symlink", replace_existing=True)
    return load_artefact(target)


def _place(src: Path, dst: Path, link: str) -> None:
    if link == "symlink":
        os.symlink(src.resolve(), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["FILE_TYPE_RECIPES", "import_gguf", "read_gguf_summary", "same_shape", "wrap_gguf_file"]
