"""The task suite: every JSONL format parsed from fixtures written here, the generated addition task,
the theoretical random baselines, and `eval suite` accuracies checked against picks computed by hand
from a bigram model's explicit log-probability table (with the untrained tier beside them)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tinyexport.verify.tasks import TASKS, TaskFormatError, generate_addition, parse_task_spec

from .cli_helpers import assert_bad_input, run_cli
from .eval_helpers import bigram_checkpoint, bigram_logprobs


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


HELLASWAG = [
    {
        "activity_label": "Baking",
        "ctx_a": "She mixes flour.",
        "ctx_b": "then she",
        "endings": ["bakes.", "sings.", "runs.", "naps."],
        "label": 0,
    },
    {"ctx": "A man opens a door.", "endings": ["a", "b", "c", "d"], "label": "3"},
]
PIQA = [{"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the jar", "label": 0}]
SIQA = [
    {
        "context": "Kai gave a gift.",
        "question": "How does Kai feel?",
        "answerA": "happy",
        "answerB": "sad",
        "answerC": "bored",
        "label": "1",
    }
]
ARC = [
    {
        "question": {
            "stem": "What is water?",
            "choices": [
                {"text": "a liquid", "label": "A"},
                {"text": "a rock", "label": "B"},
                {"text": "a gas", "label": "C"},
            ],
        },
        "answerKey": "A",
    },
    {
        "question": "Which is a planet?",
        "choices": {"text": ["Mars", "Moon", "Sun", "Comet", "Star"], "label": ["1", "2", "3", "4", "5"]},
        "answerKey": "1",
    },
]
LAMBADA = [{"text": "the cat sat aaa"}, {"text": "the dog ran zzz"}]


def test_every_format_parses_from_fixtures(tmp_path):
    hs = TASKS["hellaswag"].read(write_jsonl(tmp_path / "hs.jsonl", HELLASWAG), None)
    assert hs[0].context == "Baking: She mixes flour. Then she" and hs[0].options[0] == " bakes." and hs[0].answer == 0
    assert hs[1].context == "A man opens a door." and hs[1].answer == 3 and hs[1].line == 2
    (pq,) = TASKS["piqa"].read(write_jsonl(tmp_path / "piqa.jsonl", PIQA), None)
    assert pq.context == "Question: Open a jar\nAnswer:" and pq.options == (" twist the lid", " eat the jar")
    (sq,) = TASKS["siqa"].read(write_jsonl(tmp_path / "siqa.jsonl", SIQA), None)
    assert sq.context == "Q: Kai gave a gift. How does Kai feel?\nA:" and sq.answer == 0 and len(sq.options) == 3
    arc = TASKS["arc"].read(write_jsonl(tmp_path / "arc.jsonl", ARC), None)
    assert [len(a.options) for a in arc] == [3, 5] and [a.answer for a in arc] == [0, 0]
    assert arc[1].context == "Question: Which is a planet?\nAnswer:"
    lam = TASKS["lambada"].read(write_jsonl(tmp_path / "lam.jsonl", LAMBADA), 1)
    assert [(x.context, x.options) for x in lam] == [("the cat sat", (" aaa",))]


def test_random_baselines(tmp_path):
    def baseline(name, rows):
        task = TASKS[name]
        return task.random_baseline(task.read(write_jsonl(tmp_path / f"{name}.jsonl", rows), None))

    assert baseline("hellaswag", HELLASWAG) == 0.25
    assert baseline("piqa", PIQA) == 0.5
    assert baseline("siqa", SIQA) == pytest.approx(1 / 3)
    assert baseline("arc", ARC) == pytest.approx((1 / 3 + 1 / 5) / 2)
    assert baseline("lambada", LAMBADA) == 0.0
    assert TASKS["addition"].random_baseline(generate_addition(None, 10)) == 0.25


def test_addition_items_are_right_and_deterministic():
    items = generate_addition(None, None)
    assert len(items) == 100 and items == generate_addition(None, None)
    assert len({it.context for it in items}) == 100
    for it in items:
        a, b = map(int, re.fullmatch(r"Question: What is (\d+) plus (\d+)\?\nAnswer:", it.context).groups())
        assert 1 <= a <= 20 and 1 <= b <= 20
        values = [int(o) for o in it.options]
        assert values[it.answer] == a + b and len(set(values)) == 4 and all(abs(v - a - b) <= 3 for v in values)
    assert sorted({it.answer for it in items}) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "spec, fragment",
    [("nope=x", "unknown task 'nope'"), ("piqa", "needs a file"), ("addition=x.jsonl", "takes no file")],
)
def test_bad_task_specs(spec, fragment):
    with pytest.raises(Exception, match=re.escape(fragment)):
        parse_task_spec(spec)


def test_malformed_task_file_exits_2_naming_file_and_line(tmp_path):
    bad = write_jsonl(tmp_path / "piqa.jsonl", [PIQA[0], {"goal": "x", "sol1": "a", "label": 0}])
    res = run_cli("eval", "suite", "--checkpoint", "tiny", "--random-weights", "--task", f"piqa={bad}", cache=tmp_path)
    assert_bad_input(res, "piqa.jsonl:2", "'sol2'")
    (tmp_path / "broken.jsonl").write_text('{"text": "a b"}\n{not json\n')
    with pytest.raises(TaskFormatError, match=re.escape("broken.jsonl:2: not valid JSON")):
        TASKS["lambada"].read(tmp_path / "broken.jsonl", None)


def hand_pick(logp, context: str, options) -> int:
    """argmax over options of the summed bigram log-likelihood of the option's bytes after the context."""
    scores = []
    for option in options:
        seq = (context + option).encode()
        start = len(context.encode())
        scores.append(sum(logp[seq[i - 1], seq[i]] for i in range(start, len(seq))))
    return int(np.argmax(scores))


def test_suite_accuracies_match_hand_computed_picks_with_three_baselines(tmp_path):
    table = np.random.default_rng(2).normal(0, 1, (256, 256))
    for a, b in (("t", " "), ("d", " "), (" ", "a"), ("a", "a")):  # greedy after "...sat"/"...ran": " aaa..."
        table[ord(a), ord(b)] += 12.0
    ckpt = bigram_checkpoint(tmp_path / "bigram", table)
    logp = bigram_logprobs(table)
    files = {
        "piqa": write_jsonl(tmp_path / "piqa.jsonl", PIQA * 2 + [dict(PIQA[0], label=1)]),
        "arc": write_jsonl(tmp_path / "arc.jsonl", ARC),
        "lambada": write_jsonl(tmp_path / "lam.jsonl", LAMBADA),
    }
    out = tmp_path / "suite.json"
    args = ["eval", "suite", "--checkpoint", str(ckpt), "--attention", "standard", "--json", str(out), "--limit", "12"]
    for name, path in files.items():
        args += ["--task", f"{name}={path}"]
    res = run_cli(*args, "--task", "addition", cache=tmp_path / "cache")
    assert res.code == 0, res.stderr
    assert "untrained" in res.stdout and "random" in res.stdout
    report = json.loads(out.read_text())
    assert report["models"] == ["untrained", "trained", "torch:standard"]
    by_task = {t["task"]: t for t in report["tasks"]}
    for name in ("piqa", "arc", "addition"):
        task = TASKS[name]
        items = task.read(files.get(name), 12)
        expected = np.mean([hand_pick(logp, it.context, it.options) == it.answer for it in items])
        assert by_task[name]["items"] == len(items)
        assert by_task[name]["random_baseline"] == pytest.approx(task.random_baseline(items))
        assert by_task[name]["accuracy"]["trained"] == pytest.approx(expected)
        assert by_task[name]["accuracy"]["torch:standard"] == pytest.approx(expected)
    assert by_task["lambada"]["accuracy"]["trained"] == 0.5  # "aaa" follows greedily, "zzz" does not
    assert by_task["lambada"]["random_baseline"] == 0.0
    # the untrained tier: the same shape and tokenizer, different (random) weights
    untrained = next((tmp_path / "cache" / "checkpoints").glob("untrained-*-seed0"))
    from tinyexport.models.config import read_hf_config
    from tinyexport.models.weights import weight_files

    assert read_hf_config(untrained) == read_hf_config(ckpt)
    assert weight_files(untrained)[0].read_bytes() != weight_files(ckpt)[0].read_bytes()
    assert (untrained / "tokenizer.json").read_bytes() == (ckpt / "tokenizer.json").read_bytes()
    assert all(0.0 <= v <= 1.0 for t in report["tasks"] for v in t["accuracy"].values())
