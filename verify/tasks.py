"""The task suite's formats: multiple-choice and last-word tasks read from local JSONL files (HellaSwag,
PIQA, SIQA, ARC, LAMBADA), MMLU CSVs (``verify.choice``), and a generated task (small-number addition).

Every task becomes ``TaskItem``s: a context string and the option strings scored after it (each option
begins with its separating space, as lm-evaluation-harness scores continuations). Last-word tasks have
one option, the target word, scored by greedy exact match. Layouts: docs/tasks.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError


class TaskFormatError(UserError, ValueError):
    """A task file is missing or malformed; the message names the file, the line and the field."""


@dataclass(frozen=True)
class TaskItem:
    file: str
    line: int
    context: str
    options: tuple[str, ...]
    answer: int  # index into options


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "choice" (argmax of summed log-likelihood) or "lastword" (greedy exact match)
    description: str
    needs_file: bool
    read: Callable[[Path | None, int | None], list[TaskItem]]

    def random_baseline(self, items: list[TaskItem]) -> float:
        """Theoretical random accuracy: mean 1/options for choice tasks; ~0 for last-word prediction
        (a uniform guess over the vocabulary hits a k-token word with probability V^-k)."""
        if self.kind == "lastword":
            return 0.0
        return float(np.mean([1.0 / len(it.options) for it in items])) if items else float("nan")


def _jsonl(path: Path, limit: int | None) -> list[tuple[int, dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"task file {path} does not exist; pass a JSONL file (one JSON object per line)")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise TaskFormatError(f"{path}: not UTF-8 text (invalid byte at offset {err.start})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskFormatError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise TaskFormatError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise TaskFormatError(f"{path}: no items; expected one JSON object per line")
    return rows


def _field(path: Path, line: int, obj: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj and obj[name] not in (None, ""):
            return obj[name]
    raise TaskFormatError(f"{path}:{line}: missing field {' or '.join(repr(n) for n in names)}")


def _label(
    path: Path, line: int, value: Any, n: int, *, one_based: bool = False, labels: list[str] | None = None
) -> int:
    """An answer index from an int, a digit string or (ARC) one of ``labels``."""
    if labels is not None and str(value).strip() in labels:
        return labels.index(str(value).strip())
    try:
        index = int(str(value).strip()) - (1 if one_based else 0)
    except ValueError:
        raise TaskFormatError(f"{path}:{line}: answer {value!r} is not an option index") from None
    if not 0 <= index < n:
        raise TaskFormatError(f"{path}:{line}: answer {value!r} is out of range for {n} options")
    return index


def _options(path: Path, line: int, values: Any) -> tuple[str, ...]:
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, str) and v.strip() for v in values):
        raise TaskFormatError(f"{path}:{line}: expected a list of at least 2 non-empty option strings")
    return tuple(" " + v.strip() for v in values)


def read_hellaswag(path: Path | None, limit: int | None) -> list[TaskItem]:
    """``{"ctx" | "ctx_a"+"ctx_b", "endings": [4], "label", "activity_label"?}`` (the HellaSwag release)."""
    items = []
    for line, obj in _jsonl(path, limit):
        ctx = obj.get("ctx") or (str(obj.get("ctx_a", "")) + " " + str(obj.get("ctx_b", "")).capitalize()).strip()
        if not ctx:
            raise TaskFormatError(f"{path}:{line}: missing field 'ctx' (or 'ctx_a'/'ctx_b')")
        activity = obj.get("activity_label")
        options = _options(path, line, _field(path, line, obj, "endings"))
        answer = _label(path, line, _field(path, line, obj, "label"), len(options))
        items.append(TaskItem(Path(path).name, line, f"{activity}: {ctx}" if activity else ctx, options, answer))
    return items


def read_piqa(path: Path | None, limit: int | None) -> list[TaskItem]:
    """``{"goal", "sol1", "sol2", "label": 0|1}`` (PIQA's JSONL with its label merged in)."""
    items = []
    for line, obj in _jsonl(path, limit):
        goal = _field(path, line, obj, "goal")
        options = _options(path, line, [_field(path, line, obj, "sol1"), _field(path, line, obj, "sol2")])
        answer = _label(path, line, _field(path, line, obj, "label"), 2)
        items.append(TaskItem(Path(path).name, line, f"Question: {goal}\nAnswer:", options, answer))
    return items


def read_siqa(path: Path | None, limit: int | None) -> list[TaskItem]:
    """``{"context", "question", "answerA", "answerB", "answerC", "label": "1"|"2"|"3"}`` (Social IQa)."""
    items = []
    for line, obj in _jsonl(path, limit):
        context, question = _field(path, line, obj, "context"), _field(path, line, obj, "question")
        options = _options(path, line, [_field(path, line, obj, f"answer{c}") for c in "ABC"])
        answer = _label(path, line, _field(path, line, obj, "label"), 3, one_based=True)
        items.append(TaskItem(Path(path).name, line, f"Q: {context} {question}\nA:", options, answer))
    return items


def read_arc(path: Path | None, limit: int | None) -> list[TaskItem]:
    """AI2 ARC: ``{"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}`` (the release), or
    ``{"question", "choices": {"text": [...], "label": [...]}, "answerKey"}`` (the HF datasets export)."""
    items = []
    for line, obj in _jsonl(path, limit):
        question = _field(path, line, obj, "question")
        if isinstance(question, dict):
            stem = _field(path, line, question, "stem")
            choices = question.get("choices") or []
            texts = [c.get("text") for c in choices if isinstance(c, dict)]
            labels = [str(c.get("label")) for c in choices if isinstance(c, dict)]
        else:
            stem, choices = question, _field(path, line, obj, "choices")
            if not isinstance(choices, dict):
                raise TaskFormatError(f"{path}:{line}: 'choices' must be {{'text': [...], 'label': [...]}}")
            texts, labels = list(choices.get("text") or []), [str(x) for x in choices.get("label") or []]
        options = _options(path, line, texts)
        if len(labels) != len(options):
            raise TaskFormatError(f"{path}:{line}: {len(options)} choices but {len(labels)} labels")
        answer = _label(path, line, _field(path, line, obj, "answerKey"), len(options), labels=labels)
        items.append(TaskItem(Path(path).name, line, f"Question: {stem}\nAnswer:", options, answer))
    return items


def read_lambada(path: Path | None, limit: int | None) -> list[TaskItem]:
    """``{"text": "... passage ending in its target word"}``: the context is all but the last word."""
    items = []
    for line, obj in _jsonl(path, limit):
        text = str(_field(path, line, obj, "text")).strip()
        context, _, word = text.rpartition(" ")
        if not context or not word:
            raise TaskFormatError(f"{path}:{line}: 'text' needs at least two words (context and target)")
        items.append(TaskItem(Path(path).name, line, context, (" " + word,), 0))
    return items


ADDITION_RANGE = (1, 20)
ADDITION_DEFAULT_ITEMS = 100


def generate_addition(path: Path | None, limit: int | None, seed: int = 0) -> list[TaskItem]:
    """Small-number addition (a + b, both in 1..20), four numeric options: the sum and three distinct
    distractors within ±3 of it; the correct option's position is random. Deterministic for a seed."""
    low, high = ADDITION_RANGE
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]
    order = rng.permutation(len(pairs))[: limit or ADDITION_DEFAULT_ITEMS]
    items = []
    for n, k in enumerate(order, 1):
        a, b = pairs[int(k)]
        total = a + b
        near = [v for v in range(total - 3, total + 4) if v != total and v >= 0]
        options = [total, *(int(v) for v in rng.choice(near, size=3, replace=False))]
        perm = rng.permutation(4)
        shuffled = [options[int(i)] for i in perm]
        items.append(
            TaskItem(
                "addition",
                n,
                f"Question: What is {a} plus {b}?\nAnswer:",
                tuple(f" {v}" for v in shuffled),
                shuffled.index(total),
            )
        )
    return items


def read_mmlu(path: Path | None, limit: int | None) -> list[TaskItem]:
    """MMLU CSVs (a file or a directory; ``verify.choice``), scored by the options' own text."""
    from .choice import load_questions, text_prompt

    items = []
    for q in load_questions(Path(path), limit):
        context, options = text_prompt(q)
        items.append(TaskItem(q.file, q.line, context, tuple(options), q.answer))
    return items


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("mmlu", "choice", "MMLU CSVs (question,A,B,C,D,answer), option text scored", True, read_mmlu),
        Task("hellaswag", "choice", "HellaSwag JSONL: context + 4 endings", True, read_hellaswag),
        Task("piqa", "choice", "PIQA JSONL: goal + 2 solutions", True, read_piqa),
        Task("siqa", "choice", "Social IQa JSONL: context + question + 3 answers", True, read_siqa),
        Task("arc", "choice", "AI2 ARC JSONL (Easy or Challenge): question + 3-5 choices", True, read_arc),
        Task("lambada", "lastword", "LAMBADA-style JSONL: predict a passage's last word (greedy)", True, read_lambada),
        Task("addition", "choice", "generated: a + b for a, b in 1..20, 4 numeric options", False, generate_addition),
    )
}


def parse_task_spec(spec: str) -> tuple[Task, Path | None]:
    """``NAME=PATH`` (file tasks) or ``NAME`` (generated tasks) -> (task, path)."""
    name, _, location = spec.partition("=")
    task = TASKS.get(name.strip().lower())
    if task is None:
        raise UserError(f"--task {spec!r}: unknown task {name!r}; known: {', '.join(TASKS)}")
    if task.needs_file and not location:
        raise UserError(f"--task {name} needs a file: --task {name}=path/to/{name}.jsonl (layout: docs/tasks.md)")
    if not task.needs_file and location:
        raise UserError(f"--task {name} is generated and takes no file; pass --task {name}")
    return task, (Path(location) if location else None)
