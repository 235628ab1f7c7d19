"""Multiple-choice accuracy in the MMLU CSV format, by log-likelihood, over any Runner.

A CSV row is ``question, A, B, C, D, answer`` (no header; answer is one of A-D). The subject is the
file name without ``.csv`` and a trailing ``_test``/``_dev``/``_val`` (as MMLU names its files:
``abstract_algebra_test.csv`` -> ``abstract_algebra``). A directory that holds ``*_test.csv`` files is
read for those only (MMLU's layout); otherwise every ``*.csv`` in it is.

Zero-shot prompt (MMLU's / lm-evaluation-harness' ``mmlu`` template)::

    The following are multiple choice questions (with answers) about {subject}.

    {question}
    A. {A}
    B. {B}
    C. {C}
    D. {D}
    Answer:

Scorings: ``letter`` (default) compares log p(" A"), log p(" B"), ... after that prompt; ``text``
drops the listed options and compares the summed log-likelihood of each option's own text
(" {option}") after "{question}\\nAnswer:". Continuations are tokenized as the harness does: encode
context + continuation together and keep the ids after the context's own encoding.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError
from tinyexport.runners.base import Runner

from .metrics import token_logprobs
from .scoring import continuation_logits

LETTERS = ("A", "B", "C", "D")
RANDOM_BASELINE = 1 / len(LETTERS)
_SPLIT_SUFFIXES = ("_test", "_dev", "_val")


class ChoiceFormatError(UserError, ValueError):
    """A multiple-choice CSV (or its directory) is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    subject: str
    file: str
    line: int
    question: str
    options: tuple[str, str, str, str]
    answer: int  # index into LETTERS


def subject_of(path: Path) -> str:
    stem = path.stem
    for suffix in _SPLIT_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def question_files(location: Path) -> list[Path]:
    location = Path(location)
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise ChoiceFormatError(f"{location} does not exist; pass a directory of MMLU-format CSV files")
    tests = sorted(location.glob("*_test.csv"))
    files = tests or sorted(location.glob("*.csv"))
    if not files:
        raise ChoiceFormatError(
            f"{location} holds no *.csv files; pass a directory of MMLU-format CSVs (question,A,B,C,D,answer)"
        )
    return files


def read_questions(path: Path, limit: int | None = None) -> list[Question]:
    """Questions of one CSV file (the first ``limit`` if given); refuses malformed rows by line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ChoiceFormatError(f"{path}: not UTF-8 text (invalid byte at offset {err.start})") from None
    if "\x00" in text:
        raise ChoiceFormatError(f"{path}: binary file (NUL bytes); pass MMLU-format CSV text")
    subject = subject_of(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    questions: list[Question] = []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 6:
                raise ChoiceFormatError(f"{path}:{start}: expected 6 fields (question,A,B,C,D,answer), got {len(row)}")
            answer = row[5].strip()
            if answer not in LETTERS:
                raise ChoiceFormatError(f"{path}:{start}: answer must be one of A, B, C, D, got {answer!r}")
            if not row[0].strip():
                raise ChoiceFormatError(f"{path}:{start}: the question is empty")
            questions.append(
                Question(subject, path.name, start, row[0], (row[1], row[2], row[3], row[4]), LETTERS.index(answer))
            )
            if limit is not None and len(questions) >= limit:
                break
    except csv.Error as err:
        raise ChoiceFormatError(f"{path}:{line}: malformed CSV ({err})") from None
    if not questions:
        raise ChoiceFormatError(f"{path}: no questions; expected rows of question,A,B,C,D,answer")
    return questions


def load_questions(location: Path, limit: int | None = None) -> list[Question]:
    """All questions under ``location`` (a CSV file or a directory), ``limit`` per file."""
    return [q for path in question_files(location) for q in read_questions(path, limit)]


def _header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def letter_prompt(q: Question) -> tuple[str, list[str]]:
    body = q.question.strip() + "\n" + "".join(f"{letter}. {o}\n" for letter, o in zip(LETTERS, q.options)) + "Answer:"
    return _header(q.subject) + body, [f" {letter}" for letter in LETTERS]


def text_prompt(q: Question) -> tuple[str, list[str]]:
    return _header(q.subject) + q.question.strip() + "\nAnswer:", [f" {o}" for o in q.options]


@dataclass(frozen=True)
class Scoring:
    name: str
    description: str
    prompt: Callable[[Question], tuple[str, list[str]]]


SCORINGS: dict[str, Scoring] = {
    s.name: s
    for s in (
        Scoring("letter", "log p(' A'..' D') after the question with its options listed (MMLU)", letter_prompt),
        Scoring("text", "summed log p of each option's text after the question", text_prompt),
    )
}


@dataclass(frozen=True)
class EncodedQuestion:
    question: Question
    context: np.ndarray
    continuations: tuple[np.ndarray, ...]

    @property
    def longest(self) -> int:
        """Tokens a runner must hold to score it (the last continuation token is never fed)."""
        return self.context.size + max(c.size for c in self.continuations) - 1


def encode_question(q: Question, scoring: Scoring, tokenizer: Any) -> EncodedQuestion:
    context, continuations = scoring.prompt(q)
    ctx = tokenizer.encode(context)
    conts = []
    for letter, cont in zip(LETTERS, continuations):
        whole = tokenizer.encode(context + cont)
        ids = whole[ctx.size :]
        if ids.size == 0 or ctx.size == 0:
            raise ChoiceFormatError(f"{q.file}:{q.line}: option {letter} encodes to no tokens after the prompt")
        conts.append(ids)
    return EncodedQuestion(q, ctx, tuple(conts))


def option_loglikelihoods(runner: Runner, item: EncodedQuestion) -> np.ndarray:
    """(4,) summed log-likelihood of each continuation. One-token continuations share one pass."""
    scores = np.empty(len(item.continuations), dtype=np.float64)
    single = [i for i, c in enumerate(item.continuations) if c.size == 1]
    if single:
        last = continuation_logits(runner, item.context, item.continuations[single[0]])
        for i in single:
            scores[i] = token_logprobs(last, item.continuations[i])[0]
    for i, cont in enumerate(item.continuations):
        if cont.size > 1:
            scores[i] = token_logprobs(continuation_logits(runner, item.context, cont), cont).sum()
    return scores


@dataclass(frozen=True)
class SubjectScore:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@dataclass(frozen=True)
class ChoiceResult:
    name: str
    format: str
    recipe: str
    subjects: dict[str, SubjectScore]
    predictions: list[int] = field(repr=False)
    seconds: float = 0.0

    @property
    def correct(self) -> int:
        return sum(s.correct for s in self.subjects.values())

    @property
    def total(self) -> int:
        return sum(s.total for s in self.subjects.values())

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "recipe": self.recipe,
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "subjects": {
                k: {"accuracy": v.accuracy, "correct": v.correct, "total": v.total} for k, v in self.subjects.items()
            },
            "predictions": [LETTERS[p] for p in self.predictions],
        }


def evaluate_choice(
    runner: Runner,
    items: Sequence[EncodedQuestion],
    *,
    name: str,
    fmt: str,
    recipe: str,
    progress: Callable[[int], None] | None = None,
) -> ChoiceResult:
    start = time.perf_counter()
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    predictions = []
    for item in items:
        pick = int(np.argmax(option_loglikelihoods(runner, item)))
        predictions.append(pick)
        subject = item.question.subject
        total[subject] += 1
        correct[subject] += int(pick == item.question.answer)
        if progress is not None:
            progress(1)
    subjects = {s: SubjectScore(correct[s], total[s]) for s in sorted(total)}
    return ChoiceResult(name, fmt, recipe, subjects, predictions, time.perf_counter() - start)
