"""Multi-turn chat: the cache is kept across turns (a turn prefills only its own tokens), each answer
equals a one-shot generation of the same rendered conversation, on torch, ONNX and TFLite runners;
/reset, a full cache, Ctrl-C and the command itself through a pipe and a pseudo-terminal."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tinyexport.chat import CacheFullError, ChatSession, common_prefix
from tinyexport.runners.decoding import greedy_generate

from .cli_helpers import run_cli
from .spec_helpers import ascii_chat_checkpoint

CACHE = 160
NEW = 12


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return ascii_chat_checkpoint(tmp_path_factory.mktemp("chat_ckpt"), seed=4)


@pytest.fixture(scope="module")
def chat_arts(tmp_path_factory, chat_dir):
    from tinyexport.converters.export_config import ExportConfig
    from tinyexport.converters.pipeline import export_artefact
    from tinyexport.resolve import open_checkpoint

    ckpt = open_checkpoint(str(chat_dir))
    root = tmp_path_factory.mktemp("chat_arts")
    made = {}
    for fmt, lens in (("onnx", (8,)), ("tflite", (8, 32))):
        made[fmt] = root / fmt
        export_artefact(
            ckpt,
            ExportConfig(format=fmt, kv_cache_max_len=CACHE, prefill_seq_lens=lens),
            made[fmt],
            source_ref={"spec": str(chat_dir)},
        )
    return made


def _runners(chat_dir, chat_arts):
    from tinyexport.resolve import open_checkpoint
    from tinyexport.runners import open_artefact_runner
    from tinyexport.runners.torch_runner import TorchRunner

    yield TorchRunner.from_checkpoint(open_checkpoint(str(chat_dir)), max_len=CACHE)
    for path in chat_arts.values():
        yield open_artefact_runner(path, threads=2)


def _session(runner, chat_dir, **options):
    from tinyexport.tokenizer import Tokenizer

    return ChatSession(runner, Tokenizer(chat_dir), max_new_tokens=NEW, **options)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix([1, 2, 3], [1, 5, 3]) == 1
    assert common_prefix([], [1]) == 0


def test_prompt_text_wraps_one_user_message_only_with_a_template(chat_dir, tmp_path):
    """The one place a single prompt becomes a chat turn (generate, LiteRT-LM generate, bench --draft)."""
    import shutil

    from tinyexport.errors import UserError
    from tinyexport.tokenizer import Tokenizer

    tok = Tokenizer(chat_dir)
    rendered = tok.prompt_text("hi", chat=True)
    assert rendered == tok.render_chat([{"role": "user", "content": "hi"}]) and rendered != "hi"
    assert tok.prompt_text("hi") == rendered and tok.prompt_text("hi", chat=False) == "hi"
    shutil.copy(chat_dir / "tokenizer.json", tmp_path / "tokenizer.json")  # the same vocabulary, no template
    bare = Tokenizer(tmp_path)
    assert bare.prompt_text("hi") == "hi"
    with pytest.raises(UserError, match="no chat template"):
        bare.prompt_text("hi", chat=True)


def test_turns_reuse_the_cache_and_equal_one_shot_generation(chat_dir, chat_arts):
    from tinyexport.runners import open_artefact_runner

    for runner in _runners(chat_dir, chat_arts):
        chat = _session(runner, chat_dir)
        first = "".join(chat.turn("Hi there"))
        one = chat.last
        assert one.reused_tokens == 0 and one.prefilled_tokens == one.rendered_tokens
        assert one.new_tokens == NEW and one.stop_reason == "max_new_tokens"
        rendered_one = chat.render(chat.messages[:1])
        assert len(chat.cached) == runner.position == len(rendered_one) + NEW - 1  # last answer id not read yet
        second = "".join(chat.turn("And again?"))
        two = chat.last
        ids = chat.render(chat.messages[:3])
        # the second turn prefills only its own tokens: everything after turn one's prompt + answer
        assert two.prefix_kept and two.reused_tokens == len(rendered_one) + NEW - 1
        assert two.prefilled_tokens == len(ids) - two.reused_tokens == two.rendered_tokens - two.reused_tokens
        assert chat.tokenizer.decode(ids[len(rendered_one) :]).startswith(first)
        # one-shot: a fresh runner of the same kind, the whole rendered conversation in one prefill
        fresh = runner if runner.name.startswith("torch") else None
        if fresh is None:
            path = next(p for p in chat_arts.values() if p.name == runner.name)
            fresh = open_artefact_runner(path, threads=2)
        else:
            from tinyexport.resolve import open_checkpoint
            from tinyexport.runners.torch_runner import TorchRunner

            fresh = TorchRunner.from_checkpoint(open_checkpoint(str(chat_dir)), max_len=CACHE)
        expected = greedy_generate(fresh, np.asarray(ids), NEW).tokens
        assert second == chat.tokenizer.decode(expected), runner.name


def test_reset_full_cache_and_interrupt(chat_dir):
    from tinyexport.resolve import open_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner

    runner = TorchRunner.from_checkpoint(open_checkpoint(str(chat_dir)), max_len=CACHE)
    chat = _session(runner, chat_dir)
    pieces = []
    for piece in chat.turn("Tell me", should_stop=lambda: len(pieces) >= 2):
        pieces.append(piece)
    assert chat.last.stop_reason == "interrupted" and chat.last.new_tokens == 2
    assert chat.messages[-1] == {"role": "assistant", "content": "".join(pieces)}
    assert len(chat.cached) == runner.position == len(chat.render(chat.messages[:1])) + 1
    "".join(chat.turn("More"))  # continues from the kept cache after an interrupted answer
    assert chat.last.prefix_kept and chat.last.reused_tokens == len(chat.render(chat.messages[:1])) + 1
    with pytest.raises(CacheFullError, match="/reset"):
        list(chat.turn("x" * CACHE))
    chat.reset()
    assert runner.position == 0 and chat.messages == [] and chat.cached == []
    # an answer that runs into the end of the cache stops there and says so
    long = "y" * (CACHE - len(chat.render([{"role": "user", "content": ""}])) - 3)
    "".join(chat.turn(long))
    assert chat.last.stop_reason == "cache_full" and runner.position <= CACHE


def test_chat_command_through_a_pipe(chat_arts, tmp_path):
    """The command as a user pipes it: answers stream, the second turn reuses the cache, /reset works."""
    script = "Hi there\nAnd again?\n/reset\nHi there\n/exit\nnot read\n"
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", "chat", str(chat_arts["onnx"]), "--max-new-tokens", str(NEW)],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TINYEXPORT_CACHE": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("you> ")] == [
        "you> Hi there",
        "you> And again?",
        "you> /reset",
        "you> Hi there",
        "you> /exit",
    ]
    answers = [line for line in lines if line.startswith("assistant> ")]
    assert len(answers) == 3 and answers[0] == answers[2]  # same first turn after /reset
    stats = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert "(0 from the cache)" in stats[0] and "(0 from the cache)" not in stats[1]
    assert "(0 from the cache)" in stats[2] and "new conversation" in proc.stderr


def test_chat_command_in_a_pseudo_terminal_survives_ctrl_c(tmp_path):
    """In a terminal: Ctrl-C during an answer stops it and the session goes on; Ctrl-D leaves (exit 0).
    The torch runner with a 4096-token answer budget, so the answer is still running when Ctrl-C comes."""
    import pty
    import select
    import signal
    import subprocess
    import time

    ckpt = ascii_chat_checkpoint(tmp_path / "long", seed=4, max_positions=4096)
    master, slave = pty.openpty()
    args = ["chat", "--checkpoint", str(ckpt), "--max-len", "4096", "--max-new-tokens", "4000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyexport", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TINYEXPORT_CACHE": str(tmp_path / "cache")},
    )
    os.close(slave)
    fd = master
    out, seen = b"", 0  # output so far; where the next marker is looked for

    def read_until(marker: bytes, timeout: float = 120) -> None:
        nonlocal out, seen
        end = time.monotonic() + timeout
        while marker not in out[seen:] and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        assert marker in out[seen:], out.decode(errors="replace")[-2000:]
        seen = out.index(marker, seen) + len(marker)

    read_until(b"you> ")
    os.write(fd, b"Hi there\n")
    read_until(b"assistant> ")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    read_until(b"(stopped)")
    read_until(b"you> ", timeout=60)
    os.write(fd, b"/reset\n")
    read_until(b"new conversation")
    os.write(fd, b"\x04")  # Ctrl-D at the prompt
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")[-2000:]
    os.close(fd)


def test_chat_without_tokenizer_or_template_is_bad_input(tmp_path):
    from tinyexport.models.config import TINY

    from .cli_helpers import assert_bad_input
    from .eval_helpers import write_byte_tokenizer
    from .tiny_models import save_hf_checkpoint

    bare = save_hf_checkpoint(TINY, tmp_path / "bare")
    assert_bad_input(run_cli("chat", "--checkpoint", str(bare), cache=tmp_path / "c"), "no tokenizer")
    write_byte_tokenizer(bare)
    assert_bad_input(run_cli("chat", "--checkpoint", str(bare), cache=tmp_path / "c"), "no chat template")
