"""Training data: a plain text file (next-token windows) or JSONL of instruction/response pairs rendered with
the checkpoint's chat template (loss on the response tokens only). No torch here.

A held-out part is cut off before anything is trained: the text's last ``holdout`` fraction of tokens, or
the JSONL's last examples; it is only ever evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexport.errors import UserError

IGNORE = -100  # label of a position that is not trained on (torch's cross-entropy ignore_index)
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class DataError(UserError, ValueError):
    """The training data cannot be used; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class Example:
    ids: np.ndarray  # (T,) int64 model input
    labels: np.ndarray  # (T,) int64 next token at each position, IGNORE where not trained

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


@dataclass(frozen=True)
class Dataset:
    kind: str  # "text" | "jsonl"
    train: tuple[Example, ...]
    held_out: tuple[Example, ...]
    source: str

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "train_examples": len(self.train),
            "train_tokens": sum(e.trained_tokens for e in self.train),
            "held_out_examples": len(self.held_out),
            "held_out_tokens": sum(e.trained_tokens for e in self.held_out),
        }


def _read_utf8(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"training data {path} does not exist; pass a .txt or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start}); convert it to UTF-8") from None
    if not text.strip():
        raise DataError(f"{path} is empty; give it some text (or instruction/response lines for .jsonl)")
    return text


def _windows(ids: np.ndarray, seq_len: int) -> list[Example]:
    """Non-overlapping windows of ``seq_len`` inputs (the last one shorter), each predicting the next token."""
    out = []
    for start in range(0, ids.size - 1, seq_len):
        chunk = ids[start : start + seq_len + 1]
        if chunk.size < 2:
            break
        out.append(Example(chunk[:-1].copy(), chunk[1:].copy()))
    return out


def text_dataset(path: Path, tokenizer, *, seq_len: int, holdout: float) -> Dataset:
    ids = tokenizer.encode(_read_utf8(path))
    cut = ids.size - round(ids.size * holdout)
    train, held = _windows(ids[:cut], seq_len), _windows(ids[cut:], seq_len) if holdout > 0 else []
    if not train:
        raise DataError(f"{path} has {ids.size} tokens, too few to train on; give a longer text or lower --holdout")
    if holdout > 0 and not held:
        raise DataError(f"{path}: --holdout {holdout} leaves no held-out tokens; raise it or pass --holdout 0")
    return Dataset("text", tuple(train), tuple(held), str(path))


def parse_jsonl(path: Path) -> list[tuple[int, str, str]]:
    """(line number, instruction, response) for every non-blank line; DataError naming file:line otherwise."""
    pairs = []
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number} is not valid JSON ({err.msg}); one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f'{path}:{number} is not a JSON object; write {{"instruction": ..., "response": ...}}')
        for key in ("instruction", "response"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise DataError(
                    f'{path}:{number} lacks a non-empty string "{key}"; every line needs instruction and response'
                )
        pairs.append((number, record["instruction"], record["response"]))
    if not pairs:
        raise DataError(f"{path} has no instruction/response lines; give at least one JSON object per line")
    return pairs


def chat_example(tokenizer, instruction: str, response: str, seq_len: int) -> Example:
    """The pair rendered with the chat template; labels only on the assistant's part (template's own end token included)."""
    user = [{"role": "user", "content": instruction}]
    prompt = tokenizer.encode(tokenizer.render_chat(user, add_generation_prompt=True))
    full = tokenizer.encode(
        tokenizer.render_chat([*user, {"role": "assistant", "content": response}], add_generation_prompt=False)
    )
    labels = full[1:].copy()
    labels[: max(prompt.size - 1, 0)] = IGNORE  # predicting prompt tokens is not trained
    return Example(full[:-1][:seq_len].copy(), labels[:seq_len].copy())


def jsonl_dataset(path: Path, tokenizer, *, seq_len: int, holdout: float) -> Dataset:
    if tokenizer.chat_template() is None:
        raise DataError(f"{tokenizer.directory} has no chat template to render {path}; train on a .txt file instead")
    pairs = parse_jsonl(path)
    examples = []
    for number, instruction, response in pairs:
        example = chat_example(tokenizer, instruction, response, seq_len)
        if example.trained_tokens == 0:
            raise DataError(
                f"{path}:{number}: the prompt fills --seq-len {seq_len}, no response token is left; raise --seq-len"
            )
        examples.append(example)
    held = round(len(examples) * holdout)
    if holdout > 0 and held == 0 and len(examples) > 1:
        held = 1
    if held >= len(examples):
        raise DataError(f"{path} has {len(examples)} example(s); --holdout {holdout} leaves none to train on")
    return Dataset("jsonl", tuple(examples[: len(examples) - held]), tuple(examples[len(examples) - held :]), str(path))


def load_dataset(path: Path, tokenizer, *, seq_len: int, holdout: float) -> Dataset:
    """A ``.jsonl``/``.ndjson`` file as chat pairs, anything else as plain text."""
    path = Path(path)
    if not 0 <= holdout < 1:
        raise DataError(f"--holdout must be in [0, 1), got {holdout}")
    if path.suffix.lower() in JSONL_SUFFIXES:
        return jsonl_dataset(path, tokenizer, seq_len=seq_len, holdout=holdout)
    return text_dataset(path, tokenizer, seq_len=seq_len, holdout=holdout)
