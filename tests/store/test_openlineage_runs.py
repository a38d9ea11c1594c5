"""The name of an OpenLineage run is the one its first claim stored; the cache only forgets."""

from __future__ import annotations

from datetime import UTC, datetime

from coplane.store import Conn
from coplane.store.openlineage_runs import RunName, RunNameCache, claim_run_names

NOW = datetime(2026, 11, 23, 19, 28, tzinfo=UTC)
DAG = RunName("airflow.feas.feas_ok_dag", "manual__1", "feas_ok_dag", "pipeline")
FALLBACK = RunName("feas/feas_ok_dag", "01a209e1-abfd-71b2-ad6f-056e55404340", "x", "pipeline")


def test_the_first_claim_of_a_run_id_is_its_name_for_good(conn: Conn) -> None:
    assert claim_run_names(conn, {"r1": DAG}, [], NOW) == {"r1": DAG}
    # a later claim, or a mere look-up, gets the stored name
    assert claim_run_names(conn, {"r1": FALLBACK}, ["r2"], NOW) == {"r1": DAG}
    assert claim_run_names(conn, {}, ["r1", "r2"], NOW) == {"r1": DAG}
    assert claim_run_names(conn, {}, [], NOW) == {}


def test_the_cache_keeps_its_newest_names_within_its_bound() -> None:
    cache = RunNameCache(size=10)
    for i in range(100):
        cache.remember({f"r{i}": DAG})
    assert cache.get("r99") == DAG
    assert cache.get("r0") is None  # forgotten: read from the table again
