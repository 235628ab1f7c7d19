"""Text <-> token ids with the `tokenizers` library alone (works where transformers is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexport.errors import UserError

MAX_TOKENIZER_BYTES = 256 * 1024 * 1024  # far above any real tokenizer.json (SmolLM2's: 2 MB)


class TokenizerError(UserError, ValueError):
    """A tokenizer.json that is missing, not JSON, or that the tokenizers library refuses."""


class Tokenizer:
    def __init__(self, directory: Path) -> None:
        self._tok = load_tokenizer_file(Path(directory) / "tokenizer.json")
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

    def prompt_text(self, prompt: str, chat: bool | None = None) -> str:
        """``prompt`` as the model should read it: one user message rendered with the chat template when
        ``chat`` is True (refused without a template) or, for None, whenever the tokenizer has one."""
        if chat is False or (chat is None and self.chat_template() is None):
            return prompt
        if self.chat_template() is None:
            raise UserError("--chat: this tokenizer has no chat template; drop --chat")
        return self.render_chat([{"role": "user", "content": prompt}])

    def vocab_fingerprint(self) -> str:
        """Hash of the vocabulary and merges: equal iff two tokenizers map text to the same ids."""
        import hashlib
        import json

        model = json.loads(self._tok.to_str()).get("model", {})
        return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]


def load_tokenizer_file(path: Path):
    """A ``tokenizers.Tokenizer`` from ``path``, or a ``TokenizerError`` naming the file: the size is
    bounded before reading, the text must be a JSON object, and whatever the library raises (Rust
    panics included, which are not ``Exception``s) becomes one line."""
    import json

    from tokenizers import Tokenizer as _HFTokenizer

    path = Path(path)
    fix = "copy the checkpoint's tokenizer.json again (or re-run `tinyexport convert`)"
    try:
        size = path.stat().st_size
        if size > MAX_TOKENIZER_BYTES:
            raise TokenizerError(f"{path} is {size / 1e6:.0f} MB, not a tokenizer.json; {fix}")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"{path} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"cannot read {path} ({str(err).splitlines()[0][:100]}); {fix}") from None
    try:
        if not isinstance(json.loads(text), dict):
            raise TokenizerError(f"{path} is not a JSON object; {fix}")
    except (json.JSONDecodeError, RecursionError) as err:
        raise TokenizerError(f"{path} is not valid JSON ({str(err)[:100]}); {fix}") from None
    try:
        return _HFTokenizer.from_str(text)
    except BaseException as err:  # tokenizers raises Exception, or pyo3's PanicException (a BaseException)
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise TokenizerError(f"{path} is not a tokenizer the tokenizers library can load ({reason}); {fix}") from None
