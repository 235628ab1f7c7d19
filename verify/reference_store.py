"""The reference's distributions on a text, stored once on disk so every candidate compares against
them without re-running the reference.

One directory per key (checkpoint fingerprint, tokenizer, text sha256, window, stride, tokens,
precision) under ``<cache>/eval-reference/``, written in a temp dir and renamed into place. Rows are
the scored tokens in protocol order. Per row: the reference's log-probabilities over the whole
vocabulary, its top-1 token (int32, from the float32 logits: exact) and its NLL of the text's token
(float64: exact). Files are ``.npy`` (read with ``allow_pickle=False``; log-probs memory-mapped).

Precisions (what the log-probs cost on disk, per scored token):
  ``fixed16`` (default): -log p in 16-bit fixed point, steps of 2^-11 nat (|error| <= 2.4e-4 nat),
      clamped at 32 nats (p < 1.3e-14); 2 bytes x vocab (98 KB for SmolLM2's 49152).
  ``float32``: the float32 log-probs; 4 bytes x vocab. Exact (up to float32 rounding).
KL is computed exactly against the *stored* distribution P' (dequantised, renormalised). How far P'
is from the float32 reference is measured while writing (``resolution`` = KL(P'‖P) per token) and
shown as the reference's own KL row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.atomic import atomic_directory, write_json_atomic
from tinyexport.errors import OperationError, UserError
from tinyexport.hashing import record_files, verify_files

from .metrics import ROW_CHUNK, log_softmax, nll_of

STORE_VERSION = 1
STORE_DIR = "eval-reference"
FIXED16_STEP = 2.0**-11  # nats per unit
FIXED16_MAX = 65535
ABANDONED_AFTER_S = 24 * 3600
STORE_FILES = (
    "logprobs.npy",
    "top1.npy",
    "nll.npy",
    "resolution.npy",
)  # recorded (size, sha256) in meta.json  # a temp store untouched this long was left by a killed run


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: str  # numpy dtype of the stored array
    description: str

    def encode(self, logprobs: np.ndarray) -> np.ndarray:
        if self.name == "fixed16":
            scaled = np.multiply(logprobs, -1.0 / FIXED16_STEP)  # exact: the step is a power of two
            np.rint(scaled, out=scaled)
            np.minimum(scaled, FIXED16_MAX, out=scaled)
            return scaled.astype(np.uint16)
        return logprobs.astype(np.float32)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored rows -> renormalised float64 log-probs."""
        return log_softmax(self._raw(stored))

    def decode_with_probs(self, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``decode(stored)``, its probabilities) from one exp pass, in place on one float64 copy:
        the writer's resolution check needs both (docs/performance.md: it was 71% of the store's
        per-token cost with a second softmax)."""
        logprobs = self._raw(stored)
        logprobs -= logprobs.max(axis=-1, keepdims=True)
        probs = np.exp(logprobs)
        total = probs.sum(axis=-1, keepdims=True)
        probs /= total
        logprobs -= np.log(total)
        return logprobs, probs

    def _raw(self, stored: np.ndarray) -> np.ndarray:
        if self.name == "fixed16":
            return np.multiply(stored, -FIXED16_STEP, dtype=np.float64)  # one pass: cast and scale
        return stored.astype(np.float64)


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fixed16", "uint16", "-log p in 16-bit fixed point (2^-11 nat steps, clamped at 32 nats)"),
        Precision("float32", "float32", "float32 log-probs (exact)"),
    )
}


class ReferenceStoreError(UserError, OSError):
    """The reference store cannot be written (no space) or is unreadable."""


class ReferenceStoreCorrupt(OperationError):
    """A cached reference store fails its integrity check (truncated or modified since it was written)."""


@dataclass(frozen=True)
class ReferenceKey:
    checkpoint_fingerprint: str
    tokenizer_fingerprint: str
    text_sha256: str
    window: int
    stride: int
    tokens: int  # tokens of the text evaluated (after --max-tokens)
    precision: str
    attention: str = "sdpa"  # transformers' attn_implementation of the reference pass

    def digest(self) -> str:
        blob = json.dumps({**asdict(self), "version": STORE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def directory(self, cache: Path) -> Path:
        return Path(cache) / STORE_DIR / self.digest()


@dataclass(frozen=True)
class ReferenceStore:
    """An opened store. The log-probs stay on disk and are read by row range with plain file reads
    (no memory map: a map's touched pages would count in the process's RSS, gigabytes of it)."""

    directory: Path
    meta: dict[str, Any]
    precision: Precision
    rows: int
    vocab: int
    data_offset: int  # where logprobs.npy's (rows, V) C-order array starts
    top1: np.ndarray  # (rows,) int32
    nll: np.ndarray  # (rows,) float64
    resolution: np.ndarray  # (rows,) float64: KL(stored ‖ float32 reference)

    @classmethod
    def open(cls, key: ReferenceKey, cache: Path) -> ReferenceStore | None:
        """The store for ``key`` if a complete one exists, else None."""
        directory = key.directory(cache)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            return None
        fix = f"delete it to rebuild it: rm -r {directory}"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ReferenceStoreCorrupt(f"the reference store {directory} has an unreadable meta.json; {fix}") from None
        if not isinstance(meta, dict) or meta.get("key") != asdict(key) or meta.get("version") != STORE_VERSION:
            return None
        if not isinstance(meta.get("files"), dict) or set(meta["files"]) != set(STORE_FILES):
            raise ReferenceStoreCorrupt(f"the reference store {directory} has no integrity record; {fix}")
        integrity = verify_files(directory, meta["files"])
        if integrity.problem is not None:
            raise ReferenceStoreCorrupt(f"the reference store {directory} is not intact ({integrity.problem}); {fix}")
        if integrity.refreshed:
            with contextlib.suppress(OSError, OperationError):
                write_json_atomic(meta_path, {**meta, "files": integrity.records})

        def load(name: str) -> np.ndarray:
            return np.load(directory / f"{name}.npy", allow_pickle=False)

        precision = PRECISIONS[key.precision]
        with open(directory / "logprobs.npy", "rb") as handle:
            np.lib.format.read_magic(handle)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            offset = handle.tell()
        if fortran or dtype != np.dtype(precision.dtype) or len(shape) != 2:
            raise ReferenceStoreError(
                f"{directory}/logprobs.npy is not a {precision.dtype} (rows, vocab) array; "
                "delete that directory to rebuild it"
            )
        return cls(
            directory,
            meta,
            precision,
            int(shape[0]),
            int(shape[1]),
            offset,
            load("top1"),
            load("nll"),
            load("resolution"),
        )

    def reference_logprobs(self, start: int, stop: int) -> np.ndarray:
        """Renormalised float64 log-probs of rows [start, stop)."""
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows [{start}, {stop}) outside the store's {self.rows}")
        itemsize = np.dtype(self.precision.dtype).itemsize
        with open(self.directory / "logprobs.npy", "rb") as handle:
            handle.seek(self.data_offset + start * self.vocab * itemsize)
            raw = np.fromfile(handle, dtype=self.precision.dtype, count=(stop - start) * self.vocab)
        return self.precision.decode(raw.reshape(stop - start, self.vocab))


class ReferenceWriter:
    """Fills a new store's files in ``tmp`` row by row (use through ``reference_writer``)."""

    def __init__(self, tmp: Path, key: ReferenceKey, rows: int, vocab: int) -> None:
        self.tmp, self.key, self.rows, self.vocab = tmp, key, rows, vocab
        self.precision = PRECISIONS[key.precision]
        self._file = open(tmp / "logprobs.npy", "wb")  # noqa: SIM115 (closed by close/finish)  rows are appended in order, no memory map
        np.lib.format.write_array_header_1_0(
            self._file,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(self.precision.dtype)),
                "fortran_order": False,
                "shape": (rows, vocab),
            },
        )
        self.top1 = np.zeros(rows, dtype=np.int32)
        self.nll = np.zeros(rows, dtype=np.float64)
        self.resolution = np.zeros(rows, dtype=np.float64)
        self.filled = 0
        self.finished = False

    def write(self, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Append the reference's logits for the next rows; return their NLL (float64)."""
        n = len(targets)
        if self.filled + n > self.rows:
            raise ValueError(f"writing {n} rows past the store's {self.rows}")
        for start in range(0, n, ROW_CHUNK):
            stop = min(start + ROW_CHUNK, n)
            rows = slice(self.filled + start, self.filled + stop)
            exact = log_softmax(logits[start:stop])
            stored = self.precision.encode(exact)
            self._file.write(np.ascontiguousarray(stored).tobytes())
            approx, probs = self.precision.decode_with_probs(stored)
            approx -= exact
            self.resolution[rows] = np.maximum(np.einsum("ij,ij->i", probs, approx), 0.0)  # KL(P' || P)
            self.top1[rows] = np.argmax(logits[start:stop], axis=-1)
            self.nll[rows] = nll_of(exact, targets[start:stop])
        self.filled += n
        return self.nll[self.filled - n : self.filled]

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the small arrays and meta.json (the store is published when the context exits)."""
        if self.filled != self.rows:
            raise ValueError(f"store filled {self.filled} of {self.rows} rows")
        self.close()
        for name in ("top1", "nll", "resolution"):
            np.save(self.tmp / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {**meta, "files": record_files(self.tmp, STORE_FILES)}
        (self.tmp / "meta.json").write_text(
            json.dumps(
                {
                    "version": STORE_VERSION,
                    "key": asdict(self.key),
                    "rows": self.rows,
                    "vocab": self.vocab,
                    "precision": self.precision.description,
                    **meta,
                },
                indent=2,
            )
            + "\n"
        )
        self.finished = True


def remove_abandoned(directory: Path, older_than_s: float = ABANDONED_AFTER_S) -> None:
    """Delete temp dirs of stores whose writer was killed (untouched for ``older_than_s``)."""
    now = time.time()
    for tmp in Path(directory).glob(".tmp-*"):
        try:
            newest = max([tmp.stat().st_mtime, *(f.stat().st_mtime for f in tmp.iterdir())])
        except OSError:
            continue
        if now - newest > older_than_s:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def reference_writer(key: ReferenceKey, cache: Path, rows: int, vocab: int) -> Iterator[ReferenceWriter]:
    """A writer whose store appears at ``key.directory(cache)`` only if the block calls ``finish``."""
    target = key.directory(cache)
    need = rows * vocab * np.dtype(PRECISIONS[key.precision].dtype).itemsize
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target.parent)
    free = shutil.disk_usage(target.parent).free
    if need > 0.95 * free:
        raise ReferenceStoreError(
            f"the reference store needs {need / 1e9:.1f} GB in {target.parent} but only {free / 1e9:.1f} GB "
            "are free; pass --max-tokens to evaluate fewer tokens or free space"
        )
    try:
        with atomic_directory(target) as tmp:
            writer = ReferenceWriter(tmp, key, rows, vocab)
            try:
                yield writer
            finally:
                writer.close()
            if not writer.finished:
                raise RuntimeError("reference store left unfinished")
    except FileExistsError:  # another process stored the same key first; its content is identical
        pass
