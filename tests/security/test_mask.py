"""Credentials are masked in log records and texts, whatever writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from coplane.security import mask
from coplane.security.mask import MASK, Masker
from coplane.slas.config import parse_config

TOKEN = "xoxb-9999-mask-me-please"


def test_known_values_key_shapes_and_url_passwords_are_masked() -> None:
    m = Masker()
    m.add(TOKEN, "abc", None, "")  # too short or empty: ignored
    text = (
        f"Slack said invalid_auth for {TOKEN}; key cpl_AbCdEfGh1234567890xyz; "
        "ping /ping/cpk_Zy0123456789abcdefghij/nightly; "
        "db postgresql://coplane:hunter2-pw@db:5432/coplane; abc stays"
    )
    assert m.mask(text) == (
        f"Slack said invalid_auth for {MASK}; key cpl_{MASK}; ping /ping/cpk_{MASK}/nightly; "
        f"db postgresql://coplane:{MASK}@db:5432/coplane; abc stays"
    )


def test_a_value_containing_another_is_masked_whole() -> None:
    m = Masker()
    m.add("secret-1", "secret-1-longer")
    assert m.mask("x secret-1-longer y secret-1") == f"x {MASK} y {MASK}"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What a plain handler on a fresh logger writes, with masking installed."""
    mask.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("coplane.test-mask")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def test_log_messages_arguments_and_tracebacks_are_masked(captured: io.StringIO) -> None:
    mask.masker.add(TOKEN)
    log = logging.getLogger("coplane.test-mask")
    log.warning("channel failed: %s", f"401 for token {TOKEN}")
    try:
        raise RuntimeError(f"the service echoed {TOKEN}")
    except RuntimeError:
        log.exception("sending failed")
    written = captured.getvalue()
    assert TOKEN not in written
    assert f"401 for token {MASK}" in written and f"the service echoed {MASK}" in written


def test_an_access_log_style_record_has_its_arguments_masked() -> None:
    # uvicorn's access formatter reads record.args, not the message
    mask.install()
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/ping/cpk_Zy0123456789abcdefghij/nightly", "1.1", 200),
        None,
    )
    assert isinstance(record.args, tuple)
    assert record.args[2] == f"/ping/cpk_{MASK}/nightly"


def test_a_known_value_inside_a_key_does_not_split_it() -> None:
    m = Masker()
    m.add("789abcdef")
    assert m.mask("/ping/cpk_Zy0123456789abcdefghij/x") == f"/ping/cpk_{MASK}/x"


def test_loading_a_config_registers_its_channel_credentials() -> None:
    value = "R0UTING-KEY-registered-on-load"
    parse_config(
        f"channels:\n  pd:\n    type: pagerduty\n    routing_key: {value}\n", "coplane.yaml"
    )
    assert mask.mask(f"PagerDuty refused {value}") == f"PagerDuty refused {MASK}"


def test_a_key_after_a_letter_or_digit_is_masked() -> None:
    m = Masker()
    logged = "GET /login?next=/x%3Fkey%3Dcpl_AbCdEfGh1234567890xyz HTTP/1.1; 7cpk_Zy0123456789ab"
    assert m.mask(logged) == f"GET /login?next=/x%3Fkey%3Dcpl_{MASK} HTTP/1.1; 7cpk_{MASK}"
