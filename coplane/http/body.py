"""Reading request bodies within the documented size limit, plain or gzip-compressed."""

from __future__ import annotations

import zlib

from fastapi import Request

from coplane.http.errors import ApiError

MAX_BODY_BYTES = 16 * 1024 * 1024  # API.md: at most 16 MiB per request (after decompression)
MAX_EVENTS = 10_000  # API.md: at most 10,000 events per request


def _too_large() -> ApiError:
    return ApiError(
        413, f"request body is larger than the limit of {MAX_BODY_BYTES} bytes (16 MiB)", ["body"]
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, decompressed: 413 past `limit`, 415 for an unknown encoding, 400 if corrupt."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip"):
        raise ApiError(
            415,
            f"Content-Encoding {encoding!r} is not supported: send identity or gzip",
            ["header", "content-encoding"],
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large()
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(bytes(raw), limit)
    return bytes(raw)


def _gunzip(data: bytes, limit: int) -> bytes:
    # Decompress in bounded steps so that a small bomb cannot expand past the limit in memory.
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    try:
        pending = data
        while pending:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise _too_large()
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise ApiError(400, "gzip body is truncated", ["body"])
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid gzip: {exc}", ["body"]) from exc
    return bytes(out)
