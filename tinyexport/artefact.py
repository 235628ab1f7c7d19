"""Artefact directories: model file(s) + tokenizer files + ``manifest.json``.

The manifest records format, recipe, ModelConfig, signatures, prefill lengths, cache length, the
source checkpoint's fingerprint, tool versions, conversion cost and the sha256 of every file.
Runners load through ``load_artefact``, which refuses missing or tampered files. No torch here.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from tinyexport.errors import UserError
from tinyexport.hashing import sha256_file
from tinyexport.models.config import ModelConfig

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
_VERSIONED_PACKAGES = (
    "tinyexport",
    "torch",
    "transformers",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "gguf",
    "llama-cpp-python",
    "executorch",
    "torchao",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "optimum-onnx",
    "numpy",
    "tokenizers",
)


class ArtefactError(UserError, ValueError):
    """An artefact directory is missing, malformed or tampered with (message names the file)."""


@dataclass(frozen=True)
class Artefact:
    path: Path
    manifest: Mapping[str, Any]

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def recipe(self) -> str:
        return str(self.manifest["recipe"])

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.manifest["model_config"])

    @property
    def model_path(self) -> Path:
        return self.path / str(self.manifest["model_file"])

    @property
    def kv_cache_max_len(self) -> int:
        return int(self.manifest["kv_cache_max_len"])

    @property
    def tokenizer_dir(self) -> Path | None:
        return self.path if (self.path / "tokenizer.json").is_file() else None

    @property
    def name(self) -> str:
        return self.path.name

    def size_bytes(self) -> int:
        """Bytes on disk of the model files (tokenizer, manifest and a LiteRT-LM bundle, which repackages
        the same model file, excluded)."""
        bundle = (
            self.manifest.get("litertlm", {}).get("file") if isinstance(self.manifest.get("litertlm"), dict) else None
        )
        return sum(
            int(f["bytes"]) for n, f in self.manifest["files"].items() if n not in TOKENIZER_FILES and n != bundle
        )


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in _VERSIONED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_manifest(directory: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` into ``directory`` with the hash and size of every other file in it."""
    directory = Path(directory)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(directory).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "schema": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool_versions": tool_versions(),
        **fields,
        "files": files,
    }
    required = ("format", "recipe", "model_config", "model_file", "kv_cache_max_len")
    absent = [k for k in required if k not in manifest]
    if absent:
        raise ValueError(f"manifest lacks {absent}")
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def copy_tokenizer_files(source: Path | None, target: Path) -> list[str]:
    """Copy the tokenizer files that exist in ``source`` into ``target``; return their names."""
    import shutil

    if source is None:
        return []
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(target) / name)
            copied.append(name)
    return copied


def _safe_relative(name: object) -> bool:
    """A file name a manifest may list: relative, inside the artefact, no parent steps."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    parts = PurePosixPath(name).parts
    return not PurePosixPath(name).is_absolute() and ".." not in parts and "." not in parts


def check_manifest(manifest: Mapping[str, Any], where: Path) -> dict[str, tuple[int, str]]:
    """Validate the fields runners read (types, ranges, file names); return ``files`` as name ->
    (bytes, sha256). Raises ``ArtefactError`` naming the field."""

    def bad(what: str) -> ArtefactError:
        return ArtefactError(f"{where}: {what}; re-run `tinyexport convert`")

    raw = manifest["files"]
    if not isinstance(raw, dict):
        raise bad("'files' is not an object")
    files: dict[str, tuple[int, str]] = {}
    for rel, info in raw.items():
        if not _safe_relative(rel):
            raise bad(f"file name {str(rel)[:80]!r} is not a plain relative path inside the artefact")
        size = info.get("bytes") if isinstance(info, dict) else None
        digest = info.get("sha256") if isinstance(info, dict) else None
        if type(size) is not int or size < 0 or not isinstance(digest, str) or len(digest) != 64:
            raise bad(f"entry for {rel[:80]!r} needs an integer 'bytes' and a 64-digit 'sha256'")
        files[rel] = (size, digest)
    for key in ("format", "recipe", "model_file"):
        if not isinstance(manifest.get(key), str):
            raise bad(f"{key!r} is missing or not a string")
    if manifest["model_file"] not in files:
        raise bad(f"model_file {manifest['model_file'][:80]!r} is not among the listed files")
    if type(manifest.get("kv_cache_max_len")) is not int or manifest["kv_cache_max_len"] <= 0:
        raise bad("'kv_cache_max_len' is not a positive integer")
    if not isinstance(manifest.get("model_config"), dict):
        raise bad("'model_config' is not an object")
    try:
        ModelConfig.from_dict(manifest["model_config"])
    except (TypeError, ValueError) as err:
        raise bad(f"'model_config' is not a valid model config ({str(err)[:120]})") from None
    return files


def load_artefact(path: Path | str, *, check_hashes: bool = True) -> Artefact:
    """Open an artefact dir; every file listed in the manifest must exist with its recorded sha256."""
    path = Path(path)
    if not path.is_dir():
        raise ArtefactError(
            f"artefact {path} does not exist or is not a directory; pass a directory made by `tinyexport convert`"
        )
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtefactError(f"{path} has no {MANIFEST}; it was not made by `tinyexport convert` (or is incomplete)")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ArtefactError(f"{manifest_path} is not valid JSON ({reason}); re-run `tinyexport convert`") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_VERSION or "files" not in manifest:
        raise ArtefactError(
            f"{manifest_path} is not a tinyexport manifest (schema {SCHEMA_VERSION}); re-run `tinyexport convert`"
        )
    files = check_manifest(manifest, manifest_path)
    for rel, (size, digest) in files.items():
        file = path / rel
        if not file.is_file():
            raise ArtefactError(f"artefact {path} is missing {rel}; re-run `tinyexport convert` to rebuild it")
        if file.stat().st_size != size or (check_hashes and sha256_file(file) != digest):
            raise ArtefactError(
                f"{file} does not match the sha256 in {MANIFEST} (modified or corrupt); re-run `tinyexport convert`"
            )
    return Artefact(path, manifest)
