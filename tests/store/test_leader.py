"""Leadership of SLA evaluation: one holder of the advisory lock; notifications parsed."""

from __future__ import annotations

import pytest

from coplane.store.leader import Leadership, parse_notification


def test_sqlite_always_leads() -> None:
    lead = Leadership("sqlite:///x.sqlite", on_lead=lambda: None, on_notify=lambda _: None)
    assert lead.is_leader and lead.try_lead()


@pytest.mark.postgresql
def test_one_session_leads_and_the_other_takes_over_when_it_ends(pg_url: str) -> None:
    first = Leadership(pg_url, on_lead=lambda: None, on_notify=lambda _: None)
    second = Leadership(pg_url, on_lead=lambda: None, on_notify=lambda _: None)
    try:
        assert first.try_lead()
        assert not second.try_lead()
        first.stop()  # its session ends, and the lock with it
        assert second.try_lead()
    finally:
        first.stop()
        second.stop()


def test_an_unreachable_database_is_not_leadership_and_not_an_error() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    lead = Leadership(url, on_lead=lambda: None, on_notify=lambda _: None)
    assert not lead.try_lead()
    assert not lead.is_leader


@pytest.mark.parametrize(
    ("payload", "named"),
    [('["wh.sales", "p.load"]', {"wh.sales", "p.load"}), ("*", None), ('{"x": 1}', None),
     ("[1, 2]", None), ("", None)],
)  # fmt: skip
def test_notifications_name_resources_or_everything(payload: str, named: set[str] | None) -> None:
    assert parse_notification(payload) == named
