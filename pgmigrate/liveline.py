"""The line that shows a long statement's progress (``pgmigrate.live``) on the command's output.

On a terminal (``stdout.isatty()``) it is one line redrawn in place: a carriage return and
ECMA-48's "erase in line" (``ESC [ K``) before each new text. While Django's
``  Applying app.0002_x...`` line is open (its ``OK`` still to come), the live text follows
it on the same line, and erasing puts that line back as it was, so ``OK`` lands where Django
meant it. Everything else the command prints erases the live line first (``erase``, under
the command's output lock). Elsewhere (a pipe, a file, a CI log) it only prints plain lines,
through the command's ``notice`` (which prints nothing at ``-v 0``): never a control
character.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

#: Carriage return, then erase from the cursor to the end of the line (ECMA-48 EL, ``CSI K``).
ERASE = "\r\x1b[K"
#: Width assumed when the terminal does not tell its own (columns).
DEFAULT_WIDTH = 80


class LiveLine:
    """A line of live progress on ``out`` (Django's ``OutputWrapper`` of the command's stdout).

    Args:
        out: Where the line is drawn; in place only if ``out.isatty()``.
        lock: The command's output lock: held around every write of the command, so that
            the live line and the other output never interleave.
        verbosity: The command's ``-v``; below 1 nothing is printed.
        notice: Prints a plain line (the command's ``notice``, which takes ``lock``).
    """

    def __init__(
        self,
        out: Any,
        *,
        lock: threading.Lock,
        verbosity: int,
        notice: Callable[[str], None],
    ) -> None:
        self._out = out
        self._lock = lock
        self._notice = notice
        #: Whether the line is drawn in place (a terminal, ``-v 1`` or more).
        self.in_place = verbosity >= 1 and out.isatty()
        #: Whether plain lines are printed (not a terminal, ``-v 1`` or more).
        self.plain = verbosity >= 1 and not self.in_place
        #: The text of the line Django left open (``  Applying app.0002_x...``), or "".
        self.prefix = ""
        self._drawn = False

    def _width(self) -> int:
        # Django's OutputWrapper keeps the stream in ``_out`` (4.2's has no ``fileno`` of its own).
        stream = getattr(self._out, "_out", self._out)
        try:
            return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
        except (AttributeError, OSError, ValueError):
            return DEFAULT_WIDTH

    def update(self, text: str, *, current: Callable[[], bool]) -> None:
        """Draw ``text`` (printable, one line) in place of the last one, on a terminal,
        cut to the terminal's width (a wrapped line could not be redrawn); nothing unless
        ``current()``, asked with the output lock held, nor while the line Django left
        open is as wide as the terminal (it has wrapped: a carriage return goes back to
        its last row only)."""
        if not self.in_place:
            return
        with self._lock:
            if not current():
                return
            width = self._width() - 1  # the last column would wrap on some terminals
            if len(self.prefix) >= width:
                return
            line = f"{self.prefix} {text}" if self.prefix else text
            if len(line) > width:
                line = line[: max(0, width - 3)] + "..."
            self._out.write(ERASE + line, ending="")
            self._out.flush()
            self._drawn = True

    def say(self, text: str, *, current: Callable[[], bool]) -> None:
        """Print ``text`` as a plain line, unless on a terminal (or at ``-v 0``) or no
        longer ``current()``."""
        if self.plain and current():
            self._notice(text)

    def erase(self) -> None:
        """Take the live line away, putting back the line Django left open. The caller
        holds the output lock (the command does, before it writes anything)."""
        if self._drawn:
            self._out.write(ERASE + self.prefix, ending="")
            self._out.flush()
            self._drawn = False

    def clear(self) -> None:
        """``erase``, taking the output lock (the watcher, when a statement has ended)."""
        if self._drawn:
            with self._lock:
                self.erase()
