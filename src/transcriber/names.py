"""File names that are not text: what to store and show, and how to get the real name back.

Files on SMB shares often have Latin-1 names, which Python sees as ``str`` with surrogate
escapes: fine for ``open``, fatal for the database, a log line or a broker message. The
readable form goes everywhere; the exact bytes are kept beside it for opening the file.
"""

from __future__ import annotations

import os
import unicodedata

# Characters that would break a log line or a table: controls, lone surrogates, line and paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode escapes it
        return f"\\x{code - 0xDC00:02x}"
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` fit for one log line or a database column: never a surrogate, never a line break.

    Bytes of a file name that are not UTF-8 show as ``\\xfc``, control characters as ``\\n`` or ``\\x07``.
    """
    if text.isprintable():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNPRINTABLE else c for c in text)


def _decode_name(raw: bytes) -> str:
    """One path component as text: UTF-8, else Windows-1252 (what SMB shares hold), else Latin-1 (never fails)."""
    for codec in ("utf-8", "cp1252"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def readable_path(path: str) -> str:
    """The path as text to store and show: ``Anruf M\\xfcller.m4a`` (Latin-1 bytes) reads ``Anruf Müller.m4a``.

    Each component is decoded on its own (a UTF-8 folder may hold a Latin-1 name); control
    characters are escaped (``\\n``). A path that is readable already is returned as it is.
    """
    if path.isprintable():
        return path
    parts = os.fsencode(path).split(os.sep.encode())
    return os.sep.join(printable(_decode_name(part)) for part in parts)


def path_bytes(path: str) -> bytes | None:
    """The exact bytes of ``path`` when ``readable_path`` had to change it, else ``None``."""
    return None if readable_path(path) == path else os.fsencode(path)


def real_path(stored_path: str, stored_bytes: bytes | None) -> str:
    """The path to open for a recording, from its ``file_path`` and ``file_path_bytes`` columns.

    ``stored_path`` is the readable form; where the name was not readable as it is, the
    exact bytes were kept and give the real name back (a ``str`` with surrogate escapes,
    which ``open``, ``os.stat`` and PyAV take).
    """
    return os.fsdecode(stored_bytes) if stored_bytes is not None else stored_path
