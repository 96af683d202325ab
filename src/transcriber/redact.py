"""Keep secrets out of logs, error messages and CLI output."""

from __future__ import annotations

import re

# The password runs to the last "@" of the URL (SQLAlchemy accepts "/" and "@" in it).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` inside free text."""
    return redact_url(text)
