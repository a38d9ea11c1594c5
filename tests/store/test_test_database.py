"""The PostgreSQL test database is emptied of every table between tests."""

from __future__ import annotations

import psycopg
import pytest

from coplane.store import open_store
from tests.conftest import DERIVED_AND_EVENTS


@pytest.mark.postgresql
def test_every_table_is_in_the_list_emptied_between_tests(pg_url: str) -> None:
    open_store(pg_url, pool_size=1).close()  # its migrations: every table exists
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ).fetchall()
    tables = {name for (name,) in rows} - {"schema_migrations"}
    emptied = {t.strip() for t in DERIVED_AND_EVENTS.split(",")}
    assert tables - emptied == set()
