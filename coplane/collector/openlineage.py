"""Translate OpenLineage RunEvents, DatasetEvents and JobEvents into coplane events."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from coplane.events.model import (
    Event,
    EventDecodeError,
    RelatedResource,
    Resource,
    check_occurred,
    validation_error,
)
from coplane.events.names import (
    ASSET_DECLARED,
    ASSET_UPDATED,
    CHECK_FAILED,
    CHECK_PASSED,
    JOB_DECLARED,
    KIND_ASSET,
    KIND_PIPELINE,
    KIND_TASK,
    ROLE_INPUT,
    ROLE_OUTPUT,
    ROLE_PARENT,
    ROLE_PARENT_RUN,
    ROLE_PRODUCER,
    ROLE_RUN,
    ROLE_SOURCE,
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_RETRYING,
    RUN_RUNNING,
    RUN_STARTED,
    RUN_UPDATED,
)
from coplane.integrations.airflow import naming
from coplane.integrations.dbt import naming as dbt_naming
from coplane.store.openlineage_runs import RunName

# Fixed forever: changing it would give every already-stored OpenLineage event a new id, and
# a producer's retry of an old event would then be stored twice.
NAMESPACE: Final = uuid.UUID("5b0d6c1e-8f3a-5e4b-9c2d-6a7f1e0b3c48")

# Mirrors the limits of coplane.events.model: structs built in code are not validated by
# msgspec, so the translator has to enforce them itself.
_MAX_ID = 1000
_MAX_LABEL = 1000

EventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

_T = TypeVar("_T")

# How a dataset becomes an asset id: (dataset, location in the event) -> id.
_AssetOf = Callable[["_Dataset", list[str | int]], str]

_EVENT_NAMES: Final[dict[str, str]] = {
    "START": RUN_STARTED,
    "RUNNING": RUN_RUNNING,
    "COMPLETE": RUN_COMPLETED,
    "FAIL": RUN_FAILED,
    "ABORT": RUN_CANCELLED,
    "OTHER": RUN_UPDATED,
}

# First match wins; matched against the producer URL, which names the integration.
_SOURCES: Final = ("airflow", "dbt", "spark", "dagster")


# Facet containers are typed `object`, not dicts: producers put anything there, a malformed
# facet must never reject an event, and `object` makes mypy insist every read is checked.
class _Dataset(msgspec.Struct):
    namespace: NonEmpty
    name: NonEmpty
    facets: object = None
    inputFacets: object = None
    outputFacets: object = None


class _Job(msgspec.Struct):
    namespace: NonEmpty
    name: NonEmpty
    facets: object = None


class _Run(msgspec.Struct):
    runId: uuid.UUID
    facets: object = None


class _RunEvent(msgspec.Struct):
    eventTime: AwareDatetime
    run: _Run
    job: _Job
    producer: str
    eventType: EventType | None = None
    # Lenient on null: some clients serialise an empty list as null.
    inputs: list[_Dataset] | None = None
    outputs: list[_Dataset] | None = None


class _DatasetEvent(msgspec.Struct):
    eventTime: AwareDatetime
    dataset: _Dataset
    producer: str


class _JobEvent(msgspec.Struct):
    eventTime: AwareDatetime
    job: _Job
    producer: str
    inputs: list[_Dataset] | None = None
    outputs: list[_Dataset] | None = None


@dataclass(frozen=True, slots=True)
class OpenLineageEvent:
    """One validated OpenLineage event; for a RunEvent, how its own facets name its run."""

    event: _RunEvent | _DatasetEvent | _JobEvent
    own: _OwnName | None = None


def translate_openlineage(obj: object) -> list[Event]:
    """Turn one JSON-decoded OpenLineage event into coplane events; raise EventDecodeError.

    The run is named from this event alone, as its first event names it; the ingest path
    names it as stored (`naming_claims`, `translate_parsed`)."""
    return translate_parsed(parse_openlineage(obj), {})


def parse_openlineage(obj: object) -> OpenLineageEvent:
    """Validate one JSON-decoded OpenLineage event; raise EventDecodeError naming the field."""
    if not isinstance(obj, dict):
        raise EventDecodeError(
            f"an OpenLineage event must be a JSON object, got {type(obj).__name__}",
            [],
            unreadable=False,
        )
    if "run" in obj:
        run_event = _convert(obj, _RunEvent)
        run_event.eventTime = check_occurred(run_event.eventTime, ["eventTime"])
        return OpenLineageEvent(run_event, _own_name(run_event))
    if "dataset" in obj:
        dataset_event = _convert(obj, _DatasetEvent)
        dataset_event.eventTime = check_occurred(dataset_event.eventTime, ["eventTime"])
        return OpenLineageEvent(dataset_event)
    if "job" in obj:
        job_event = _convert(obj, _JobEvent)
        job_event.eventTime = check_occurred(job_event.eventTime, ["eventTime"])
        return OpenLineageEvent(job_event)
    raise EventDecodeError(
        "not an OpenLineage event: a RunEvent needs `run` and `job`, a DatasetEvent `dataset`,"
        " a JobEvent `job`",
        [],
        unreadable=False,
    )


def translate_parsed(parsed: OpenLineageEvent, names: Mapping[str, RunName]) -> list[Event]:
    """The coplane events of a parsed OpenLineage event; a run whose runId is in `names`
    (and a parent run whose runId is) is named so, whatever this event's facets say."""
    ev = parsed.event
    if isinstance(ev, _RunEvent):
        assert parsed.own is not None
        return _translate_run(ev, parsed.own, names)
    if isinstance(ev, _DatasetEvent):
        return [_translate_dataset_event(ev)]
    return [_translate_job_event(ev)]


def renamed(parsed: OpenLineageEvent, names: Mapping[str, RunName]) -> bool:
    """Whether `names` names this event's run, or its parent run, otherwise than the event
    does itself (so that its translation with no names is not the one to store)."""
    ev, own = parsed.event, parsed.own
    if not isinstance(ev, _RunEvent) or own is None:
        return False
    name = names.get(str(ev.run.runId))
    if name is not None and name != own.name:
        return True
    parent_run = _parent_run_id(ev.run.facets)
    known = names.get(parent_run) if parent_run is not None else None
    return known is not None and own.parent is not None and known != _as_name(own.parent)


def naming_claims(parsed: Sequence[OpenLineageEvent]) -> tuple[dict[str, RunName], set[str]]:
    """The name these events would give each run they name, and the parent runs they only
    refer to (to look up).

    An event names its own run; an Airflow task or dbt node also names its parent run from
    its own facets (dag_id and run_id, the invocation), so a DAG run's COMPLETE that names
    nothing lands on its run even when it comes before the DAG run's START. Within a
    batch, a run's own name from facets beats one its child gives, which beats the plain
    `<namespace>/<name>`.
    """
    ranked: dict[str, tuple[int, RunName]] = {}
    lookups: set[str] = set()

    def claim(run_id: str, rank: int, name: RunName) -> None:
        held = ranked.get(run_id)
        if held is None or rank < held[0]:
            ranked[run_id] = (rank, name)

    for item in parsed:
        ev, own = item.event, item.own
        if not isinstance(ev, _RunEvent) or own is None:
            continue
        if own.test:
            continue  # a dbt test job is not a run: it names nothing
        claim(str(ev.run.runId), 0 if own.from_facets else 2, own.name)
        parent_run = _parent_run_id(ev.run.facets)
        if parent_run is not None:
            if own.parent_name is not None:
                claim(parent_run, 1, own.parent_name)
            else:
                lookups.add(parent_run)
    return {run_id: name for run_id, (_, name) in ranked.items()}, lookups


def _convert(obj: dict[object, object], kind: type[_T]) -> _T:
    """Validate `obj` as `kind`, turning msgspec's error into one that names the field."""
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        err = validation_error(exc)
        # Drop the leading "body": the caller knows where this event sits in a request.
        raise EventDecodeError(err.message, err.loc[1:], unreadable=False) from None


@dataclass(frozen=True, slots=True)
class _OwnName:
    """How a run event names its run from its own facets."""

    name: RunName
    from_facets: bool  # named from Airflow's or dbt-ol's facets, not `<namespace>/<name>`
    parent: list[RelatedResource] | None
    parent_name: RunName | None  # the parent run, named from the same facets
    dbt: _DbtNames | None
    airflow: dict[str, object]
    test: bool  # a dbt test job: only its assertions are reported


def _own_name(ev: _RunEvent) -> _OwnName:
    """The run's name from this event alone; raise EventDecodeError when it is too long."""
    job_id = _resource_id(ev.job.namespace, ev.job.name, ["job"])
    run_key = str(ev.run.runId)
    job_name = ev.job.name
    parent = _parent(ev.run.facets, ev.job)
    airflow = _airflow(ev.run.facets)
    from_facets = False
    named = _airflow_names(ev.job.namespace, airflow)
    if named is not None:  # named as the Airflow plugin and poller name it: one run, merged
        job_id, run_key, parent = named
        from_facets = True
    dbt = _dbt_names(ev) if _source(ev.producer) == dbt_naming.SOURCE else None
    if dbt is not None:  # named as `coplane dbt ingest` names it: one run, merged
        job_id, run_key, parent, job_name = dbt.job_id, dbt.run_key, dbt.parent, dbt.name
        from_facets = True
    kind = KIND_TASK if parent is not None else KIND_PIPELINE
    parent_name = _as_name(parent) if from_facets and parent is not None else None
    return _OwnName(
        RunName(job_id, run_key, job_name, kind),
        from_facets,
        parent,
        parent_name,
        dbt,
        airflow,
        dbt is not None and dbt.test,
    )


def _as_name(parent: list[RelatedResource]) -> RunName | None:
    """The parent run that `parent` and `parent_run` related resources name."""
    key = next((r.id for r in parent if r.role == ROLE_PARENT_RUN), None)
    if key is None:
        return None
    pipeline = parent[0]
    return RunName(pipeline.id, key, pipeline.name or pipeline.id, pipeline.kind or KIND_PIPELINE)


def _parent_run_id(run_facets: object) -> str | None:
    """The runId the `parent` facet names, normalised like a runId, if it is one."""
    parent_run = _str(_dig(run_facets, "parent", "run", "runId"))
    if parent_run is None:
        return None
    try:
        return str(uuid.UUID(parent_run))
    except ValueError:
        return None


def _translate_run(ev: _RunEvent, own: _OwnName, names: Mapping[str, RunName]) -> list[Event]:
    """The run event, plus asset.updated for a COMPLETE's outputs and one event per check."""
    event_type = ev.eventType or "OTHER"
    run_facets = ev.run.facets
    source = _source(ev.producer)
    # the name the run's first event gave it, whatever this one carries or omits
    name = names.get(str(ev.run.runId), own.name)
    job_id, run_id, job_name, kind = name.pipeline, name.run_key, name.name, name.kind
    parent = own.parent
    parent_run = _parent_run_id(run_facets)
    known_parent = names.get(parent_run) if parent_run is not None else None
    if known_parent is not None and parent is not None:
        parent = [
            RelatedResource(
                role=ROLE_PARENT,
                id=known_parent.pipeline,
                kind=known_parent.kind,
                name=known_parent.name,
            ),
            RelatedResource(role=ROLE_PARENT_RUN, id=known_parent.run_key),
        ]
    airflow = own.airflow
    dbt = own.dbt
    asset_of: _AssetOf = _dbt_asset_id if dbt is not None else _asset_id
    inputs = ev.inputs or []
    outputs = ev.outputs or []
    key_base: list[str] = [
        "run",
        run_id,
        event_type,
        _iso_utc(ev.eventTime),
        ev.job.namespace,
        ev.job.name,
    ]

    if dbt is not None and dbt.test:
        # dbt-ol reports a model's tests as a job of their own; `coplane dbt ingest` makes
        # them checks of the invocation, not runs, so only the checks are kept
        return _dbt_test_checks(ev, dbt, source, key_base)
    related = [RelatedResource(role=ROLE_RUN, id=run_id)]
    if parent is not None:
        related.extend(parent)
    related.extend(_dataset_related(inputs, "inputs", ROLE_INPUT, asset_of))
    related.extend(_dataset_related(outputs, "outputs", ROLE_OUTPUT, asset_of))
    related.append(RelatedResource(role=ROLE_SOURCE, id=source))

    payload: dict[str, object] = {"producer": ev.producer}
    if ev.eventType is not None:
        payload["openlineage_event_type"] = ev.eventType
    error = _error(run_facets)
    if error:
        payload["error"] = error
    event_name = _EVENT_NAMES[event_type]
    if event_type == "FAIL" and _airflow_will_retry(run_facets, airflow):
        # as the plugin reports it: this try is over, Airflow runs the next as a new try
        event_name = RUN_RETRYING
        payload["will_retry"] = True
    for field, out in (("nominalStartTime", "nominal_start"), ("nominalEndTime", "nominal_end")):
        value = _str(_dig(run_facets, "nominalTime", field))
        if value is not None:
            payload[out] = value
    if airflow:
        payload["airflow"] = airflow
    if dbt is not None:
        payload.update(dbt.payload)

    events = [
        Event(
            id=_event_id(key_base),
            occurred=ev.eventTime,
            event=event_name,
            resource=Resource(id=job_id, name=job_name, kind=kind, labels=_job_labels(ev.job)),
            related=related,
            payload=payload,
        )
    ]

    # Links from a derived event back to the run and the job that produced it.
    derived_related = [
        RelatedResource(role=ROLE_RUN, id=run_id),
        RelatedResource(role=ROLE_PRODUCER, id=job_id, kind=kind, name=job_name),
        RelatedResource(role=ROLE_SOURCE, id=source),
    ]
    if event_type == "COMPLETE":
        seen: set[str] = set()
        for index, ds in enumerate(outputs):
            ds_id = asset_of(ds, ["outputs", index])
            # The same dataset listed twice was still updated once.
            if ds_id in seen:
                continue
            seen.add(ds_id)
            events.append(
                Event(
                    id=_event_id([*key_base, ASSET_UPDATED, ds_id]),
                    occurred=ev.eventTime,
                    event=ASSET_UPDATED,
                    resource=_dataset_resource(ds, ds_id),
                    related=list(derived_related),
                    payload=_output_stats(ds, ev.producer),
                )
            )

    for side, datasets in (("inputs", inputs), ("outputs", outputs)):
        for index, ds in enumerate(datasets):
            events.extend(
                _check_events(ev, ds, side, index, key_base, derived_related, asset_of, dbt)
            )
    return events


def _check_events(
    ev: _RunEvent,
    ds: _Dataset,
    side: str,
    index: int,
    key_base: list[str],
    derived_related: list[RelatedResource],
    asset_of: _AssetOf,
    dbt: _DbtNames | None = None,
) -> list[Event]:
    """One check.passed / check.failed per well-formed `dataQualityAssertions` assertion."""
    # The spec puts this facet under inputFacets, but producers also send it elsewhere; only
    # the first container that has it is read, so one assertion never becomes two events.
    containers = (
        (ds.inputFacets, ds.facets, ds.outputFacets)
        if side == "inputs"
        else (ds.outputFacets, ds.facets, ds.inputFacets)
    )
    assertions: object = None
    for container in containers:
        assertions = _dig(container, "dataQualityAssertions", "assertions")
        if assertions is not None:
            break
    if not isinstance(assertions, list):
        return []

    ds_id = asset_of(ds, [side, index])
    events: list[Event] = []
    for number, item in enumerate(assertions):
        name = _str(_dig(item, "assertion"))
        success = _dig(item, "success")
        if name is None or not isinstance(success, bool):
            continue
        payload: dict[str, object] = {"check": name}
        column = _str(_dig(item, "column"))
        if column is not None:
            payload["column"] = column
        payload["success"] = success
        if dbt is not None:
            # named and described as `coplane dbt ingest` reports the test, so its check is
            # one check, not one per column (`column` would name it `<check>(<column>)`)
            payload.pop("column", None)
            payload.update(_dbt_check_payload(item, name, dbt))
        events.append(
            Event(
                # The side is in the key because one dataset can be both input and output.
                id=_event_id([*key_base, "check", side, ds_id, str(number)]),
                occurred=ev.eventTime,
                event=CHECK_PASSED if success else CHECK_FAILED,
                resource=_dataset_resource(ds, ds_id),
                related=list(derived_related),
                payload=payload,
            )
        )
    return events


def _translate_dataset_event(ev: _DatasetEvent) -> Event:
    """A DatasetEvent declares a dataset outside any run."""
    ds_id = _asset_id(ev.dataset, ["dataset"])
    return Event(
        id=_event_id(["dataset", _iso_utc(ev.eventTime), ev.dataset.namespace, ev.dataset.name]),
        occurred=ev.eventTime,
        event=ASSET_DECLARED,
        resource=_dataset_resource(ev.dataset, ds_id),
        related=[RelatedResource(role=ROLE_SOURCE, id=_source(ev.producer))],
        payload={"producer": ev.producer},
    )


def _translate_job_event(ev: _JobEvent) -> Event:
    """A JobEvent declares a job and its static lineage outside any run."""
    job_id = _resource_id(ev.job.namespace, ev.job.name, ["job"])
    related = [
        *_dataset_related(ev.inputs or [], "inputs", ROLE_INPUT),
        *_dataset_related(ev.outputs or [], "outputs", ROLE_OUTPUT),
        RelatedResource(role=ROLE_SOURCE, id=_source(ev.producer)),
    ]
    return Event(
        id=_event_id(["job", _iso_utc(ev.eventTime), ev.job.namespace, ev.job.name]),
        occurred=ev.eventTime,
        event=JOB_DECLARED,
        resource=Resource(
            id=job_id, name=ev.job.name, kind=KIND_PIPELINE, labels=_job_labels(ev.job)
        ),
        related=related,
        payload={"producer": ev.producer},
    )


def _event_id(key: list[str]) -> uuid.UUID:
    """A deterministic id, so a producer's retry of the same event is stored once."""
    # JSON keeps the key unambiguous whatever characters the names contain.
    return uuid.uuid5(NAMESPACE, msgspec.json.encode(key).decode())


def _iso_utc(moment: datetime) -> str:
    """The instant in UTC, so one instant written with two offsets gives one id."""
    return moment.astimezone(UTC).isoformat()


def _resource_id(namespace: str, name: str, loc: list[str | int]) -> str:
    """`<namespace>/<name>`, refused when longer than a resource id may be."""
    resource_id = f"{namespace}/{name}"
    if len(resource_id) > _MAX_ID:
        raise EventDecodeError(
            f"`namespace/name` is {len(resource_id)} characters, more than {_MAX_ID}",
            [*loc, "name"],
            unreadable=False,
        )
    return resource_id


def _source(producer: str) -> str:
    """The integration that sent the event, guessed from its producer URL."""
    lowered = producer.lower()
    for source in _SOURCES:
        if source in lowered:
            return source
    return "openlineage"


def _dataset_resource(ds: _Dataset, ds_id: str) -> Resource:
    """The dataset as a coplane asset."""
    return Resource(id=ds_id, name=ds.name, kind=KIND_ASSET, labels={"namespace": ds.namespace})


def _asset_id(ds: _Dataset, loc: list[str | int]) -> str:
    """A dataset's asset id: the URI it names (as an Airflow asset's), else
    `<namespace>/<name>` (`naming.dataset_asset_id`); refused when too long."""
    asset = naming.dataset_asset_id(ds.namespace, ds.name)
    if len(asset) > _MAX_ID:
        raise EventDecodeError(
            f"`namespace/name` is {len(asset)} characters, more than {_MAX_ID}",
            [*loc, "name"],
            unreadable=False,
        )
    return asset


def _dataset_related(
    datasets: list[_Dataset], side: str, role: str, asset_of: _AssetOf = _asset_id
) -> list[RelatedResource]:
    """Datasets as related assets, each once."""
    related: list[RelatedResource] = []
    seen: set[str] = set()
    for index, ds in enumerate(datasets):
        ds_id = asset_of(ds, [side, index])
        if ds_id not in seen:
            seen.add(ds_id)
            related.append(RelatedResource(role=role, id=ds_id, name=ds.name, kind=KIND_ASSET))
    return related


def _job_labels(job: _Job) -> dict[str, str]:
    """namespace, plus owners, job_type and integration when the job facets give them."""
    labels = {"namespace": job.namespace}
    # A facet left out is unchanged (labels merge key by key); a facet `_deleted` is removed
    # (https://openlineage.io/docs/spec/facets/), so its labels are emptied.
    if _dig(job.facets, "ownership", "_deleted") is True:
        labels["owners"] = ""
    owners = _dig(job.facets, "ownership", "owners")
    if isinstance(owners, list):
        names = [n for n in (_str(_dig(owner, "name")) for owner in owners) if n is not None]
        if names:
            labels["owners"] = ",".join(names)
    job_type_deleted = _dig(job.facets, "jobType", "_deleted") is True
    for field, label in (("jobType", "job_type"), ("integration", "integration")):
        value = _str(_dig(job.facets, "jobType", field))
        if value is not None:
            labels[label] = value
        elif job_type_deleted:
            labels[label] = ""
    # Labels are capped in the event model; a cut label beats a refused event.
    return {k: v[:_MAX_LABEL] for k, v in labels.items()}


def _parent(run_facets: object, job: _Job) -> list[RelatedResource] | None:
    """Parent and parent_run when the `parent` facet names another job, else None."""
    namespace = _str(_dig(run_facets, "parent", "job", "namespace"))
    name = _str(_dig(run_facets, "parent", "job", "name"))
    if namespace is None or name is None or (namespace, name) == (job.namespace, job.name):
        return None
    parent_id = f"{namespace}/{name}"
    if len(parent_id) > _MAX_ID:
        return None
    related = [RelatedResource(role=ROLE_PARENT, id=parent_id, kind=KIND_PIPELINE, name=name)]
    parent_run = _str(_dig(run_facets, "parent", "run", "runId"))
    if parent_run is not None and len(parent_run) <= _MAX_ID:
        # Normalised like our own runId, so a task's parent_run matches its DAG run's run id.
        with contextlib.suppress(ValueError):
            parent_run = str(uuid.UUID(parent_run))
        related.append(RelatedResource(role=ROLE_PARENT_RUN, id=parent_run))
    return related


def _error(run_facets: object) -> dict[str, str]:
    """message, programming_language and stack_trace from the `errorMessage` facet."""
    error: dict[str, str] = {}
    for field, key in (
        ("message", "message"),
        ("programmingLanguage", "programming_language"),
        ("stackTrace", "stack_trace"),
    ):
        value = _str(_dig(run_facets, "errorMessage", field))
        if value is not None:
            error[key] = value
    # Airflow's provider sends str(exception), which drops its class; the traceback's last
    # line is `<Class>: <message>`, what the plugin reports and a reader needs.
    message, trace = error.get("message"), error.get("stack_trace")
    if message is not None and trace is not None:
        last = next((line for line in reversed(trace.splitlines()) if line.strip()), "")
        if last != message and last.endswith(f": {message}") and _EXCEPTION.match(last):
            error["message"] = last
    return error


_EXCEPTION: Final = re.compile(r"^[A-Za-z_][\w.]*: ")


def _airflow_will_retry(run_facets: object, airflow: dict[str, object]) -> bool:
    """Whether Airflow retries the task try this FAIL reports: its try_number is within the
    task's `retries` (Airflow's `is_eligible_to_retry`, for a task instance never cleared)."""
    retries = _dig(run_facets, "airflow", "task", "retries")
    if isinstance(retries, str) and retries.isdigit():
        retries = int(retries)
    try_number = airflow.get("try_number")
    return (
        isinstance(retries, int)
        and not isinstance(retries, bool)
        and isinstance(try_number, int)
        and 0 < try_number <= retries
    )


def _airflow(run_facets: object) -> dict[str, object]:
    """dag_id, run_id, task_id and try_number from Airflow's task or DAG-run facet."""
    found: dict[str, object] = {}
    # A task event carries `airflow`; a DAG-run event carries `airflowDagRun`.
    for facet in ("airflow", "airflowDagRun"):
        candidates: dict[str, object] = {
            "dag_id": _str(_dig(run_facets, facet, "dag", "dag_id"))
            or _str(_dig(run_facets, facet, "dagRun", "dag_id")),
            "run_id": _str(_dig(run_facets, facet, "dagRun", "run_id")),
        }
        if facet == "airflow":
            candidates["task_id"] = _str(_dig(run_facets, facet, "task", "task_id"))
            for field in ("try_number", "map_index"):
                number = _dig(run_facets, facet, "taskInstance", field)
                if isinstance(number, int) and not isinstance(number, bool):
                    candidates[field] = number
        for key, value in candidates.items():
            if value is not None and key not in found:
                found[key] = value
    return found


def _airflow_names(
    namespace: str, airflow: dict[str, object]
) -> tuple[str, str, list[RelatedResource] | None] | None:
    """(resource id, run key, parent related) of an Airflow DAG run or task try, named as
    coplane's Airflow plugin and poller name them (the OpenLineage namespace is the
    instance); None when the event does not carry dag_id and run_id."""
    dag_id, dag_run = airflow.get("dag_id"), airflow.get("run_id")
    if not isinstance(dag_id, str) or not isinstance(dag_run, str):
        return None
    task_id = airflow.get("task_id")
    if not isinstance(task_id, str):
        return naming.dag_resource(namespace, dag_id), naming.dag_run_key(dag_run), None
    try_number = airflow.get("try_number")
    map_index = airflow.get("map_index")
    key = naming.task_run_key(
        dag_run,
        task_id,
        try_number if isinstance(try_number, int) else 1,
        map_index if isinstance(map_index, int) else -1,
    )
    dag = naming.dag_resource(namespace, dag_id)
    parent = [
        RelatedResource(role=ROLE_PARENT, id=dag, kind=KIND_PIPELINE, name=dag_id),
        RelatedResource(role=ROLE_PARENT_RUN, id=naming.dag_run_key(dag_run)),
    ]
    return naming.task_resource(namespace, dag_id, task_id), key, parent


@dataclass(frozen=True, slots=True)
class _DbtNames:
    """A dbt-ol event's job and run, named as `coplane dbt ingest` names them."""

    job_id: str  # `dbt.<project>` or `dbt.<project>.<unique_id>`
    run_key: str  # the invocation_id, or `<invocation_id>:<unique_id>`
    parent: list[RelatedResource] | None  # the invocation, for a node
    name: str  # the project's, or the node's
    pipeline: str  # `dbt.<project>`
    invocation_key: str  # the invocation's run key
    test: bool  # a job of tests: only its assertions are reported
    payload: dict[str, object]


def _dbt_names(ev: _RunEvent) -> _DbtNames | None:
    """The names of a dbt-ol event's job and run: a node's when the `dbt_node` job facet
    gives its unique_id or, without it, its jobType or parent facet say it is a node, else
    the invocation's; None when it lacks the `dbt_run` run facet's invocation_id or the
    project's name."""
    facets = ev.run.facets
    invocation = _str(_dig(facets, "dbt_run", "invocation_id"))
    if invocation is None:
        return None
    unique_id = _str(_dig(ev.job.facets, "dbt_node", "unique_id"))
    job_type = _str(_dig(ev.job.facets, "jobType", "jobType"))
    parent_job = _str(_dig(facets, "parent", "job", "name"))
    # A node's event (a model, snapshot or test job under the invocation) whether or not it
    # has `dbt_node`, which dbt-ol releases before it (1.40 among them) do not send.
    node = unique_id is not None or (
        job_type in _DBT_NODE_SUFFIXES
        if job_type is not None
        else parent_job is not None and parent_job.startswith("dbt-run-")
    )
    project = _str(_dig(facets, "dbt_run", "project_name"))
    if project is None:  # older dbt-ol: the invocation's job is `dbt-run-<project>`
        job = parent_job if node else ev.job.name
        if job is not None and job.startswith("dbt-run-") and len(job) > len("dbt-run-"):
            project = job.removeprefix("dbt-run-")
    if project is None:
        return None
    if node and unique_id is None:
        unique_id = _dbt_node_id(ev.job.name, project, job_type)
        if unique_id is None:
            return None  # a node we cannot name as dbt does: an OpenLineage job like any
    pipeline = dbt_naming.pipeline_resource(project)
    invocation_key = dbt_naming.invocation_run_key(invocation)
    payload: dict[str, object] = {"invocation_id": invocation}
    version = _str(_dig(facets, "dbt_version", "version"))
    if version is not None:
        payload["dbt_version"] = version
    if unique_id is None:  # the invocation (a parent it names, e.g. Airflow's, is dropped)
        if len(pipeline) > _MAX_ID or len(invocation_key) > _MAX_ID:
            return None
        return _DbtNames(
            pipeline, invocation_key, None, project, pipeline, invocation_key, False, payload
        )
    job_id = dbt_naming.node_resource(project, unique_id)
    run_key = dbt_naming.node_run_key(invocation, unique_id)
    if len(job_id) > _MAX_ID or len(run_key) > _MAX_ID:
        return None
    parent = [
        RelatedResource(role=ROLE_PARENT, id=pipeline, kind=KIND_PIPELINE, name=project),
        RelatedResource(role=ROLE_PARENT_RUN, id=invocation_key),
    ]
    test = _str(_dig(ev.job.facets, "jobType", "jobType")) == "TEST" or unique_id.startswith(
        "test."
    )
    payload["unique_id"] = unique_id
    name = unique_id.rsplit(".", 1)[-1]
    return _DbtNames(job_id, run_key, parent, name, pipeline, invocation_key, test, payload)


# The suffixes dbt-ol puts after a node's `<database>.<schema>.<id>` in its job name, per
# jobType (`dbt build` first, then `dbt run`/`snapshot`/`test`).
_DBT_NODE_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "MODEL": (".build.run", ""),
    "SNAPSHOT": (".build.snapshot", ".snapshot"),
    "TEST": (".build.test", ".test"),
}


def _dbt_node_id(job_name: str, project: str, job_type: str | None) -> str | None:
    """A node's unique_id from the job name dbt-ol gives it when it sends no `dbt_node`:
    `<database>.<schema>.<project>.<name><suffix>` for a model or snapshot and for a model's
    tests (`...source.<project>.<source>.<table><suffix>` for a source's), the unique_id
    itself for a singular test; None when the name is not of that shape."""
    if job_name.startswith(f"test.{project}."):
        return job_name
    kind = "snapshot" if job_type == "SNAPSHOT" else "model"
    suffixes = _DBT_NODE_SUFFIXES.get(job_type or "", ("",))
    for suffix in (*suffixes, ""):
        if suffix and not job_name.endswith(suffix):
            continue
        rest = job_name.removesuffix(suffix) if suffix else job_name
        source = rest.find(f"source.{project}.")
        if source == 0 or (source > 0 and rest[source - 1] == "."):
            return rest[source:]
        parts = rest.split(".")
        if len(parts) >= 2 and parts[-2] == project and parts[-1]:
            return f"{kind}.{project}.{parts[-1]}"
    return None


def _dbt_asset_id(ds: _Dataset, loc: list[str | int]) -> str:
    """A dbt-ol dataset's asset id, as `coplane dbt ingest` names the relation."""
    asset = dbt_naming.openlineage_asset_id(ds.namespace, ds.name)
    if len(asset) > _MAX_ID:
        raise EventDecodeError(
            f"the asset id is {len(asset)} characters, more than {_MAX_ID}",
            [*loc, "name"],
            unreadable=False,
        )
    return asset


def _dbt_test_checks(
    ev: _RunEvent, dbt: _DbtNames, source: str, key_base: list[str]
) -> list[Event]:
    """The checks of a dbt-ol test job, in the invocation's run as `coplane dbt ingest` puts
    them; nothing for its START, which only says the tests were about to run."""
    if ev.eventType not in ("COMPLETE", "FAIL"):
        return []
    derived_related = [
        RelatedResource(role=ROLE_RUN, id=dbt.invocation_key),
        RelatedResource(role=ROLE_PRODUCER, id=dbt.pipeline, kind=KIND_PIPELINE),
        RelatedResource(role=ROLE_SOURCE, id=source),
    ]
    events: list[Event] = []
    for side, datasets in (("inputs", ev.inputs or []), ("outputs", ev.outputs or [])):
        for index, ds in enumerate(datasets):
            events.extend(
                _check_events(ev, ds, side, index, key_base, derived_related, _dbt_asset_id, dbt)
            )
    return events


def _dbt_check_payload(item: object, assertion: str, dbt: _DbtNames) -> dict[str, object]:
    """A dbt assertion's check as `coplane dbt ingest` reports it: named after the test, with
    the generic test's name, severity, failures and the tested model."""
    payload: dict[str, object] = {"test": assertion}
    name = _str(_dig(item, "name"))
    if name is not None:
        payload["check"] = name
    severity = _str(_dig(item, "severity"))
    if severity is not None:
        payload["severity"] = severity.lower()
    actual = _str(_dig(item, "actual"))
    if actual is not None and actual.isdigit():
        payload["failures"] = int(actual)
    column = _str(_dig(item, "column"))
    if column is not None:
        payload["column_name"] = column
    unique_id = dbt.payload.get("unique_id")
    if isinstance(unique_id, str) and not unique_id.startswith("test."):
        payload["model"] = unique_id
    payload["invocation_id"] = dbt.payload["invocation_id"]
    return payload


def _output_stats(ds: _Dataset, producer: str) -> dict[str, object]:
    """producer, plus row_count and bytes from the `outputStatistics` facet."""
    payload: dict[str, object] = {"producer": producer}
    for container in (ds.outputFacets, ds.facets):
        stats = _dig(container, "outputStatistics")
        if isinstance(stats, dict):
            for field, key in (("rowCount", "row_count"), ("size", "bytes")):
                value = stats.get(field)
                if isinstance(value, int) and not isinstance(value, bool):
                    payload[key] = value
            break
    return payload


def _dig(value: object, *keys: str) -> object:
    """value[k1][k2]..., or None as soon as a level is not a dict or lacks the key."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _str(value: object) -> str | None:
    """The value if it is a non-empty string."""
    return value if isinstance(value, str) and value else None
