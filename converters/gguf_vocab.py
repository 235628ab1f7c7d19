"""A checkpoint's tokenizer as llama.cpp's GGUF ``tokenizer.ggml.*`` metadata.

Supported: byte-level BPE (``tokenizer.ggml.model = gpt2``: tokens, merges, token types, a pre-tokenizer
llama.cpp knows), and no tokenizer at all (``no_vocab``: ids only, for random-weight shapes). Anything
else is refused with a ``VocabularyError`` naming what differs -- a GGUF whose ids differ from our
tokenizer's would verify against the wrong text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError

# llama.cpp token types (llama_token_type / gguf.TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class VocabularyError(UserError, ValueError):
    """The checkpoint's tokenizer cannot be written as a llama.cpp vocabulary (message says why)."""


@dataclass(frozen=True)
class GGUFVocab:
    model: str  # tokenizer.ggml.model: "gpt2" or "no_vocab"
    pre: str | None = None  # tokenizer.ggml.pre (llama.cpp's pre-tokenizer regex set)
    tokens: tuple[str, ...] = ()
    token_types: tuple[int, ...] = ()
    merges: tuple[str, ...] = ()
    special_ids: Mapping[str, int] | None = None  # "bos"/"eos"/"unk"/"pad" -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None

    def write(self, writer: Any) -> None:
        """Add the ``tokenizer.*`` keys to a ``gguf.GGUFWriter``."""
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        if self.tokens:
            writer.add_token_list(list(self.tokens))
            writer.add_token_types(list(self.token_types))
        if self.merges:
            writer.add_token_merges(list(self.merges))
        for kind, token_id in (self.special_ids or {}).items():
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
        if self.tokens:
            writer.add_add_bos_token(self.add_bos)
            writer.add_add_eos_token(self.add_eos)
        if self.chat_template is not None:
            writer.add_chat_template(self.chat_template)


def _pre_tokenizer_name(pre: Mapping[str, Any] | None) -> str | None:
    """llama.cpp's ``tokenizer.ggml.pre`` for a tokenizers pre-tokenizer spec, or None if unknown.

    ``gpt2``: the GPT-2 regex then bytes->unicode (HF ``ByteLevel(use_regex=True)``); ``smollm``: every
    digit split off first (HF ``Digits(individual_digits=True)``), then the GPT-2 regex.
    """

    def is_byte_level(p: Mapping[str, Any]) -> bool:
        return p.get("type") == "ByteLevel" and bool(p.get("use_regex", True)) and not p.get("add_prefix_space", False)

    if not pre:
        return None
    if is_byte_level(pre):
        return "gpt2"
    if pre.get("type") == "Sequence":
        parts = list(pre.get("pretokenizers") or [])
        if (
            len(parts) == 2
            and parts[0].get("type") == "Digits"
            and parts[0].get("individual_digits")
            and is_byte_level(parts[1])
        ):
            return "smollm"
    return None


def _describe(pre: Any) -> str:
    return json.dumps(pre, separators=(",", ":"))[:160]


def read_vocab(
    tokenizer_dir: Path | None, *, vocab_size: int, bos_token_id: int | None, eos_token_id: int | None
) -> GGUFVocab:
    """The GGUF vocabulary of the tokenizer in ``tokenizer_dir`` (None: no tokenizer -> ``no_vocab``)."""
    if tokenizer_dir is None:
        ids = {k: v for k, v in (("bos", bos_token_id), ("eos", eos_token_id)) if v is not None}
        return GGUFVocab("no_vocab", special_ids=ids)
    path = Path(tokenizer_dir) / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise VocabularyError(
            f"{path}: only byte-level BPE vocabularies can be written to GGUF (model type {model.get('type')!r}, "
            f"byte_fallback={bool(model.get('byte_fallback'))}; SentencePiece-style vocabularies are not supported yet); "
            "use --format onnx or tflite for this checkpoint"
        )
    if spec.get("normalizer"):
        raise VocabularyError(
            f"{path}: a byte-level BPE with a normalizer ({_describe(spec['normalizer'])}) "
            "has no llama.cpp equivalent; use --format onnx or tflite for this checkpoint"
        )
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    if pre is None:
        raise VocabularyError(
            f"{path}: pre-tokenizer {_describe(spec.get('pre_tokenizer'))} has no llama.cpp "
            "equivalent known to tinyexport (known: GPT-2 ByteLevel, SmolLM Digits+ByteLevel); "
            "use --format onnx or tflite for this checkpoint"
        )
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    added = {int(a["id"]): a for a in spec.get("added_tokens") or []}
    for token_id, entry in added.items():
        by_id.setdefault(token_id, entry["content"])
    n = max(by_id) + 1 if by_id else 0
    if n > vocab_size:
        raise VocabularyError(
            f"{path}: the tokenizer has {n} tokens but the model's vocab_size is {vocab_size}; "
            "the checkpoint's tokenizer does not belong to its weights"
        )
    tokens, types = [], []
    for token_id in range(vocab_size):  # ids the tokenizer never produces become unused placeholders
        if token_id in by_id:
            tokens.append(by_id[token_id])
            entry = added.get(token_id)
            types.append(NORMAL if entry is None else CONTROL if entry.get("special") else USER_DEFINED)
        else:
            tokens.append(f"[PAD{token_id}]")
            types.append(UNUSED)
    merges = []
    for pair in model.get("merges") or []:
        left, right = pair.split(" ", 1) if isinstance(pair, str) else pair
        if " " in left or " " in right:
            raise VocabularyError(
                f"{path}: merge {pair!r} contains a space, which a byte-level vocabulary "
                "never has; the tokenizer is not byte-level BPE"
            )
        merges.append(f"{left} {right}")
    config = _tokenizer_config(Path(tokenizer_dir))
    special: dict[str, int] = {}
    for kind, token_id in (("bos", bos_token_id), ("eos", eos_token_id)):
        if token_id is not None:
            special[kind] = int(token_id)
    unk = model.get("unk_token")
    if isinstance(unk, str) and unk in model["vocab"]:
        special["unk"] = int(model["vocab"][unk])
    pad = _token_content(config.get("pad_token"))
    if pad is not None:
        pad_id = next((i for i, t in by_id.items() if t == pad), None)
        if pad_id is not None:
            special["pad"] = pad_id
    return GGUFVocab(
        "gpt2",
        pre,
        tuple(tokens),
        tuple(types),
        tuple(merges),
        special,
        add_bos=bool(config.get("add_bos_token", False)),
        add_eos=bool(config.get("add_eos_token", False)),
        chat_template=_chat_template(Path(tokenizer_dir), config),
    )


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _token_content(entry: Any) -> str | None:
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else None


def _chat_template(directory: Path, config: Mapping[str, Any]) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    return template if isinstance(template, str) else None
