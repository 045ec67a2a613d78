"""Text that comes from the database or from users, made safe to print and to log.

A blocker's query text, its ``application_name``, a role name or a server's error message
can hold any character, among them terminal control sequences (``ESC ] 0 ; ... BEL`` sets
the terminal's title, ``ESC [ 2 J`` clears the screen) and line breaks that forge output
lines. ``printable`` shows such characters as escapes instead: ``ESC`` becomes the four
characters ``\\x1b``, a newline ``\\n``.
"""

from __future__ import annotations

import re

#: Characters shown as escapes: C0 controls, DEL, C1 controls, the Unicode line and
#: paragraph separators, the bidirectional formatting characters (they reorder what the
#: terminal shows) and lone surrogates (they cannot be encoded for output).
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object, *, keep: str = "") -> str:
    """``str(value)`` with its unsafe characters (see ``UNSAFE``) escaped.

    Args:
        value: Any object; ``None`` gives ``"None"``.
        keep: Characters to leave as they are, e.g. ``"\\n"`` for a message of
            pgmigrate's own whose lines are meant to be lines.

    Returns:
        The text, with each unsafe character shown as ``\\n``, ``\\r``, ``\\t``,
        ``\\xNN`` or ``\\uNNNN``. Backslashes are left alone, so the result is meant for
        reading, not for parsing back.
    """
    text = value if isinstance(value, str) else str(value)

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return char if char in keep else _escape(char)

    return UNSAFE.sub(escape, text)
