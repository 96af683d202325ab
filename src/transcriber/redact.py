"""Keep secrets out of logs, error messages and CLI output."""

from __future__ import annotations

import re

# The password runs to the last "@" of the URL (SQLAlchemy accepts "/" and "@" in it).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")
# Secrets passed as query parameters (libpq's ?password=, redis-py's ?password=, tokens and keys of
# cloud brokers): the value runs to the next "&", ";", "#" or blank.
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:[\w.\-]*?)(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|credential)"
    r"[\w.\-]*=)(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Return ``url`` with any password (in the user part or the query string) replaced by ``***``."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['name']}***" if m["value"] else m[0], masked)


def redact_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` and every ``?password=...`` inside free text."""
    return redact_url(text)
