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

    def chat_template(self) -> str | None:
        """The checkpoint's chat template (chat_template.jinja, else tokenizer_config.json), if any."""
        import json

        jinja = self.directory / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        cfg = self.directory / "tokenizer_config.json"
        if cfg.is_file():
            template = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
            return template if isinstance(template, str) else None
        return None

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render messages with the chat template (sandboxed jinja2, as transformers does)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = self.chat_template()
        if template is None:
            raise ValueError(f"{self.directory} has no chat template")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)

    def vocab_fingerprint(self) -> str:
        """Hash of the vocabulary and merges: equal iff two tokenizers map text to the same ids."""
        import hashlib
        import json

        model = json.loads(self._tok.to_str()).get("model", {})
        return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]
