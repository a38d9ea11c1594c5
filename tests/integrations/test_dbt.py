"""The dbt collector: a real dbt-core + dbt-duckdb project built, then ingested into a real server.

The project, written once per module: two seeds' worth of data, models chained by ref()
(raw_orders -> stg_orders -> orders -> customer_totals), a model that reads a source, a
model that fails and one downstream of it that dbt skips, passing tests, a failing test (on
a model nothing depends on, or `dbt build` would skip what does), a warning test (severity
warn), a test dbt skips, and two sources with freshness rules whose
tables an on-run-start hook creates (one loaded now, one three hours ago).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from coplane.cli import app
from coplane.integrations.dbt.artifacts import (
    ArtifactError,
    asset_id,
    event_id,
    parse_manifest,
    parse_run_results,
    parse_sources,
    translate,
)
from coplane.integrations.dbt.ingest import rewritten, stamps, target_dir
from tests.conftest import LiveServer, sqlite_server
from tests.venvs import program_venv

pytestmark = pytest.mark.slow

runner = CliRunner()
# openlineage-dbt brings `dbt-ol`, the OpenLineage wrapper, compared with `coplane dbt ingest`
DBT_REQUIREMENTS = ("dbt-core>=1.8,<1.12", "dbt-duckdb>=1.8,<1.12", "openlineage-dbt>=1.30,<2")
PIPELINE = "dbt.shop"

PROJECT_FILES = {
    "dbt_project.yml": """
        name: shop
        version: "1.0"
        config-version: 2
        profile: shop
        on-run-start:
          - "create schema if not exists landing"
          - "create table if not exists landing.customers as
             select 'alice' as name, now() as loaded_at"
          - "create table if not exists landing.events as
             select 1 as id, now() - interval 3 hour as loaded_at"
    """,
    "seeds/raw_orders.csv": """
        id,customer,amount,status
        1,alice,10,placed
        2,bob,20,shipped
        3,,30,placed
    """,
    "models/stg_orders.sql": "select id, customer, amount, status from {{ ref('raw_orders') }}",
    "models/orders.sql": """
        select o.id, o.customer, o.amount, o.status, c.name is not null as known_customer
        from {{ ref('stg_orders') }} o
        left join {{ source('landing', 'customers') }} c on o.customer = c.name
    """,
    "models/customer_totals.sql": """
        {{ config(materialized='table') }}
        select customer, sum(amount) as total from {{ ref('orders') }} group by customer
    """,
    "models/stg_events.sql": "select id, loaded_at from {{ source('landing', 'events') }}",
    "models/broken.sql": "select no_such_column from {{ ref('stg_orders') }}",
    "models/after_broken.sql": "select * from {{ ref('broken') }}",
    "models/schema.yml": """
        version: 2
        sources:
          - name: landing
            schema: landing
            loaded_at_field: loaded_at
            freshness:
              warn_after: {count: 1, period: hour}
              error_after: {count: 30, period: day}
            tables:
              - name: customers
              - name: events
        models:
          - name: stg_orders
            columns:
              - name: id
                data_tests: [unique, not_null]
              - name: status
                data_tests:
                  - accepted_values:
                      values: ['placed']
                      config:
                        severity: warn
          - name: customer_totals
            columns:
              - name: customer
                data_tests: [not_null]
          - name: after_broken
            columns:
              - name: no_such_column
                data_tests: [not_null]
    """,
    "tests/assert_amounts_positive.sql": "select * from {{ ref('orders') }} where amount <= 0",
}


@dataclass
class Project:
    root: Path
    profiles: Path
    target: Path  # `dbt build`'s artifacts, with `dbt source freshness`'s sources.json
    invocation_id: str  # of `dbt build`
    env: dict[str, str]


def dbt_installed() -> Path:
    """The `dbt` executable of its own test virtualenv (see tests/venvs.py)."""
    return program_venv("dbt", DBT_REQUIREMENTS) / "bin" / "dbt"


DBT = dbt_installed  # resolved when the first test needs it


def dbt(project: Path, profiles: Path, env: dict[str, str], *args: str) -> int:
    done = subprocess.run(
        [str(DBT()), *args, "--project-dir", str(project), "--profiles-dir", str(profiles)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout.decode() + done.stderr.decode()
    return done.returncode


def write_project(root: Path) -> Path:
    """The project's files under `root`, with a profile whose database is there; the
    profiles directory."""
    for name, text in PROJECT_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).strip() + "\n")
    profiles = root / "profiles"
    profiles.mkdir()
    profile = {
        "shop": {
            "target": "dev",
            "outputs": {"dev": {"type": "duckdb", "path": str(root / "dev.duckdb"), "threads": 1}},
        }
    }
    (profiles / "profiles.yml").write_text(json.dumps(profile))  # JSON is YAML
    return profiles


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The project, built with `dbt build` and checked with `dbt source freshness`."""
    root = tmp_path_factory.mktemp("shop")
    profiles = write_project(root)
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1",
           "COPLANE_DBT": str(DBT())}  # fmt: skip
    assert dbt(root, profiles, env, "build") == 1  # the failing test and model
    # keep the build's artifacts apart: `dbt source freshness` rewrites manifest.json, and
    # the `coplane dbt run` test below runs dbt in the project again
    target = root / "build-target"
    shutil.copytree(root / "target", target)
    assert dbt(root, profiles, env, "source", "freshness") == 0  # a warning is not an error
    shutil.copy(root / "target" / "sources.json", target / "sources.json")
    invocation = json.loads((target / "run_results.json").read_text())["metadata"]["invocation_id"]
    return Project(root, profiles, target, invocation, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real `coplane server` on SQLite for the module."""
    with sqlite_server(tmp_path_factory.mktemp("dbt-server")) as live:
        yield live


@pytest.fixture(scope="module")
def ingested(project: Project, server: LiveServer) -> str:
    """The output of the first `coplane dbt ingest` of the project's artifacts."""
    result = runner.invoke(app, ["dbt", "ingest", str(project.target), "--server", server.url])
    assert result.exit_code == 0, result.output
    return result.output


def get(server: LiveServer, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def the_run(server: LiveServer, invocation_id: str) -> dict[str, Any]:
    runs = get(server, "/api/runs", pipeline=PIPELINE)["runs"]
    [run] = [r for r in runs if r["run_key"] == invocation_id]
    detail: dict[str, Any] = get(server, f"/api/runs/{run['id']}")
    return detail


def asset(name: str, schema: str = "main") -> str:
    return f"duckdb://dev.{schema}.{name}"


def failed_checks(server: LiveServer, resource: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = get(
        server, "/api/events", event="check.failed", resource=resource
    )["events"]
    return events


def event_count(server: LiveServer) -> int:
    return len(get(server, "/api/events", limit=1000)["events"])


def test_the_invocation_is_a_pipeline_run_with_a_child_run_per_node(
    project: Project, server: LiveServer, ingested: str
) -> None:
    run = the_run(server, project.invocation_id)
    assert run["state"] == "failed" and run["source"] == "dbt"
    assert "model.shop.broken (error)" in run["error"]
    assert "test.shop.not_null_customer_totals_customer" in run["error"]
    assert run["started"] <= run["ended"]
    tasks = {t["pipeline"].removeprefix(f"{PIPELINE}."): t for t in run["tasks"]}
    assert set(tasks) == {
        "seed.shop.raw_orders",
        "model.shop.stg_orders",
        "model.shop.orders",
        "model.shop.customer_totals",
        "model.shop.stg_events",
        "model.shop.broken",
        "model.shop.after_broken",
    }
    assert tasks["model.shop.orders"]["state"] == "completed"
    assert tasks["model.shop.orders"]["run_key"] == f"{project.invocation_id}:model.shop.orders"
    assert tasks["model.shop.orders"]["started"] <= tasks["model.shop.orders"]["ended"]
    assert tasks["seed.shop.raw_orders"]["state"] == "completed"
    assert tasks["model.shop.broken"]["state"] == "failed"
    assert "no_such_column" in tasks["model.shop.broken"]["error"]
    assert tasks["model.shop.after_broken"]["state"] == "cancelled"
    assert all(t["parent_run"] == run["id"] for t in run["tasks"])
    assert f"`dbt build` invocation {project.invocation_id} failed" in ingested
    assert "7 node runs" in ingested


def test_lineage_follows_refs_and_sources(server: LiveServer, ingested: str) -> None:
    graph = get(server, "/api/lineage")
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    task = f"{PIPELINE}.model.shop."
    # seed -> stg_orders -> orders -> customer_totals, through each relation
    assert (f"{PIPELINE}.seed.shop.raw_orders", asset("raw_orders")) in edges
    assert (asset("raw_orders"), f"{task}stg_orders") in edges
    assert (f"{task}stg_orders", asset("stg_orders")) in edges
    assert (asset("stg_orders"), f"{task}orders") in edges
    assert (f"{task}orders", asset("orders")) in edges
    assert (asset("orders"), f"{task}customer_totals") in edges
    # sources are inputs like any relation
    assert (asset("customers", "landing"), f"{task}orders") in edges
    assert (asset("events", "landing"), f"{task}stg_events") in edges
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert nodes[asset("orders")]["kind"] == "asset"
    assert nodes[f"{task}orders"]["kind"] == "task"
    assert nodes[f"{task}orders"]["parent"] == PIPELINE


def test_built_relations_are_updated_and_failed_ones_not(server: LiveServer, ingested: str) -> None:
    orders = get(server, f"/api/assets/{asset('orders')}")
    assert orders["last_updated"] is not None
    assert orders["producer"] == f"{PIPELINE}.model.shop.orders"
    broken = httpx.get(f"{server.url}/api/assets/{asset('broken')}", timeout=10)
    assert broken.status_code == 404 or broken.json()["last_updated"] is None


def test_tests_are_checks_on_the_relation_they_test(
    project: Project, server: LiveServer, ingested: str
) -> None:
    checks = {c["name"]: c for c in get(server, f"/api/assets/{asset('stg_orders')}")["checks"]}
    assert checks["unique_stg_orders_id"]["status"] == "passed"
    assert checks["not_null_stg_orders_id"]["status"] == "passed"
    assert checks["accepted_values_stg_orders_status__placed"]["status"] == "failed"
    [warned] = failed_checks(server, asset("stg_orders"))
    assert warned["payload"]["check"] == "accepted_values_stg_orders_status__placed"
    assert warned["payload"]["status"] == "warn" and warned["payload"]["severity"] == "warn"
    assert warned["payload"]["failures"] == 1
    totals = get(server, f"/api/assets/{asset('customer_totals')}")
    [check] = totals["checks"]
    assert (check["name"], check["status"]) == ("not_null_customer_totals_customer", "failed")
    assert check["message"] == "Got 1 result, configured to fail if != 0"
    [failed] = failed_checks(server, asset("customer_totals"))
    not_null = failed["payload"]
    assert not_null["status"] == "fail" and not_null["severity"] == "error"
    assert not_null["failures"] == 1 and not_null["column_name"] == "customer"
    assert not_null["model"] == "model.shop.customer_totals" and not_null["test"] == "not_null"
    # a singular test is on the first relation it reads
    singular = get(server, f"/api/assets/{asset('orders')}")["checks"]
    assert [(c["name"], c["status"]) for c in singular] == [("assert_amounts_positive", "passed")]
    # the test of a skipped model ran no query, so it says nothing
    skipped = get(server, "/api/events", related=PIPELINE, event="check.*", limit=1000)
    assert all("after_broken" not in e["payload"]["check"] for e in skipped["events"])
    # checks belong to the invocation's run
    run = the_run(server, project.invocation_id)
    assert sum(e["event"].startswith("check.") for e in run["events"]) == 5


def test_source_freshness_is_a_check_and_the_last_load(server: LiveServer, ingested: str) -> None:
    events = get(server, f"/api/assets/{asset('events', 'landing')}")
    [freshness] = events["checks"]
    assert freshness["name"] == "freshness" and freshness["status"] == "failed"
    assert "warn after 1 hour" in freshness["message"]
    assert events["last_updated"] is not None and events["producer"] is None
    customers = get(server, f"/api/assets/{asset('customers', 'landing')}")
    assert [(c["name"], c["status"]) for c in customers["checks"]] == [("freshness", "passed")]
    assert customers["last_updated"] > events["last_updated"]  # loaded 3 hours later
    [warned] = failed_checks(server, asset("events", "landing"))
    assert warned["payload"]["status"] == "warn" and warned["payload"]["severity"] == "warn"
    assert warned["payload"]["age_s"] >= 3 * 3600 - 60


def test_ingesting_the_same_artifacts_again_stores_nothing_new(
    project: Project, server: LiveServer, ingested: str
) -> None:
    before = event_count(server)
    again = runner.invoke(app, ["dbt", "ingest", str(project.target), "--server", server.url])
    assert again.exit_code == 0, again.output
    assert " 0 new, " in again.output
    assert event_count(server) == before


def broken_copy(project: Project, tmp_path: Path) -> Path:
    """A copy of the artifacts whose sources.json is of a new invocation (so it would store)."""
    target = tmp_path / "target"
    shutil.copytree(project.target, target)
    sources = json.loads((target / "sources.json").read_text())
    sources["metadata"]["invocation_id"] = "00000000-0000-4000-8000-000000000001"
    (target / "sources.json").write_text(json.dumps(sources))
    return target


def test_a_truncated_artifact_is_an_error_naming_its_line_and_sends_nothing(
    project: Project, server: LiveServer, ingested: str, tmp_path: Path
) -> None:
    target = broken_copy(project, tmp_path)
    text = (target / "run_results.json").read_text()
    (target / "run_results.json").write_text(text[: len(text) // 2])
    before = event_count(server)
    result = runner.invoke(app, ["dbt", "ingest", str(target), "--server", server.url])
    assert result.exit_code == 2
    assert f"{target / 'run_results.json'}:" in result.output
    assert "malformed JSON" in result.output
    assert event_count(server) == before


def test_foreign_json_is_an_error_naming_the_file(
    project: Project, server: LiveServer, ingested: str, tmp_path: Path
) -> None:
    target = broken_copy(project, tmp_path)
    (target / "manifest.json").write_text('{"hello": 1}')
    before = event_count(server)
    result = runner.invoke(app, ["dbt", "ingest", str(target), "--server", server.url])
    assert result.exit_code == 2
    assert f"{target / 'manifest.json'}: not a dbt manifest" in result.output
    assert event_count(server) == before
    missing = runner.invoke(app, ["dbt", "ingest", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such directory" in missing.output


def test_dbt_run_passes_the_exit_code_through_and_reports_the_invocation(
    project: Project, server: LiveServer, ingested: str
) -> None:
    args = [
        "run",
        "--select",
        "broken",
        "--project-dir",
        str(project.root),
        "--profiles-dir",
        str(project.profiles),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "coplane", "dbt", "run", "--", *args],
        env={**project.env, "COPLANE_URL": server.url},
        capture_output=True,
        timeout=300,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert b"no_such_column" in done.stdout  # dbt's own output passes through
    invocation = json.loads((project.root / "target" / "run_results.json").read_text())
    invocation_id = invocation["metadata"]["invocation_id"]
    assert f"coplane: {PIPELINE}: `dbt run` invocation {invocation_id} failed" in stderr
    run = the_run(server, invocation_id)
    assert run["state"] == "failed"
    assert [t["pipeline"] for t in run["tasks"]] == [f"{PIPELINE}.model.shop.broken"]


def test_dbt_run_reports_nothing_when_dbt_writes_no_results(
    project: Project, server: LiveServer
) -> None:
    before = event_count(server)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coplane",
            "dbt",
            "run",
            "--",
            "--no-such-flag",
            "--project-dir",
            str(project.root),
        ],
        env={**project.env, "COPLANE_URL": server.url},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2  # dbt's usage error
    assert b"nothing reported" in done.stderr
    assert event_count(server) == before


def lineage_edges(server: LiveServer) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in get(server, "/api/lineage")["edges"]}


def test_dbt_ol_gives_the_picture_coplane_dbt_ingest_gives(
    project: Project, tmp_path: Path
) -> None:
    """`dbt-ol build` sending to coplane, then `coplane dbt ingest` of the artifacts that same
    run wrote: one pipeline run, the same child runs and lineage, less what dbt-ol leaves
    out (seeds, skipped nodes)."""
    root = tmp_path / "shop"
    profiles = write_project(root)
    with sqlite_server(tmp_path) as live:
        env = {
            **project.env,
            "PATH": f"{DBT().parent}{os.pathsep}{os.environ.get('PATH', '')}",  # dbt-ol runs dbt
            "OPENLINEAGE_URL": live.url,
            "OPENLINEAGE_ENDPOINT": "api/v1/lineage",
            "OPENLINEAGE_NAMESPACE": "dev",
        }
        done = subprocess.run(
            [str(DBT().parent / "dbt-ol"), "build", "--project-dir", str(root),
             "--profiles-dir", str(profiles)],
            env=env, cwd=root, capture_output=True, timeout=300,
        )  # fmt: skip
        output = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 1, output  # the failing test and model, as `dbt build`
        assert "Emitted" in output, output
        target = root / "target"
        manifest = parse_manifest((target / "manifest.json").read_bytes())
        results = parse_run_results((target / "run_results.json").read_bytes())
        invocation = results.metadata.invocation_id
        assert invocation is not None
        # what `coplane dbt ingest` of these artifacts makes, and what dbt-ol cannot know:
        # it reports no seeds and no skipped nodes
        expected = translate(manifest, results).events
        tasks = {e["resource"]["id"] for e in expected if e["resource"].get("kind") == "task"}
        edges: set[tuple[str, str]] = set()
        for e in expected:
            if e["resource"].get("kind") == "task":
                for r in e["related"]:
                    if r["role"] == "input":
                        edges.add((r["id"], e["resource"]["id"]))
                    elif r["role"] == "output":
                        edges.add((e["resource"]["id"], r["id"]))
        seed = f"{PIPELINE}.seed.shop.raw_orders"
        left_out = {seed, f"{PIPELINE}.model.shop.after_broken"}
        # ... and no seed as an input
        stg_orders = f"{PIPELINE}.model.shop.stg_orders"
        left_out_edges = {e for e in edges if left_out & set(e)} | {
            (asset("raw_orders"), stg_orders)
        }

        run = the_run(live, invocation)  # the same pipeline and run key
        assert run["state"] == "failed" and run["source"] == "dbt"
        assert {t["pipeline"] for t in run["tasks"]} == tasks - left_out
        by_key = {t["run_key"]: t for t in run["tasks"]}
        assert by_key[f"{invocation}:model.shop.orders"]["state"] == "completed"
        assert by_key[f"{invocation}:model.shop.broken"]["state"] == "failed"
        assert all(t["parent_run"] == run["id"] for t in run["tasks"])
        assert lineage_edges(live) == edges - left_out_edges
        checks = get(live, f"/api/assets/{asset('stg_orders')}")["checks"]
        assert {c["name"]: c["status"] for c in checks} == {
            "unique_stg_orders_id": "passed",
            "not_null_stg_orders_id": "passed",
            "accepted_values_stg_orders_status__placed": "failed",
        }

        # the artifacts of the same run merge into that run: no second one
        ingest = runner.invoke(app, ["dbt", "ingest", str(target), "--server", live.url])
        assert ingest.exit_code == 0, ingest.output
        runs = get(live, "/api/runs", pipeline=PIPELINE)["runs"]
        assert [r["run_key"] for r in runs] == [invocation]
        merged = the_run(live, invocation)
        assert merged["id"] == run["id"]
        assert {t["pipeline"] for t in merged["tasks"]} == tasks
        assert len(merged["tasks"]) == len(tasks)  # one child run per node, not two
        assert lineage_edges(live) == edges


# artifacts.py on small hand-written artifacts

SCHEMA = "https://schemas.getdbt.com/dbt/{}/v12.json"
GENERATED = "2026-11-24T02:00:10.000000Z"


def manifest_doc() -> dict[str, Any]:
    def model(name: str, *deps: str, materialized: str = "table") -> dict[str, Any]:
        return {
            "resource_type": "model",
            "name": name,
            "package_name": "p",
            "database": "DW",
            "schema": "Analytics",
            "alias": name.upper(),
            "depends_on": {"nodes": list(deps), "macros": ["macro.dbt.x"]},
            "config": {"materialized": materialized, "tags": []},
        }

    return {
        "metadata": {
            "dbt_schema_version": SCHEMA.format("manifest"),
            "project_name": "p",
            "adapter_type": "snowflake",
            "generated_at": GENERATED,
        },
        "nodes": {
            "model.p.a": model("a", "source.p.raw.t"),
            "model.p.eph": model("eph", "model.p.a", materialized="ephemeral"),
            "model.p.b": model("b", "model.p.eph"),
            "test.p.not_null_b_id.1": {
                "resource_type": "test",
                "name": "not_null_b_id",
                "column_name": "id",
                "attached_node": "model.p.b",
                "depends_on": {"nodes": ["model.p.b"]},
                "config": {"severity": "ERROR"},
                "test_metadata": {"name": "not_null"},
            },
        },
        "sources": {
            "source.p.raw.t": {
                "resource_type": "source",
                "name": "t",
                "source_name": "raw",
                "database": "DW",
                "schema": "RAW",
                "identifier": "T_1",
            },
        },
    }


def run_results_doc(which: str = "build") -> dict[str, Any]:
    def timing(start: str, end: str) -> list[dict[str, str]]:
        return [
            {
                "name": "compile",
                "started_at": f"2026-11-24T02:00:0{start}Z",
                "completed_at": f"2026-11-24T02:00:0{start}Z",
            },
            {
                "name": "execute",
                "started_at": f"2026-11-24T02:00:0{start}.5Z",
                "completed_at": f"2026-11-24T02:00:0{end}Z",
            },
        ]

    return {
        "metadata": {
            "dbt_schema_version": SCHEMA.format("run-results").replace("v12", "v6"),
            "generated_at": GENERATED,
            "invocation_id": "inv-1",
        },
        "elapsed_time": 9.0,
        "args": {"which": which},
        "results": [
            {
                "unique_id": "model.p.a",
                "status": "success",
                "timing": timing("2", "3"),
                "adapter_response": {"rows_affected": 7},
            },
            {"unique_id": "model.p.b", "status": "success", "timing": timing("4", "5")},
            {"unique_id": "test.p.not_null_b_id.1", "status": "skipped", "timing": []},
        ],
    }


def translated(which: str = "build") -> list[dict[str, Any]]:
    manifest = parse_manifest(json.dumps(manifest_doc()).encode())
    results = parse_run_results(json.dumps(run_results_doc(which)).encode())
    return translate(manifest, results).events


def test_assets_are_lower_case_and_ephemeral_models_are_read_through() -> None:
    assert asset_id("duckdb", "Dev", "Main", "Orders") == "duckdb://dev.main.orders"
    assert asset_id("spark", None, "s", "t") == "spark://s.t"
    events = translated()
    [b_done] = [
        e
        for e in events
        if e["event"] == "run.completed" and e["resource"]["id"] == "dbt.p.model.p.b"
    ]
    lineage = {(r["role"], r["id"]) for r in b_done["related"]}
    assert ("input", "snowflake://dw.analytics.a") in lineage  # through eph
    assert ("output", "snowflake://dw.analytics.b") in lineage
    [a_done] = [
        e
        for e in events
        if e["event"] == "run.completed" and e["resource"]["id"] == "dbt.p.model.p.a"
    ]
    assert ("input", "snowflake://dw.raw.t_1") in {(r["role"], r["id"]) for r in a_done["related"]}
    assert a_done["occurred"] == "2026-11-24T02:00:03+00:00"  # execute's end
    [a_start] = [
        e
        for e in events
        if e["event"] == "run.started" and e["resource"]["id"] == "dbt.p.model.p.a"
    ]
    assert a_start["occurred"] == "2026-11-24T02:00:02.500000+00:00"  # execute's start
    [updated] = [
        e
        for e in events
        if e["event"] == "asset.updated" and e["resource"]["id"] == "snowflake://dw.analytics.a"
    ]
    assert updated["payload"]["rows_affected"] == 7
    assert updated["id"] == event_id("inv-1", "model.p.a", "asset.updated")
    # the skipped test says nothing; the pipeline run spans the invocation
    assert not [e for e in events if e["event"].startswith("check.")]
    pipeline = [e for e in events if e["resource"]["id"] == "dbt.p"]
    assert [(e["event"], e["occurred"]) for e in pipeline] == [
        ("run.started", "2026-11-24T02:00:01+00:00"),  # generated_at - elapsed_time
        ("run.completed", "2026-11-24T02:00:10+00:00"),
    ]
    assert translated() == events  # deterministic, ids included


def test_results_of_commands_that_build_nothing_are_not_reported() -> None:
    manifest = parse_manifest(json.dumps(manifest_doc()).encode())
    results = parse_run_results(json.dumps(run_results_doc("compile")).encode())
    t = translate(manifest, results)
    assert t.events == [] and t.state is None
    assert "`dbt compile`" in t.notes[0]


def test_malformed_and_foreign_artifacts_name_the_file_line_and_column() -> None:
    with pytest.raises(ArtifactError) as info:
        parse_run_results(b'{\n  "metadata": {\n    "x": 1,,\n', "t/run_results.json")
    assert (info.value.line, info.value.column) == (3, 12)
    assert str(info.value).startswith("t/run_results.json:3:12: malformed JSON")
    with pytest.raises(ArtifactError, match=r"^t/m\.json: not a dbt manifest: .*run-results"):
        parse_manifest(json.dumps(run_results_doc()).encode(), "t/m.json")
    with pytest.raises(ArtifactError, match="missing required field `metadata`"):
        parse_sources(b'{"hello": 1}', "sources.json")
    with pytest.raises(ArtifactError, match="is empty"):
        parse_manifest(b"", "manifest.json")


def test_freshness_warn_is_a_failed_check_and_the_load_an_update() -> None:
    manifest = parse_manifest(json.dumps(manifest_doc()).encode())
    sources = parse_sources(
        json.dumps(
            {
                "metadata": {
                    "dbt_schema_version": SCHEMA.format("sources").replace("v12", "v3"),
                    "generated_at": GENERATED,
                    "invocation_id": "inv-2",
                },
                "results": [
                    {
                        "unique_id": "source.p.raw.t",
                        "status": "warn",
                        "max_loaded_at": "2026-11-23T20:00:00+00:00",
                        "snapshotted_at": "2026-11-24T02:00:05+00:00",
                        "max_loaded_at_time_ago_in_s": 21605.0,
                        "criteria": {
                            "warn_after": {"count": 1, "period": "hour"},
                            "error_after": {"count": None, "period": None},
                        },
                    }
                ],
            }
        ).encode()
    )
    events = translate(manifest, sources=sources).events
    assert [(e["event"], e["occurred"]) for e in events] == [
        ("asset.updated", "2026-11-23T20:00:00+00:00"),
        ("check.failed", "2026-11-24T02:00:05+00:00"),
    ]
    check = events[1]["payload"]
    assert check["check"] == "freshness" and check["severity"] == "warn"
    assert check["message"] == (
        "last loaded at 2026-11-23T20:00:00+00:00, 6 h 0 min before the check (warn after 1 hour)"
    )


def test_dbt_run_finds_the_target_directory_and_the_files_dbt_rewrote(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert target_dir(["build"], tmp_path, env) == tmp_path / "target"
    assert target_dir(["build", "--project-dir", "p"], tmp_path, env) == tmp_path / "p/target"
    assert target_dir(["build", "--target-path=out"], tmp_path, env) == tmp_path / "out"
    (tmp_path / "dbt_project.yml").write_text("name: x\ntarget-path: built\n")
    assert target_dir(["run"], tmp_path, env) == tmp_path / "built"
    assert target_dir(["run"], tmp_path, {"DBT_TARGET_PATH": "/abs"}) == Path("/abs")
    before = stamps(tmp_path)
    (tmp_path / "sources.json").write_text("{}")
    time.sleep(0.01)
    assert rewritten(before, stamps(tmp_path)) == ["sources.json"]
