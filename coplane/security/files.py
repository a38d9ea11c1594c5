"""Credentials read from files, as Docker and Kubernetes mount secrets: `*_FILE` settings and
variables, `--password-file`, `--value-file`."""

from __future__ import annotations

from pathlib import Path


class UnreadableFile(ValueError):
    """A file that cannot be read; the message names it and says why, never its content."""


def reason(exc: OSError | UnicodeDecodeError) -> str:
    """Why a file could not be read, in a few words ("No such file or directory")."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    return exc.strerror or str(exc)


def read_secret_file(path: str | Path) -> str:
    """The file's text without its final line break (editors add one; a secret has none).

    UnreadableFile, naming the path, when it is missing, unreadable or not UTF-8 text.
    """
    try:
        return Path(path).read_text(encoding="utf-8").removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"cannot read {path}: {reason(exc)}") from None
