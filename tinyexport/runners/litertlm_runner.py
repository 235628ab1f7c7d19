"""Text generation through Google's LiteRT-LM engine (``litert-lm-api``) from an artefact's ``model.litertlm``.

LiteRT-LM 0.18.1's Python API is text-level: a session takes text (``run_prefill``), tokenizes it
with the bundle's tokenizer, and streams decoded text (``run_decode_async``); it exposes no logits and
takes no token ids. So this is not a ``Runner`` (prefill/decode -> logits): it is the generation and
benchmark path for ``generate --engine litertlm``, ``bench --litertlm`` and the interop tests, which
compare its greedy *text* with the text of our runners' greedy tokens.

The engine writes an XNNPack weight cache beside the model unless told otherwise; it is pointed at a
scratch directory so an artefact directory is never written to. Activations are fp32 (the engine's
CPU default for a text decoder is fp16) unless ``activation`` says otherwise.
"""

from __future__ import annotations

import ctypes
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.artefact import Artefact
from tinyexport.errors import UserError


class LiteRtLmError(UserError, RuntimeError):
    """LiteRT-LM refused the bundle or failed to run it (message carries the engine's own error)."""


@dataclass(frozen=True)
class LiteRtLmResult:
    text: str
    chunks: list[str]
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float  # first streamed chunk to the last

    @property
    def decode_ms_per_chunk(self) -> float:
        steps = max(len(self.chunks) - 1, 0)
        return self.decode_seconds * 1000 / steps if steps else 0.0


def _litert_lm() -> Any:
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    return litert_lm


def last_engine_error() -> str:
    """The engine's last error message (the C API keeps it; the Python wrapper drops it)."""
    try:
        lib = _litert_lm()._ffi._get_lib()  # pylint: disable=protected-access
        fn = lib.litert_lm_get_last_error_message
        fn.restype = ctypes.c_char_p
        message = fn()
    except (AttributeError, OSError):
        return ""
    return (message or b"").decode("utf-8", "replace").strip().splitlines()[0] if message else ""


def bundle_of(art: Artefact) -> Path:
    from tinyexport.formats.litertlm_io import BUNDLE_FILE, bundle_path

    path = bundle_path(art.path, art.manifest)
    if path is None:
        raise UserError(f"{art.path} has no {BUNDLE_FILE}; make one with `tinyexport bundle {art.path}`")
    return path


class LiteRtLmEngine:
    """One LiteRT-LM engine on a ``.litertlm`` file (CPU backend)."""

    name = "litert-lm"

    def __init__(
        self,
        bundle: Path | str,
        threads: int | None = None,
        activation: str = "fp32",
        max_num_tokens: int | None = None,
    ) -> None:
        lm = _litert_lm()
        self.bundle = Path(bundle)
        self.threads = threads
        self._scratch = tempfile.mkdtemp(prefix="tinyexport-litertlm-")
        start = time.perf_counter()
        try:
            self._engine = lm.Engine(
                str(self.bundle),
                backend=lm.Backend.CPU(thread_count=threads),
                cache_dir=self._scratch,
                max_num_tokens=max_num_tokens,
                activation_data_type=lm.ActivationDataType.from_str(activation),
            )
        except RuntimeError as err:
            shutil.rmtree(self._scratch, ignore_errors=True)
            detail = last_engine_error()
            raise LiteRtLmError(f"LiteRT-LM refused {self.bundle}: {detail or err}") from None
        self.load_seconds = time.perf_counter() - start

    @classmethod
    def from_artefact(cls, art: Artefact, threads: int | None = None, **options: Any) -> LiteRtLmEngine:
        return cls(bundle_of(art), threads=threads, **options)

    def close(self) -> None:
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            engine.close()
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)

    def __enter__(self) -> LiteRtLmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stop_tokens(self) -> list[list[int]]:
        return self._engine.eos_token_ids

    @property
    def start_token(self) -> int | None:
        return self._engine.bos_token_id

    def tokenize(self, text: str) -> list[int]:
        return list(self._engine.tokenize(text))

    def detokenize(self, ids: list[int]) -> str:
        return self._engine.detokenize([int(i) for i in ids])

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """Prefill ``prompt`` (raw text, no template applied) and yield decoded text chunks as they come."""
        session = self._engine.create_session(apply_prompt_template=False, max_output_tokens=max_new_tokens)
        try:
            try:
                session.run_prefill([prompt])
            except RuntimeError as err:
                raise LiteRtLmError(f"LiteRT-LM prefill failed: {last_engine_error() or err}") from None
            try:
                for response in session.run_decode_async():
                    yield from response.texts
            except RuntimeError as err:
                raise LiteRtLmError(f"LiteRT-LM decode failed: {last_engine_error() or err}") from None
        finally:
            session.close()

    def generate(self, prompt: str, max_new_tokens: int) -> LiteRtLmResult:
        """Greedy (the bundle's default sampler) text for ``prompt``, timed."""
        chunks: list[str] = []
        start = time.perf_counter()
        first = last = start
        for chunk in self.stream(prompt, max_new_tokens):
            last = time.perf_counter()
            if not chunks:
                first = last
            chunks.append(chunk)
        return LiteRtLmResult("".join(chunks), chunks, len(self.tokenize(prompt)), first - start, last - first)


def engine_benchmark(
    bundle: Path | str, prefill_tokens: int, decode_tokens: int, threads: int | None = None, activation: str = "fp32"
) -> dict[str, float]:
    """LiteRT-LM's own benchmark (``litert_lm.Benchmark``): a prompt padded to ``prefill_tokens``, then
    ``decode_tokens`` decoded; numbers as the engine reports them."""
    lm = _litert_lm()
    scratch = tempfile.mkdtemp(prefix="tinyexport-litertlm-bench-")
    try:
        bench = lm.Benchmark(
            model_path=str(bundle),
            backend=lm.Backend.CPU(thread_count=threads),
            prefill_tokens=prefill_tokens,
            decode_tokens=decode_tokens,
            cache_dir=scratch,
            activation_data_type=lm.ActivationDataType.from_str(activation),
        )
        try:
            info = bench.run()
        except RuntimeError as err:
            raise LiteRtLmError(f"LiteRT-LM benchmark failed: {last_engine_error() or err}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    decode_tps = float(info.last_decode_tokens_per_second)
    return {
        "init_s": float(info.init_time_in_second),
        "ttft_s": float(info.time_to_first_token_in_second),
        "prefill_tokens": int(info.last_prefill_token_count),
        "prefill_tok_s": float(info.last_prefill_tokens_per_second),
        "decode_tokens": int(info.last_decode_token_count),
        "decode_tok_s": decode_tps,
        "decode_ms_per_token": 1000.0 / decode_tps if decode_tps > 0 else float("nan"),
    }
