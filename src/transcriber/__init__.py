"""transcriber: recorded phone calls in, text out, nothing lost."""

from __future__ import annotations

__version__ = "0.1.0"
