"""`tinyexport eval choice`: MMLU-format CSVs, log-likelihood picks checked against a bigram model
whose preferences are known by construction, and malformed input refused by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinyexport.verify.choice import LETTERS, SCORINGS, encode_question, evaluate_choice, load_questions

from .cli_helpers import assert_bad_input, run_cli
from .eval_helpers import LastPositionOnly, bigram_checkpoint, bigram_logprobs, byte_ids

FIXTURE = Path(__file__).parent / "fixtures" / "mmlu"


def test_fixture_reads_as_mmlu_does():
    questions = load_questions(FIXTURE)
    assert [q.subject for q in questions] == ["astronomy"] * 5 + ["world_religions"] * 4  # *_dev.csv ignored
    multi = questions[3]
    assert multi.line == 4 and multi.question.endswith("and\nwhich other quantity?")
    assert questions[4].line == 6  # line numbers count the quoted newline
    assert questions[1].options[3] == "6,000 years"
    assert "".join(LETTERS[q.answer] for q in questions) == "BCACDCACB"
    assert len(load_questions(FIXTURE, limit=2)) == 4
    assert len(load_questions(FIXTURE / "astronomy_dev.csv")) == 1


@pytest.fixture(scope="module")
def prefers_c(tmp_path_factory):
    """After a space, this model puts almost all its mass on 'C'."""
    table = np.random.default_rng(1).normal(0, 1, (256, 256))
    table[ord(" "), ord("C")] += 12.0
    return bigram_checkpoint(tmp_path_factory.mktemp("prefers_c"), table)


def test_letter_scoring_picks_the_letter_the_model_prefers(tmp_path, prefers_c):
    out = tmp_path / "choice.json"
    res = run_cli("eval", "choice", str(FIXTURE), "--checkpoint", str(prefers_c), "--json", str(out), cache=tmp_path)
    assert res.code == 0, res.stderr
    assert "overall" in res.stdout and "25%" in res.stdout and "astronomy" in res.stdout
    report = json.loads(out.read_text())
    assert report["questions"] == 9 and report["scoring"] == "letter" and report["random_baseline"] == 0.25
    assert [c["name"] for c in report["candidates"]] == ["hf", "torch:standard"]
    for cand in report["candidates"]:
        assert cand["predictions"] == ["C"] * 9
        assert cand["subjects"]["astronomy"] == {"accuracy": 0.4, "correct": 2, "total": 5}
        assert cand["subjects"]["world_religions"] == {"accuracy": 0.5, "correct": 2, "total": 4}
        assert cand["correct"] == 4 and cand["accuracy"] == pytest.approx(4 / 9)


def test_text_scoring_equals_hand_computed_loglikelihoods(tmp_path):
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner
    from tinyexport.tokenizer import Tokenizer
    from tinyexport.verify.choice import option_loglikelihoods

    table = np.random.default_rng(2).normal(0, 2, (256, 256))
    ckpt = resolve_checkpoint(str(bigram_checkpoint(tmp_path / "bigram", table)), cache=tmp_path)
    lp = bigram_logprobs(table)
    tokenizer = Tokenizer(ckpt.directory)
    questions = load_questions(FIXTURE)
    items = [encode_question(q, SCORINGS["text"], tokenizer) for q in questions]
    by_hand = []
    for q in questions:
        context = byte_ids(SCORINGS["text"].prompt(q)[0])
        sums = []
        for option in q.options:
            seq = np.concatenate([context[-1:], byte_ids(" " + option)])
            sums.append(lp[seq[:-1], seq[1:]].sum())
        by_hand.append(sums)
    by_hand = np.array(by_hand)
    assert len({int(np.argmax(row)) for row in by_hand}) > 1  # the picks are not all the same letter

    runner = TorchRunner.from_checkpoint(ckpt, max_len=256)
    np.testing.assert_allclose([option_loglikelihoods(runner, it) for it in items], by_hand, rtol=1e-5)
    for r in (runner, LastPositionOnly(runner)):  # prefill path and token-by-token decode path
        result = evaluate_choice(r, items, name=r.name, fmt="torch", recipe="fp32")
        assert result.predictions == [int(np.argmax(row)) for row in by_hand]
        answers = np.array([q.answer for q in questions])
        assert result.correct == int((np.argmax(by_hand, axis=1) == answers).sum())


@pytest.mark.parametrize(
    "files, fragments",
    [
        ({"law_test.csv": "Q1?,a,b,c,d,A\nQ2?,a,b,c,A\n"}, ["law_test.csv:2", "expected 6 fields", "got 5"]),
        ({"law_test.csv": '"Multi\nline?",a,b,c,d,B\nQ2?,a,b,c,d,E\n'}, ["law_test.csv:3", "A, B, C, D", "'E'"]),
        ({"law_test.csv": ",a,b,c,d,A\n"}, ["law_test.csv:1", "question is empty"]),
        ({"law_test.csv": "\n\n"}, ["law_test.csv", "no questions"]),
        ({"law_test.csv": b"Q?,caf\xe9,b,c,d,A\n"}, ["law_test.csv", "not UTF-8"]),
        ({"notes.txt": "hello"}, ["holds no *.csv files"]),
    ],
)
def test_malformed_choice_input_exits_2_naming_file_and_line(tmp_path, files, fragments):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    res = run_cli("eval", "choice", str(tmp_path), "--checkpoint", "/never/opened", cache=tmp_path)
    assert_bad_input(res, *fragments)


def test_question_longer_than_the_model_exits_2(tmp_path, prefers_c):
    d = tmp_path / "long"
    d.mkdir()
    (d / "history_test.csv").write_text("Short?,a,b,c,d,A\n" + "Why " * 150 + "?,a,b,c,d,B\n")
    res = run_cli("eval", "choice", str(d), "--checkpoint", str(prefers_c), cache=tmp_path)
    assert_bad_input(res, "question history_test.csv:2 needs", "max_position_embeddings (512)")
    res = run_cli("eval", "choice", str(tmp_path / "missing"), cache=tmp_path)
    assert_bad_input(res, "does not exist")
