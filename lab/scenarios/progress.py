"""A live status line on a terminal; silent when output is not a terminal or CI=true."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        # sys.stderr as it is now, not as it was when this module was first imported.
        self.stream = stream or sys.stderr
        in_ci = os.environ.get("CI", "").lower() == "true"
        self.enabled = self.stream.isatty() and not in_ci if enabled is None else enabled
        self.started = time.monotonic()

    def update(self, text: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r\x1b[K{elapsed:6.1f}s  {text}")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
