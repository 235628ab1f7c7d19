"""TFLiteRunner: a tinyexport ``.tflite`` artefact through LiteRT (``ai_edge_litert``), no torch.

The file holds ``prefill_{N}`` signatures and ``decode`` sharing one set of weights; each takes the
per-layer caches as inputs and returns the updated caches under the same names (``tflite_io``). The
runner keeps the caches between calls, splits prompts into chunks over the signatures
(``tflite_chunks``) and refuses to run past the cache with ``CacheOverflowError``.

It uses LiteRT's ``CompiledModel`` with runtime-allocated tensor buffers. One set of cache buffers is
bound as both the inputs and the outputs of every call: each cache input feeds only its layer's
``DYNAMIC_UPDATE_SLICE``, whose kernel skips copying the operand into the output when the two share
memory, so a step writes T slots instead of copying the whole cache (two buffer sets swapped per
call made LiteRT copy every cache, 47 MB per SmolLM2 token at 1024 slots; docs/performance.md).
The caches never pass through Python, which the ``Interpreter``'s signature runners would force.

A file with attention spans (``tflite_io``) has ``decode_s{W}`` / ``prefill_{N}_s{W}`` signatures;
each call runs the smallest span that holds every position it attends to.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.artefact import Artefact, ArtefactError
from tinyexport.formats.tflite_io import DECODE, INPUT_POS, LOGITS, TOKENS, cache_specs, parse_signature
from tinyexport.models.config import ModelConfig
from tinyexport.native_logs import captured_native_stderr

from .base import as_tokens, check_capacity, check_rollback
from .tflite_chunks import Chunk, padded_inputs, plan_chunks


class TFLiteLoadError(ArtefactError):
    """LiteRT could not load or compile the model file."""


@dataclass(frozen=True)
class _Signature:
    """One signature's own buffers (the cache buffers are shared by all signatures)."""

    name: str
    length: int  # tokens per call (1 for decode)
    span: int  # cache slots it attends to (kv_cache_max_len for the unsuffixed signatures)
    logits_rows: int  # rows of logits it returns (length, or 1 for last-position logits)
    tokens: Any
    input_pos: Any
    logits: Any


class TFLiteRunner:
    """Runner protocol over the signatures of one LiteRT compiled model."""

    def __init__(
        self,
        model_path: Path,
        config: ModelConfig,
        *,
        kv_cache_max_len: int,
        threads: int | None = None,
        name: str | None = None,
        inplace_cache: bool = True,
        use_spans: bool = True,
        weight_cache: bool = True,
    ) -> None:
        """``inplace_cache=False``: bind separate input and output cache buffers (the slower layout
        before in-place updates; kept to show both give the same logits). ``use_spans=False``: run
        only the whole-cache signatures (to compare a file with spans against itself).
        ``weight_cache=False``: no XNNPACK weight-cache file (each signature packs its own weights;
        for the memory study, docs/performance.md)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.config = config
        self.max_len = kv_cache_max_len
        self.name = name or Path(model_path).parent.name
        self.threads = threads
        self.cache_specs = cache_specs(config)  # per layer: its own KV heads; int8 caches add scales
        self.cache_names = list(self.cache_specs)
        self.use_spans = use_spans
        # LiteRT logs a dozen lines to fd 2 while it compiles the model and on the first buffer access
        # (which sets up its tensor-buffer environment): keep them out of the command's output.
        with captured_native_stderr() as log:
            self.model = _compile(Path(model_path), threads, weight_cache)
        if self.model is None:
            errors = [line for line in log.text.splitlines() if "ERROR" in line] or ["unknown error"]
            raise TFLiteLoadError(f"LiteRT cannot load {model_path}: {errors[-1].strip()}")
        self._check_io()
        with captured_native_stderr():
            self.signatures = self._bind_signatures()
            self._cache_in = {n: self.model.create_output_buffer_by_name(DECODE, n) for n in self.cache_names}
            self._cache_out = (
                self._cache_in
                if inplace_cache
                else {n: self.model.create_output_buffer_by_name(DECODE, n) for n in self.cache_names}
            )
            self.reset()
        self.prefill_lengths = tuple(sorted({length for length, _ in self.signatures if length > 1}))
        self.spans = tuple(sorted({span for _, span in self.signatures}))
        prefill_rows = {s.logits_rows for s in self.signatures.values() if s.length > 1}
        self.logits_positions = "all" if prefill_rows != {1} else "last"

    @classmethod
    def from_artefact(cls, art: Artefact, threads: int | None = None) -> TFLiteRunner:
        """Open ``art`` (hashes already checked by ``load_artefact``); ``threads``: LiteRT CPU threads."""
        runner = cls(art.model_path, art.config, kv_cache_max_len=art.kv_cache_max_len, threads=threads, name=art.name)
        recorded = art.manifest.get("prefill_logits", runner.logits_positions)
        if recorded != runner.logits_positions:
            raise ArtefactError(
                f"{art.path}: manifest says prefill_logits={recorded!r} but the .tflite returns "
                f"{runner.logits_positions!r}; re-run `tinyexport convert`"
            )
        return runner

    def _check_io(self) -> None:
        """The file must have decode + prefill_N, each with our inputs/outputs and cache shapes."""
        signatures = self.model.get_signature_list()
        parsed = {s: parse_signature(s) for s in signatures}
        if DECODE not in signatures or not any(p and p[0] > 1 and p[1] is None for p in parsed.values()):
            raise ArtefactError(
                f"{self.name}: the .tflite has signatures {sorted(signatures)}; expected prefill_N "
                "and decode (re-run `tinyexport convert`)"
            )
        expected = {n: ([b, h, self.max_len, last], dt) for n, ((b, h, last), dt) in self.cache_specs.items()}
        for sig in signatures:
            inputs = self.model.get_input_tensor_details(sig)
            outputs = self.model.get_output_tensor_details(sig)
            if sorted(inputs) != sorted([TOKENS, INPUT_POS, *self.cache_names]) or sorted(outputs) != sorted(
                [LOGITS, *self.cache_names]
            ):
                raise ArtefactError(
                    f"{self.name}: signature {sig} has inputs {sorted(inputs)}, not those of a "
                    f"{self.config.num_layers}-layer tinyexport model (re-run `tinyexport convert`)"
                )
            bad = {
                n: (list(inputs[n]["shape"]), np.dtype(inputs[n]["dtype"]).name)
                for n, (shape, dtype) in expected.items()
                if list(inputs[n]["shape"]) != shape or np.dtype(inputs[n]["dtype"]).name != dtype
            }
            if bad or outputs[LOGITS]["shape"][-1] != self.config.vocab_size:
                first = next(iter(bad), None)
                seen = f"{first} is {bad[first]}, the manifest says {expected[first]}" if first else "vocab differs"
                raise ArtefactError(
                    f"{self.name}: signature {sig} does not match the manifest ({seen}, vocab "
                    f"{self.config.vocab_size}); re-run `tinyexport convert`"
                )

    def _bind_signatures(self) -> dict[tuple[int, int], _Signature]:
        """(length, span) -> signature, span = kv_cache_max_len for the whole-cache signatures."""
        bound = {}
        for sig in self.model.get_signature_list():
            parsed = parse_signature(sig)
            if parsed is None or (parsed[0] == 1 and not sig.startswith(DECODE)):
                continue  # a prefill_1 would duplicate decode
            length, span = parsed[0], parsed[1] or self.max_len
            if length > span or span > self.max_len or (span < self.max_len and not self.use_spans):
                continue  # unusable: no call of this signature fits its span
            rows = int(self.model.get_output_tensor_details(sig)[LOGITS]["shape"][1])
            bound[(length, span)] = _Signature(
                sig,
                length,
                span,
                rows,
                self.model.create_input_buffer_by_name(sig, TOKENS),
                self.model.create_input_buffer_by_name(sig, INPUT_POS),
                self.model.create_output_buffer_by_name(sig, LOGITS),
            )
        return bound

    def reset(self) -> None:
        self.position = 0
        for name, buffer in self._cache_in.items():
            (_, n_kv, last), dtype = self.cache_specs[name]
            buffer.write(np.zeros((n_kv, self.max_len, last), dtype))

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on by moving the position back; the cache is not touched.

        The slots from ``position`` on keep stale keys/values, which no later call can read: a call at
        ``input_pos = position ... position+T-1`` first writes its own T slots (``dynamic_update_slice``
        at ``input_pos[0]``), then its query at position p sees slots ``<= p`` only (the causal rule of
        ``models/llama.py``), so every slot it reads was written by this call or lies below ``position``.
        """
        check_rollback(self.name, self.position, position)
        self.position = position

    def _signature_for(self, chunk: Chunk) -> _Signature:
        """The smallest span holding the chunk's last real position (padding repeats that position)."""
        needed = chunk.start + chunk.count
        span = min(w for length, w in self.signatures if length == chunk.length and w >= needed)
        return self.signatures[(chunk.length, span)]

    def _run(self, tokens: np.ndarray, chunk: Chunk) -> np.ndarray:
        """Run one chunk; its logits rows for the real tokens: (count, V), or (1, V) if last-only."""
        sig = self._signature_for(chunk)
        ids, pos = padded_inputs(tokens, chunk)
        sig.tokens.write(ids)
        sig.input_pos.write(pos)
        self.model.run_by_name(
            sig.name,
            {TOKENS: sig.tokens, INPUT_POS: sig.input_pos, **self._cache_in},
            {LOGITS: sig.logits, **self._cache_out},
        )
        if self._cache_out is not self._cache_in:
            self._cache_in, self._cache_out = self._cache_out, self._cache_in
        vocab = self.config.vocab_size
        logits = sig.logits.read(sig.logits_rows * vocab, np.float32).reshape(sig.logits_rows, vocab)
        return logits[: chunk.count] if sig.logits_rows == chunk.length else logits

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got {ids.min()}..{ids.max()}")
        rows, offset = [], 0
        for chunk in plan_chunks(self.position, ids.size, (1, *self.prefill_lengths), self.max_len):
            rows.append(self._run(ids[offset : offset + chunk.count], chunk))
            offset += chunk.count
            self.position += chunk.count
        if self.logits_positions == "last":
            return rows[-1][-1:]
        return np.concatenate(rows)

    def decode(self, token: int) -> np.ndarray:
        return self.prefill(np.array([token]))[-1]


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    """One LiteRT environment for every runner of the process. Each environment registers (and on
    destruction unregisters, logging each) its accelerators; sharing one keeps that to once."""
    from ai_edge_litert.environment import Environment

    return Environment.create()


def _compile(model_path: Path, threads: int | None, weight_cache: bool = True) -> Any:
    """LiteRT CompiledModel on the CPU (XNNPACK); None if LiteRT cannot load the file.

    XNNPACK repacks the weights for its kernels once per delegated subgraph, i.e. per signature:
    4 signatures of the 1.1B fp32 model held 4 packed copies (20 GB RSS). With a weight-cache file
    the packed weights are written once and memory-mapped by every signature. The file is only
    needed while the model loads (the mappings outlive its name), so it lives in a temporary
    directory removed right after.
    """
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    with tempfile.TemporaryDirectory(prefix="tinyexport-xnnpack-") as scratch:
        cache_path = str(Path(scratch) / "weights.xnn") if weight_cache else ""
        cpu = CpuOptions(num_threads=threads or 0, xnnpack_weight_cache_path=cache_path)
        options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
        try:
            return CompiledModel.from_file(str(model_path), environment=_environment(), options=options)
        except RuntimeError:
            return None
