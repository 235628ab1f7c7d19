"""ExecuTorchRunner: an ExecuTorch artefact (``model.pte``, XNNPACK) through ExecuTorch's Python runtime.

Needs the ``executorch`` package (its runtime pybindings load libtorch, so torch comes with it; this module
itself imports neither at module level). The program's ``prefill`` / ``decode`` / ``reset`` methods share
one KV cache held inside the program as mutable buffers (``formats/executorch_io.py``): ``prefill`` runs
prompts in chunks of at most the exported maximum length (a one-token remainder goes to ``decode``),
``reset`` zeroes the cache (memory-planned buffers start uninitialised). Logits come back as the program
computes them: every prompt position or the last one, as the artefact was exported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyexport.artefact import Artefact, ArtefactError
from tinyexport.errors import UserError
from tinyexport.formats.executorch_io import DECODE, METHODS, MIN_PREFILL, PREFILL, RESET
from tinyexport.models.config import ModelConfig
from tinyexport.native_logs import captured_native_stderr

from .base import as_tokens, check_capacity, check_rollback

# the pyproject extra holds executorch's runtime dependencies; executorch itself goes in without its declared ones
INSTALL = "pip install 'tinyexport[executorch]' && pip install --no-deps executorch==1.5.1"


class ExecuTorchMissingError(UserError, ImportError):
    """executorch is not installed."""


def import_runtime() -> tuple[Any, Any]:
    """(executorch.runtime.Runtime singleton, torch): the runtime's pybindings import torch themselves."""
    try:
        import torch
        from executorch.runtime import Runtime
    except ImportError as err:
        raise ExecuTorchMissingError(
            f"ExecuTorch artefacts run on the executorch package, which is not installed ({err.name or err}); "
            f"install it with `{INSTALL}` (or `make install`)"
        ) from None
    with captured_native_stderr():  # the pybindings warn that the API is experimental
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Runtime.get(), torch


class ExecuTorchRunner:
    """Batch-1 Runner over a loaded ExecuTorch program's prefill / decode / reset methods."""

    def __init__(
        self,
        program: Any,
        torch: Any,
        config: ModelConfig,
        *,
        max_len: int,
        max_prefill: int,
        logits_positions: str,
        name: str = "executorch",
    ) -> None:
        self.torch = torch
        self.config = config
        self.max_len = max_len
        self.max_prefill = max_prefill
        self.logits_positions = logits_positions
        self.name = name
        with captured_native_stderr():  # XNNPACK/cpuinfo log to fd 2 as the delegates initialise
            self.methods = {m: program.load_method(m) for m in METHODS}
        self.reset()

    @classmethod
    def from_artefact(cls, art: Artefact, *, threads: int | None = None, name: str | None = None) -> ExecuTorchRunner:
        """Open ``art``'s model.pte (hashes already checked); ``threads``: the runtime's thread pool size."""
        if threads is not None and threads <= 0:
            raise UserError(f"threads must be positive, got {threads}")
        runtime, torch = import_runtime()
        if threads is not None:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)
        with captured_native_stderr() as log:
            try:
                program = runtime.load_program(art.model_path)
            except (RuntimeError, ValueError) as err:
                detail = (str(err).strip() or log.text.strip() or "unknown error").splitlines()[-1]
                raise ArtefactError(
                    f"ExecuTorch cannot load {art.model_path} ({detail}); re-run `tinyexport convert --format executorch`"
                ) from None
        missing = [m for m in METHODS if m not in program.method_names]
        if missing:
            raise ArtefactError(
                f"{art.model_path} has methods {sorted(program.method_names)}, not tinyexport's "
                f"{', '.join(METHODS)} (missing {', '.join(missing)}); re-run `tinyexport convert --format executorch`"
            )
        info = art.manifest.get("executorch", {})
        return cls(
            program,
            torch,
            art.config,
            max_len=art.kv_cache_max_len,
            max_prefill=int(info.get("max_prefill_len", MIN_PREFILL)),
            logits_positions=str(art.manifest.get("prefill_logits", "last")),
            name=name or art.name,
        )

    def reset(self) -> None:
        self.methods[RESET].execute([self.torch.zeros(1)])
        self.position = 0

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on: their slots stay written but are masked, and the next call
        writes its own slots before attending to them."""
        check_rollback(self.name, self.position, position)
        self.position = position

    def _run(self, method: str, ids: np.ndarray) -> np.ndarray:
        torch = self.torch
        tokens = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))[None]
        positions = torch.arange(self.position, self.position + ids.size, dtype=torch.long)
        (logits,) = self.methods[method].execute([tokens, positions])
        self.position += ids.size
        return logits[0].numpy().astype(np.float32, copy=False)

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        rows = []
        start = 0
        while start < ids.size:
            size = min(self.max_prefill, ids.size - start)
            if ids.size - start - size == 1 and size > MIN_PREFILL:
                size -= 1  # leave two tokens rather than one for the last chunk: prefill takes >= 2
            chunk = ids[start : start + size]
            rows.append(self._run(PREFILL if chunk.size >= MIN_PREFILL else DECODE, chunk))
            start += size
        if self.logits_positions == "all":
            return np.concatenate(rows)
        return rows[-1][-1:]

    def decode(self, token: int) -> np.ndarray:
        check_capacity(self.name, self.position, 1, self.max_len)
        return self._run(DECODE, np.array([token], dtype=np.int64))[-1]
