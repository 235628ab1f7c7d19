"""Hold back what native libraries print on file descriptor 2 while a model loads or converts.

LiteRT logs a dozen INFO/WARNING lines (accelerator registry, vendor plugins it cannot find, the
XNNPACK delegate) straight to fd 2 when a model is compiled; that would bury a command's own output
and break its "one line on stderr" error contract. ``captured_native_stderr`` redirects fd 2 to a
temporary file for the duration of the block and returns the text, so a caller can attach it to an
error when loading or converting fails. Anything written to fd 2 inside the block (Python's
``sys.stderr`` too) is captured, so keep the block to the native call.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


class CapturedText:
    text: str = ""


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[CapturedText]:
    captured = CapturedText()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
