"""llama.cpp's OWN GGUF of a checkpoint, as a reference to compare our GGUF and our other formats against.

The same weights go through llama.cpp's tools instead of ours: ``convert_hf_to_gguf.py`` (shipped, with
its ``conversion`` package and its own ``gguf-py``, in the llama-cpp-python sdist under
``vendor/llama.cpp/``) writes an F32 (or F16) GGUF from an HF directory, and llama-cpp-python's
``llama_model_quantize`` (llama.cpp's C quantizer, the ``llama-quantize`` tool's code) makes Q8_0 / Q4_0
from the F32 file. Each result becomes an artefact (``gguf_import``) whose manifest says
``producer: llama.cpp convert_hf_to_gguf`` and records the checkpoint, so ``tinyexport bench/verify/eval``
put it beside ours.

Sources: ``$TINYEXPORT_LLAMA_CPP_SRC`` (a ``vendor/llama.cpp`` directory), else the sdist under
``<venv>/llama.cpp/`` (``make install`` downloads it; ``fetch=True`` runs ``pip download`` once).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import OperationError, UserError

from .gguf_import import import_gguf

PACKAGE = "llama-cpp-python"
CONVERTER = "convert_hf_to_gguf.py"
SOURCE_ENV = "TINYEXPORT_LLAMA_CPP_SRC"
# what the converter needs from the sdist's vendor/llama.cpp/
_MEMBERS = (CONVERTER, "conversion/", "gguf-py/")
# llama.cpp's LlamaFileType for llama_model_quantize
QUANT_FTYPES = {"q8_0": 7, "q4_0": 2}
OUTTYPES = {"fp32": "f32", "fp16": "f16"}
# files of an HF directory the converter reads (a tokenizer.model only when SentencePiece can load it)
_HF_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class ReferenceFile:
    recipe: str
    path: Path
    seconds: float


def installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise UserError(
            "llama.cpp's reference conversion quantizes with llama-cpp-python, which is not installed; "
            "install it with `pip install 'tinyexport[runtime-gguf]'`"
        ) from None


def sdist_dir() -> Path:
    return Path(sys.prefix) / "llama.cpp"


def converter_source(*, fetch: bool = False, version: str | None = None) -> Path:
    """The ``vendor/llama.cpp`` directory holding ``convert_hf_to_gguf.py`` (extracted once from the sdist)."""
    if os.environ.get(SOURCE_ENV):
        src = Path(os.environ[SOURCE_ENV])
        if not (src / CONVERTER).is_file():
            raise UserError(f"${SOURCE_ENV}={src} has no {CONVERTER}; point it at llama.cpp's source directory")
        return src
    version = version or installed_version()
    root = sdist_dir()
    src = root / f"{PACKAGE}-{version}" / "llama.cpp"
    if (src / CONVERTER).is_file():
        return src
    tarball = root / f"llama_cpp_python-{version}.tar.gz"
    if not tarball.is_file():
        if not fetch:
            raise UserError(
                f"llama.cpp's converter is not here ({tarball} missing); run `pip download --no-deps --no-binary "
                f":all: {PACKAGE}=={version} -d {root}` (make install does) or set ${SOURCE_ENV}"
            )
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, f"{PACKAGE}=={version}", "-d", str(root)], check=True)
    _extract(tarball, src)
    return src


def _extract(tarball: Path, target: Path) -> None:
    """The converter's files from ``vendor/llama.cpp/`` of the sdist, nothing else (tar's data filter)."""
    from tinyexport.atomic import atomic_directory

    with tarfile.open(tarball) as tar, atomic_directory(target, replace=True) as tmp:
        prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
        members = []
        for m in tar.getmembers():
            rel = m.name[len(prefix) :] if m.name.startswith(prefix) else None
            if rel and any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in _MEMBERS):
                m.name = rel
                members.append(m)
        tar.extractall(tmp, members=members, filter="data")
        if not (tmp / CONVERTER).is_file():
            raise OperationError(f"{tarball} holds no vendor/llama.cpp/{CONVERTER}")


def stage_hf_dir(checkpoint: Any, directory: Path) -> None:
    """Symlink the checkpoint's HF files into ``directory`` for the converter; a checkpoint without a
    tokenizer gets a small SentencePiece placeholder (the converter needs one; llama.cpp pads the rest of
    the vocabulary with [PAD] tokens, and no token text changes logits or speed)."""
    from tinyexport.models.weights import weight_files

    src = Path(checkpoint.directory)
    for path in [*(src / n for n in _HF_FILES), *weight_files(src), src / "model.safetensors.index.json"]:
        if path.is_file():
            (directory / path.name).symlink_to(path.resolve())
    if (src / "tokenizer.model").is_file() and _loads_as_sentencepiece(src / "tokenizer.model"):
        (directory / "tokenizer.model").symlink_to((src / "tokenizer.model").resolve())
    if checkpoint.tokenizer_dir is None and not (directory / "tokenizer.model").exists():
        (directory / "tokenizer.model").write_bytes(placeholder_sentencepiece(min(checkpoint.config.vocab_size, 200)))


def _loads_as_sentencepiece(path: Path) -> bool:
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError):
        return False
    return True


def placeholder_sentencepiece(vocab_size: int) -> bytes:
    """A SentencePiece BPE model of ``vocab_size`` pieces trained on a fixed text (deterministic)."""
    import sentencepiece

    words = [f"w{i} t{i % 7} x{i * 37 % 101}" for i in range(2000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(words),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def run_converter(src: Path, hf_dir: Path, outtype: str, out_file: Path) -> None:
    """llama.cpp's ``convert_hf_to_gguf.py`` in a subprocess (its own gguf-py first on its path)."""
    hf_dir, out_file = Path(hf_dir).resolve(), Path(out_file).resolve()
    cmd = [sys.executable, str(src / CONVERTER), str(hf_dir), "--outtype", outtype, "--outfile", str(out_file)]
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    if proc.returncode != 0 or not out_file.is_file():
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise OperationError(f"llama.cpp's {CONVERTER} failed: {lines[-1] if lines else proc.returncode}")


def quantize(src: Path, dst: Path, recipe: str, threads: int = 2) -> None:
    """llama.cpp's quantizer (``llama_model_quantize``, default parameters as ``llama-quantize`` uses)."""
    import ctypes

    try:
        import llama_cpp
    except ImportError:
        installed_version()  # raises the one-line message
        raise
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = QUANT_FTYPES[recipe]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise OperationError(f"llama_model_quantize({src.name} -> {recipe}) returned {rc}")


def reference_artefacts(
    checkpoint: Any,
    source_ref: Mapping[str, Any],
    out_dir: Path,
    recipes: Sequence[str] = ("q8_0", "q4_0"),
    *,
    prefix: str = "llamacpp_",
    fetch: bool = False,
    threads: int = 2,
    replace: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Path]:
    """Convert ``checkpoint`` with llama.cpp's tools into ``out_dir/<prefix><recipe>/`` artefacts.

    fp32/fp16 come straight from the converter; q8_0/q4_0 are quantized from its F32 file."""
    import time

    bad = [r for r in recipes if r not in OUTTYPES and r not in QUANT_FTYPES]
    if bad:
        raise UserError(f"llama.cpp reference recipes {bad} unknown; choose from {[*OUTTYPES, *QUANT_FTYPES]}")
    src = converter_source(fetch=fetch)
    version = installed_version()
    made = []
    with tempfile.TemporaryDirectory(prefix="tinyexport-llamacpp-", dir=out_dir if out_dir.is_dir() else None) as tmp:
        work = Path(tmp)
        hf = work / "hf"
        hf.mkdir()
        stage_hf_dir(checkpoint, hf)
        converted: dict[str, tuple[Path, float]] = {}

        def converter_file(recipe: str) -> tuple[Path, float]:
            if recipe not in converted:
                progress(f"llama.cpp {CONVERTER} --outtype {OUTTYPES[recipe]}")
                start = time.perf_counter()
                path = work / f"convert-{recipe}.gguf"
                run_converter(src, hf, OUTTYPES[recipe], path)
                converted[recipe] = path, time.perf_counter() - start
            return converted[recipe]

        for recipe in recipes:
            target = out_dir / f"{prefix}{recipe}"
            if recipe in OUTTYPES:
                path, seconds = converter_file(recipe)
                steps = [f"{CONVERTER} --outtype {OUTTYPES[recipe]}"]
            else:
                f32, seconds = converter_file("fp32")
                progress(f"llama_model_quantize -> {recipe}")
                start = time.perf_counter()
                path = work / f"quantize-{recipe}.gguf"
                quantize(f32, path, recipe, threads)
                seconds += time.perf_counter() - start
                steps = [f"{CONVERTER} --outtype f32", f"llama_model_quantize ftype {QUANT_FTYPES[recipe]} ({recipe})"]
            producer = {
                "tool": "llama.cpp convert_hf_to_gguf",
                "llama_cpp_python": version,
                "steps": steps,
                "converter_gguf_py": _vendored_gguf_version(src),
                "seconds": round(seconds, 2),
            }
            import_gguf(
                path,
                target,
                producer=producer,
                checkpoint=checkpoint,
                source_ref=source_ref,
                link="hardlink",
                replace_existing=replace,
            )
            made.append(target)
    return made


def _vendored_gguf_version(src: Path) -> str | None:
    path = src / "gguf-py" / "pyproject.toml"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("version"):
            return json.loads(line.split("=", 1)[1].strip())
    return None


__all__ = ["QUANT_FTYPES", "converter_source", "quantize", "reference_artefacts", "run_converter"]
