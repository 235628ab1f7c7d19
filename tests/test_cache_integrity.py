"""Cache integrity: a materialised checkpoint or a reference store that is truncated or modified after it
was written is detected on use (size always, sha256 when the mtime moved) and rebuilt (checkpoint) or
refused with the fix (reference store); two processes materialising the same checkpoint at once leave
one good copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyexport.models.checkpoint import resolve_checkpoint
from tinyexport.verify.reference_store import ReferenceKey, ReferenceStore, ReferenceStoreCorrupt, reference_writer

MARK = "tinyexport_source.json"


def _weights(ckpt) -> Path:
    return ckpt.directory / "model.safetensors"


def test_truncated_checkpoint_is_rebuilt(tmp_path, capfd):
    first = resolve_checkpoint("tiny", cache=tmp_path, random_weights=True, seed=1)
    good = first.fingerprint()
    with open(_weights(first), "r+b") as handle:
        handle.truncate(1000)
    again = resolve_checkpoint("tiny", cache=tmp_path, random_weights=True, seed=1)
    assert "is 1000 bytes" in capfd.readouterr().err
    assert again.directory == first.directory and again.fingerprint() == good
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        ".tiny-random-seed1.lock",
        "tiny-random-seed1",
    ]


def test_modified_checkpoint_is_rebuilt_and_a_touched_one_is_rehashed_once(tmp_path, capfd):
    first = resolve_checkpoint("tiny", cache=tmp_path, random_weights=True, seed=2)
    good = first.fingerprint()
    path = _weights(first)
    os.utime(path)  # same bytes, new mtime: re-hashed, accepted, the new mtime recorded
    resolve_checkpoint("tiny", cache=tmp_path, random_weights=True, seed=2)
    assert capfd.readouterr().err == ""
    recorded = json.loads((first.directory / MARK).read_text())["files"]["model.safetensors"]
    assert recorded["mtime_ns"] == path.stat().st_mtime_ns
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one weight byte, same size
    path.write_bytes(bytes(data))
    again = resolve_checkpoint("tiny", cache=tmp_path, random_weights=True, seed=2)
    assert "model.safetensors was modified" in capfd.readouterr().err
    assert again.fingerprint() == good


_MATERIALISE = (
    "import sys; from pathlib import Path; from tinyexport.models.checkpoint import resolve_checkpoint\n"
    "c = resolve_checkpoint(sys.argv[1], cache=Path(sys.argv[2]), random_weights=sys.argv[1] != 'smollm2-135m')\n"
    "print(c.fingerprint())\n"
)


def _materialise_twice_at_once(spec: str, cache: Path) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MATERIALISE, spec, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-3000:]
    return [out.strip().splitlines()[-1] for out, _ in outs]


def _one_good_copy(cache: Path, name: str) -> None:
    entries = sorted(p.name for p in (cache / "checkpoints").iterdir())
    assert entries == [f".{name}.lock", name], entries  # no temp or old siblings left
    mark = json.loads((cache / "checkpoints" / name / MARK).read_text())
    assert set(mark["files"]) >= {"model.safetensors", "config.json"}


def test_two_processes_materialising_at_once_leave_one_good_copy(tmp_path):
    prints = _materialise_twice_at_once("tiny", tmp_path)
    assert prints[0] == prints[1]
    _one_good_copy(tmp_path, "tiny-random-seed0")
    assert resolve_checkpoint("tiny", cache=tmp_path, random_weights=True).fingerprint() == prints[0]


@pytest.mark.slow
def test_two_processes_materialising_the_default_model_at_once(tmp_path):
    prints = _materialise_twice_at_once("smollm2-135m", tmp_path)
    assert prints[0] == prints[1]
    _one_good_copy(tmp_path, "smollm2-135m")


# ----------------------------------------------------------------------------------- reference store
def _store(cache: Path) -> ReferenceKey:
    key = ReferenceKey("ckpt", "tok", "text", window=8, stride=4, tokens=16, precision="fixed16")
    rng = np.random.default_rng(0)
    with reference_writer(key, cache, rows=6, vocab=11) as writer:
        writer.write(rng.normal(size=(6, 11)), rng.integers(0, 11, size=6))
        writer.finish({"reference": "test"})
    return key


def test_reference_store_damage_is_refused_with_the_fix(tmp_path):
    key = _store(tmp_path)
    store = ReferenceStore.open(key, tmp_path)
    assert store is not None and store.rows == 6
    logprobs = key.directory(tmp_path) / "logprobs.npy"
    full = logprobs.read_bytes()
    logprobs.write_bytes(full[:-3])
    with pytest.raises(ReferenceStoreCorrupt, match=r"logprobs.npy is \d+ bytes.*rm -r"):
        ReferenceStore.open(key, tmp_path)
    logprobs.write_bytes(full[:-1] + bytes([full[-1] ^ 1]))
    with pytest.raises(ReferenceStoreCorrupt, match=r"logprobs\.npy was modified"):
        ReferenceStore.open(key, tmp_path)
    logprobs.write_bytes(full)  # the original bytes again (new mtime): re-hashed and accepted
    assert ReferenceStore.open(key, tmp_path) is not None
