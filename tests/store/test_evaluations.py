"""Stored SLA evaluations: newest first, pruned to the newest N per SLA, and what incidents
link to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from coplane.rules.facts import Breach, Evaluation
from coplane.store import Conn
from coplane.store.evaluations import (
    EvaluationRecord,
    evaluation_json,
    insert_sla_evaluations,
    list_sla_evaluations,
    prune_sla_evaluations,
)
from coplane.store.incidents import apply_evaluation, read_incident
from tests.store.test_incidents import make_sla

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def record(sla: str, minutes: int, evaluation: Evaluation | None = None) -> EvaluationRecord:
    evaluation = evaluation or Evaluation("ok", explanation=f"{sla} at {minutes}")
    at = T0 + timedelta(minutes=minutes)
    return EvaluationRecord(uuid.uuid4(), sla, at, evaluation, {"kind": "freshness", "n": minutes})


def test_listed_newest_first_as_json(conn: Conn) -> None:
    breach = Breach("k", T0, "late", window_start=T0 - timedelta(hours=1), resource="wh.a")
    insert_sla_evaluations(conn, [
        record("a", 0),
        record("a", 5, Evaluation("breached", [breach], T0 + timedelta(days=1), None, "late")),
        record("b", 9),
    ])  # fmt: skip
    newest, oldest = (evaluation_json(r) for r in list_sla_evaluations(conn, "a", 10))
    assert newest == {
        "id": newest["id"],
        "evaluated": (T0 + timedelta(minutes=5)).isoformat(),
        "status": "breached",
        "next_deadline": (T0 + timedelta(days=1)).isoformat(),
        "explanation": "late",
        "inputs": {"kind": "freshness", "n": 5},
        "breaches": [{"key": "k", "due": T0.isoformat(), "reason": "late",
                      "window_start": (T0 - timedelta(hours=1)).isoformat(),
                      "resource": "wh.a"}],
    }  # fmt: skip
    assert oldest["inputs"]["n"] == 0 and oldest["breaches"] == []
    assert len(list_sla_evaluations(conn, "a", 1)) == 1


def test_pruning_keeps_the_newest_and_those_of_open_incidents(conn: Conn) -> None:
    sla = make_sla()
    opening = record(sla.name, 0, Evaluation("breached", [Breach("k", T0, "late")]))
    insert_sla_evaluations(conn, [opening])
    [incident], _ = apply_evaluation(
        conn, sla, opening.evaluation, lambda _: [], T0, evaluation_id=opening.id
    )
    assert read_incident(conn, incident["id"])["evaluation_id"] == opening.id
    insert_sla_evaluations(conn, [record(sla.name, m) for m in range(1, 8)])
    insert_sla_evaluations(conn, [record("other", m) for m in range(1, 8)])
    prune_sla_evaluations(conn, [sla.name], keep=3)
    kept = [r["inputs"]["n"] for r in list_sla_evaluations(conn, sla.name, 100)]
    assert kept == [7, 6, 5, 0]  # the one that opened the open incident stays
    assert len(list_sla_evaluations(conn, "other", 100)) == 7  # not asked: untouched
    apply_evaluation(conn, sla, Evaluation("ok"), lambda _: [], T0 + timedelta(minutes=9))
    prune_sla_evaluations(conn, [sla.name], keep=3)
    assert [r["inputs"]["n"] for r in list_sla_evaluations(conn, sla.name, 100)] == [7, 6, 5]
