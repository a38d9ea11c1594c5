"""HTTP answers as IntegrationErrors, the same way for every channel that speaks plain HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from coplane.alerts.notifier import IntegrationError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # a slow channel must not hold the dispatcher


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def check_response(response: httpx.Response, service: str) -> None:
    """Raise IntegrationError for a response that is not a success.

    429, 408 and 5xx are transient (retried, after Retry-After when given); other 4xx mean
    the request or the credentials are wrong and repeating it cannot help, so they are
    permanent. A 403 carrying Retry-After or `x-ratelimit-remaining: 0` is GitHub's rate limit
    (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api), which
    is transient.
    """
    status = response.status_code
    if status < 400:
        return
    detail = response.text.strip()[:300] or response.reason_phrase
    message = f"{service} answered {status}: {detail}"
    wait = retry_after(response.headers)
    rate_limited = status == 429 or (
        status == 403 and (wait is not None or response.headers.get("x-ratelimit-remaining") == "0")
    )
    if rate_limited and wait is None and response.headers.get("x-ratelimit-reset"):
        try:
            reset = float(response.headers["x-ratelimit-reset"])
            wait = max(0.0, reset - datetime.now(UTC).timestamp())
        except ValueError:
            wait = None
    transient = rate_limited or status == 408 or status >= 500
    raise IntegrationError(message, permanent=not transient, retry_after=wait)


def request(
    client: httpx.Client, method: str, url: str, service: str, **kwargs: object
) -> httpx.Response:
    """Send one request; a network failure or a failing status becomes an IntegrationError."""
    try:
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        raise IntegrationError(f"{service} could not be reached: {exc}") from exc
    check_response(response, service)
    return response
