"""A checkpoint's tokenizer as llama.cpp's GGUF ``tokenizer.ggml.*`` metadata.

Supported: byte-level BPE (``tokenizer.ggml.model = gpt2``: tokens, merges, token types, a pre-tokenizer
llama.cpp knows), SentencePiece-style BPE with byte fallback (``llama``: tokens, scores from the merge
ranks, byte/control/unknown types, the "▁" space prefix), and no tokenizer at all (``no_vocab``: ids only, for random-weight shapes). Anything
else is refused with a ``VocabularyError`` naming what differs -- a GGUF whose ids differ from our
tokenizer's would verify against the wrong text.
"""

from __future__ import annotations

import json
import re
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
    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece-style) or "no_vocab"
    pre: str | None = None  # tokenizer.ggml.pre (llama.cpp's pre-tokenizer regex set)
    tokens: tuple[str, ...] = ()
    token_types: tuple[int, ...] = ()
    merges: tuple[str, ...] = ()
    special_ids: Mapping[str, int] | None = None  # "bos"/"eos"/"unk"/"pad" -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    scores: tuple[float, ...] = ()  # SentencePiece-style only
    add_space_prefix: bool | None = None  # SentencePiece-style only

    def write(self, writer: Any) -> None:
        """Add the ``tokenizer.*`` keys to a ``gguf.GGUFWriter``."""
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        if self.tokens:
            writer.add_token_list(list(self.tokens))
            writer.add_token_types(list(self.token_types))
        if self.scores:
            writer.add_token_scores(list(self.scores))
        if self.merges:
            writer.add_token_merges(list(self.merges))
        for kind, token_id in (self.special_ids or {}).items():
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
        if self.tokens:
            writer.add_add_bos_token(self.add_bos)
            writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template is not None:
            writer.add_chat_template(self.chat_template)


def _pre_tokenizer_name(pre: Mapping[str, Any] | None) -> str | None:
    """llama.cpp's ``tokenizer.ggml.pre`` for a tokenizers pre-tokenizer spec, or None if unknown.

    ``gpt-2``: the GPT-2 regex then bytes->unicode (HF ``ByteLevel(use_regex=True)``); ``smollm``: every
    digit split off first (HF ``Digits(individual_digits=True)``), then the GPT-2 regex.
    """

    def is_byte_level(p: Mapping[str, Any]) -> bool:
        return p.get("type") == "ByteLevel" and bool(p.get("use_regex", True)) and not p.get("add_prefix_space", False)

    if not pre:
        return None
    if is_byte_level(pre):
        return "gpt-2"
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
    special: dict[str, int] = {k: int(v) for k, v in (("bos", bos_token_id), ("eos", eos_token_id)) if v is not None}
    if tokenizer_dir is None:
        return GGUFVocab("no_vocab", special_ids=special)
    path = Path(tokenizer_dir) / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise VocabularyError(
            f"{path}: tokenizer model {model.get('type')!r} cannot be written to GGUF (only BPE: byte-level, or "
            "SentencePiece-style with byte fallback); use --format onnx or tflite for this checkpoint"
        )
    spm = bool(model.get("byte_fallback"))
    pre = None if spm else _byte_level_pre(path, spec)
    add_space_prefix = _spm_space_prefix(path, spec) if spm else False
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
    unk = model.get("unk_token")
    unk_id = model["vocab"].get(unk) if isinstance(unk, str) else None
    tokens, types = [], []
    for token_id in range(vocab_size):  # ids the tokenizer never produces become unused placeholders
        text = by_id.get(token_id)
        entry = added.get(token_id)
        if text is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(UNUSED)
            continue
        tokens.append(text)
        if spm and token_id == unk_id:
            types.append(UNKNOWN)
        elif entry is not None:
            types.append(CONTROL if entry.get("special") else USER_DEFINED)
        elif spm and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(BYTE)
        else:
            types.append(NORMAL)
    merges = _merges(path, model)
    if unk_id is not None:
        special["unk"] = int(unk_id)
    config = _tokenizer_config(Path(tokenizer_dir))
    pad = _token_content(config.get("pad_token"))
    pad_id = next((i for i, t in by_id.items() if t == pad), None) if pad is not None else None
    if pad_id is not None:
        special["pad"] = pad_id
    return GGUFVocab(
        "llama" if spm else "gpt2",
        pre,
        tuple(tokens),
        tuple(types),
        () if spm else tuple(f"{a} {b}" for a, b in merges),
        special,
        add_bos=_adds_special(spec, config, "bos", first=True),
        add_eos=_adds_special(spec, config, "eos", first=False),
        chat_template=_chat_template(Path(tokenizer_dir), config),
        scores=tuple(_spm_scores(tokens, merges)) if spm else (),
        add_space_prefix=add_space_prefix if spm else None,
    )


def _byte_level_pre(path: Path, spec: Mapping[str, Any]) -> str:
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
    return pre


def _spm_space_prefix(path: Path, spec: Mapping[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer.json prepends "▁" (llama.cpp's ``add_space_prefix``).

    Two spellings exist: a ``Metaspace`` pre-tokenizer (newer transformers) or a normalizer sequence of
    ``Prepend("▁")`` and ``Replace(" ", "▁")`` (the Llama-2 converter). Anything else is refused."""
    pre = spec.get("pre_tokenizer") or {}
    norm = spec.get("normalizer") or {}
    if pre.get("type") == "Metaspace" and pre.get("replacement", "▁") == "▁" and not norm:
        return pre.get("prepend_scheme", "always") in ("always", "first")
    parts = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm] if norm else []
    kinds = [p.get("type") for p in parts]
    replace_ok = any(
        p.get("type") == "Replace" and (p.get("pattern") or {}).get("String") == " " and p.get("content") == "▁"
        for p in parts
    )
    if not pre and replace_ok and set(kinds) <= {"Prepend", "Replace"}:
        return "Prepend" in kinds
    raise VocabularyError(
        f"{path}: SentencePiece-style vocabulary with pre-tokenizer {_describe(pre)} and normalizer "
        f"{_describe(norm)} has no llama.cpp equivalent known to tinyexport; use --format onnx or tflite"
    )


def _merges(path: Path, model: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for pair in model.get("merges") or []:
        left, right = pair.split(" ", 1) if isinstance(pair, str) else pair
        if " " in left or " " in right:
            raise VocabularyError(f"{path}: merge {pair!r} contains a space; its tokens cannot be written to GGUF")
        out.append((left, right))
    return out


def _spm_scores(tokens: list[str], merges: list[tuple[str, str]]) -> list[float]:
    """llama.cpp's SentencePiece tokenizer merges the adjacent pair whose result has the highest score;
    BPE merges by rank. A token made by merge rank r scores -r (earlier merges win), others 0."""
    rank: dict[str, int] = {}
    for r, (left, right) in enumerate(merges):
        rank.setdefault(left + right, r)
    return [-float(rank[t]) if t in rank else 0.0 for t in tokens]


def _adds_special(spec: Mapping[str, Any], config: Mapping[str, Any], kind: str, *, first: bool) -> bool:
    """Whether encoding adds a special token first (BOS) / last (EOS). tokenizer.json's TemplateProcessing is
    what our tokenizer applies, so it decides; tokenizer_config.json's ``add_{kind}_token`` otherwise."""
    post = spec.get("post_processor") or {}
    for proc in post.get("processors", [post]) if post.get("type") == "Sequence" else [post]:
        if proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            edge = single[0 if first else -1] if single else {}
            return "SpecialToken" in edge
    return bool(config.get(f"add_{kind}_token", False))


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
