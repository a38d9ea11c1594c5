"""Masking of credentials in text coplane shows or writes: log records, stored errors, CLI output.

Every credential coplane learns (channel tokens and URLs from the config file, stored secrets
when they are decrypted, COPLANE_SECRET_KEY, the database password) is registered here, and
`mask()` replaces each occurrence with `****`. API keys (`cpl_…`) and ping keys (`cpk_…`) are
recognised by their shape, since coplane never holds them in clear, and so is the password of a
URL (`scheme://user:password@host`).

`install()` makes every log record of the process masked, whichever handler or formatter
writes it, uvicorn's access log included.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "****"
MIN_LENGTH = 6  # shorter values are not masked: masking "abc" would garble every "abc"

# keys by shape: the prefix stays (it is what `coplane keys list` shows), the rest goes. No
# word boundary before the prefix: a key may follow a letter or digit, as in an URL-encoded
# query (`next=/x%3Fkey%3Dcpl_…`).
_SHAPES = re.compile(r"(cp[lk]_)[A-Za-z0-9_\-]{6,}")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@", re.IGNORECASE)


class Masker:
    """The credentials to hide, and the text without them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        """Hide these values from now on (None, empty and too-short values are ignored)."""
        new = {v for v in values if v and len(v) >= MIN_LENGTH} - self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            # longest first, so that a value containing another is hidden whole
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        """`text` with every known credential replaced by ****.

        Keys are masked by their shape first: a known value that happens to occur inside a
        key would otherwise split it, and the shape would no longer match the rest of it.
        """
        text = _SHAPES.sub(lambda m: m.group(1) + MASK, text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)


masker = Masker()


def mask(text: str) -> str:
    """`text` without the process's known credentials."""
    return masker.mask(text)


class _MaskedRecord(logging.LogRecord):
    """A log record whose message, arguments and formatted traceback are masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.args, tuple):
            # some formatters (uvicorn's access log) read the arguments, not the message
            self.args = tuple(masker.mask(a) if isinstance(a, str) else a for a in self.args)

    def getMessage(self) -> str:
        return masker.mask(super().getMessage())

    @property
    def exc_text(self) -> str | None:
        return self._exc_text

    @exc_text.setter
    def exc_text(self, value: str | None) -> None:
        # the formatter caches the formatted traceback here: mask it on the way in
        self._exc_text = masker.mask(value) if value else value


def install() -> None:
    """Mask every log record the process makes from now on (idempotent)."""
    if logging.getLogRecordFactory() is not _MaskedRecord:
        logging.setLogRecordFactory(_MaskedRecord)
