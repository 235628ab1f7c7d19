"""GGUFRunner: a GGUF artefact through llama.cpp (``llama-cpp-python``), batch 1, CPU.

Needs only ``llama-cpp-python`` and numpy. One ``llama_cpp.Llama`` context of ``n_ctx =
kv_cache_max_len`` keeps the KV cache (F32 for the fp32 recipe, else llama.cpp's default F16) between calls; ``prefill`` evaluates the tokens at the current
position (in batches of ``n_batch``) and ``decode`` one token. With ``logits="all"`` (``logits_all``
in llama.cpp) prefill returns every position's logits -- what verify and eval compare; with ``"last"``
llama.cpp computes the output layer for the last position only (what a deployed runtime does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyexport.artefact import Artefact, ArtefactError
from tinyexport.errors import UserError
from tinyexport.models.config import ModelConfig

from .base import as_tokens, check_capacity, check_rollback

EXTRA = "runtime-gguf"  # pyproject optional extra that installs llama-cpp-python
LOGITS = ("all", "last")
KV_CACHE_TYPES = ("F32", "F16")


class LlamaCppMissingError(UserError, ImportError):
    """llama-cpp-python is not installed."""


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as err:
        raise LlamaCppMissingError(
            f"GGUF artefacts run on llama-cpp-python, which is not installed ({err.name or err}); install it with "
            f"`pip install 'tinyexport[{EXTRA}]'` (builds llama.cpp from source, about 6 minutes)"
        ) from None
    return llama_cpp


class GGUFRunner:
    """Batch-1 Runner over a ``llama_cpp.Llama`` context."""

    def __init__(
        self, llm: Any, config: ModelConfig, *, max_len: int, logits_positions: str, name: str = "gguf"
    ) -> None:
        self.llm = llm
        self.config = config
        self.max_len = max_len
        self.logits_positions = logits_positions
        self.name = name
        if llm.n_vocab() != config.vocab_size:
            raise ArtefactError(
                f"{name}: llama.cpp reads a vocabulary of {llm.n_vocab()} tokens but the manifest "
                f"says {config.vocab_size}; re-run `tinyexport convert --format gguf`"
            )
        self.reset()

    @classmethod
    def from_artefact(
        cls,
        art: Artefact,
        *,
        threads: int | None = None,
        logits: str | None = None,
        kv_cache_type: str | None = None,
        n_batch: int = 512,
        name: str | None = None,
    ) -> GGUFRunner:
        """Open ``art``'s model.gguf. ``logits``: "all" or "last" (default: the manifest's prefill_logits);
        ``kv_cache_type``: "F32" or "F16" (default: the recipe's, recorded in the manifest)."""
        logits = logits or str(art.manifest.get("prefill_logits", "last"))
        if logits not in LOGITS:
            raise UserError(f"logits must be one of {', '.join(LOGITS)}, got {logits!r}")
        if threads is not None and threads <= 0:
            raise UserError(f"threads must be positive, got {threads}")
        kv_cache_type = kv_cache_type or str(art.manifest.get("gguf", {}).get("kv_cache_type", "F16"))
        if kv_cache_type not in KV_CACHE_TYPES:
            raise UserError(f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}, got {kv_cache_type!r}")
        llama_cpp = import_llama_cpp()
        ggml_type = getattr(llama_cpp, f"GGML_TYPE_{kv_cache_type}")
        n_ctx = art.kv_cache_max_len
        options: dict[str, Any] = {
            "n_ctx": n_ctx,
            "n_batch": min(n_batch, n_ctx),
            "n_ubatch": min(n_batch, n_ctx),
            "logits_all": logits == "all",
            "type_k": ggml_type,
            "type_v": ggml_type,
            "verbose": False,
            "seed": 0,
        }
        if threads is not None:
            options.update(n_threads=threads, n_threads_batch=threads)
        try:
            llm = llama_cpp.Llama(model_path=str(art.model_path), **options)
        except ValueError as err:  # llama-cpp-python raises ValueError when llama.cpp refuses the file
            raise ArtefactError(
                f"llama.cpp cannot load {art.model_path} ({str(err).strip().splitlines()[0]}); "
                "re-run `tinyexport convert --format gguf`"
            ) from None
        return cls(llm, art.config, max_len=n_ctx, logits_positions=logits, name=name or art.name)

    def reset(self) -> None:
        self.llm.reset()
        self.position = 0

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on: llama.cpp drops their cache cells (``kv_cache_seq_rm``, as
        ``Llama.eval`` itself does from ``n_tokens`` on) and the next eval starts at ``position``."""
        check_rollback(self.name, self.position, position)
        self.llm._ctx.kv_cache_seq_rm(-1, position, -1)
        self.llm.n_tokens = position
        self.position = position

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        start = self.position
        self.llm.eval([int(t) for t in ids])
        self.position += ids.size
        if self.logits_positions == "all":  # llama-cpp-python keeps every row in Llama.scores
            return np.array(self.llm.scores[start : self.position], dtype=np.float32)
        # llama.cpp computed the last row only; read it from the context (scores are not kept then)
        last = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.config.vocab_size,))
        return np.array(last, dtype=np.float32)[None]

    def decode(self, token: int) -> np.ndarray:
        return self.prefill(np.array([token], dtype=np.int64))[-1]

    def tokenize(self, text: str, *, add_special: bool = True) -> np.ndarray:
        """llama.cpp's own tokenizer over the GGUF's vocabulary (special tokens parsed, as ours does)."""
        return np.asarray(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True), dtype=np.int64)
