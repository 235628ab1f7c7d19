"""Text <-> token ids with the `tokenizers` library alone (works where transformers is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Tokenizer:
    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer as _HFTokenizer

        path = Path(directory) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        self._tok = _HFTokenizer.from_file(str(path))
        self.directory = Path(directory)

    def encode(self, text: str) -> np.ndarray:
        """Ids exactly as the checkpoint's tokenizer.json produces them (special tokens as it configures)."""
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids: list[int] | np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def vocab_fingerprint(self) -> str:
        """Hash of the vocabulary and merges: equal iff two tokenizers map text to the same ids."""
        import hashlib
        import json

        model = json.loads(self._tok.to_str()).get("model", {})
        return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]
