"""coplane.yaml as a user writes it: what loads, and each problem named at its line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coplane.cli import app
from coplane.integrations.github.config import GitHubChannel
from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.webhook.config import WebhookChannel
from coplane.rules.model import FreshnessSLA, HeartbeatSLA, QualitySLA
from coplane.slas.config import ConfigError, ConfigProblem, load_config

runner = CliRunner()

VALID = """\
channels:
  ops:
    type: slack
    webhook_url: https://hooks.slack.example/T000/B000
  pager:
    type: pagerduty
    routing_key: R0123
  tracker:
    type: github
    repository: acme/data
    token: ghp_secret
    labels: [sla]
  hook:
    type: webhook
    url: https://example.com/hook
slas:
  - name: orders-fresh
    kind: freshness
    target: warehouse.orders
    max_age: 2h
    notify: [ops, pager]
  - name: nightly-export
    kind: heartbeat
    target: nightly-export
    schedule: "0 2 * * *"
    notify:
      - tracker
  - name: orders-checks
    kind: quality
    target: warehouse.orders
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coplane.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value.problems


def only_problem(tmp_path: Path, text: str) -> ConfigProblem:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_file_loads_its_slas_and_channels(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert [type(s) for s in config.slas] == [FreshnessSLA, HeartbeatSLA, QualitySLA]
    fresh = config.slas[0]
    assert isinstance(fresh, FreshnessSLA)
    assert fresh.max_age == timedelta(hours=2) and fresh.notify == ["ops", "pager"]
    assert sorted(config.channels) == ["hook", "ops", "pager", "tracker"]
    tracker = config.channels["tracker"]
    assert isinstance(tracker, GitHubChannel) and tracker.labels == ["sla"]
    assert isinstance(config.channels["hook"], WebhookChannel)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "slas:\nchannels:\n"])
def test_an_empty_file_is_an_empty_config(tmp_path: Path, text: str) -> None:
    config = load_config(write(tmp_path, text))
    assert config.slas == [] and config.channels == {}


def test_a_bad_cron_is_named_at_its_line(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        """\
slas:
  - name: report
    kind: completion
    target: reporting
    deadline: '61 9 * * *'
""",
    )
    assert problem.line == 5 and problem.loc == ("slas", 0, "deadline")
    assert str(problem) == (
        f"{tmp_path / 'coplane.yaml'}:5: slas[0].deadline: "
        "'61 9 * * *' is not a cron expression of 5 or 6 fields"
    )


def test_an_unknown_kind_is_named_at_the_kind_line(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "slas:\n  - name: x\n    kind: freshnes\n    target: t\n")
    assert problem.line == 3 and problem.loc == ("slas", 0, "kind")
    assert "'freshnes'" in problem.message and "'freshness'" in problem.message


def test_a_missing_field_points_at_the_sla_that_lacks_it(tmp_path: Path) -> None:
    text = """\
slas:
  - name: ok
    kind: quality
    target: t
  - name: hb
    kind: heartbeat
    period: 5m
"""
    problem = only_problem(tmp_path, text)
    assert problem.line == 5 and problem.loc == ("slas", 1, "target")
    assert problem.message == "Field required"


def test_a_rule_across_fields_drops_pydantics_prefix(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "slas:\n  - name: f\n    kind: freshness\n    target: t\n")
    assert problem.line == 2 and problem.loc == ("slas", 0)
    assert problem.message == "give exactly one of max_age, deadline"


def test_a_duplicate_sla_name_is_named_at_the_second(tmp_path: Path) -> None:
    text = """\
slas:
  - name: same
    kind: quality
    target: a
  - name: same
    kind: quality
    target: b
"""
    problem = only_problem(tmp_path, text)
    assert problem.line == 5 and problem.loc == ("slas", 1, "name")
    assert "'same'" in problem.message


def test_notify_naming_an_undefined_channel_is_named_at_that_entry(tmp_path: Path) -> None:
    text = """\
channels:
  ops: {type: slack, webhook_url: "https://hooks.example/x"}
slas:
  - name: q
    kind: quality
    target: a
    notify:
      - ops
      - opps
"""
    problem = only_problem(tmp_path, text)
    assert problem.line == 9 and problem.loc == ("slas", 0, "notify", 1)
    assert "'opps'" in problem.message and "ops" in problem.message


def test_an_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "slas: []\nchanels:\n  ops: {}\n")
    assert problem.line == 2 and problem.loc == ("chanels",)
    assert "chanels: unknown key" in str(problem)


def test_a_bad_channel_is_named_at_its_line(tmp_path: Path) -> None:
    text = "channels:\n  ops:\n    type: slack\n    token: xoxb-1\n    webhook_url: https://h\n"
    problem = only_problem(tmp_path, text)
    assert problem.line == 2 and problem.loc == ("channels", "ops")
    assert problem.message == "give exactly one of token, webhook_url"


def test_a_yaml_syntax_error_is_one_problem_with_its_line(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "slas:\n  - name: a\n    kind: [quality\n  - name: b\n")
    assert problem.line == 4 and problem.loc == ()
    assert problem.message.startswith("invalid YAML")


def test_env_vars_in_strings_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("TEAM", "data")
    text = """\
channels:
  ops:
    type: slack
    token: ${SLACK_TOKEN}
    channel: '#${TEAM}-alerts'
"""
    ops = load_config(write(tmp_path, text)).channels["ops"]
    assert isinstance(ops, SlackChannel)
    assert ops.token == "xoxb-from-env" and ops.channel == "#data-alerts"
    assert "xoxb-from-env" not in repr(ops)


def test_a_missing_env_var_is_named_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COPLANE_TEST_NO_SUCH_KEY", raising=False)
    text = "channels:\n  pd:\n    type: pagerduty\n    routing_key: ${COPLANE_TEST_NO_SUCH_KEY}\n"
    problem = only_problem(tmp_path, text)
    assert problem.line == 4 and problem.loc == ("channels", "pd", "routing_key")
    assert "COPLANE_TEST_NO_SUCH_KEY" in problem.message


def test_every_problem_in_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    text = """\
slas:
  - name: a
    kind: freshness
    target: t
    deadline: '61 9 * * *'
  - name: a
    kind: nope
  - name: c
    kind: quality
    target: t
    notify: [nowhere]
extra: 1
"""
    found = problems(tmp_path, text)
    assert [(p.line, p.loc) for p in found] == [
        (5, ("slas", 0, "deadline")),
        (6, ("slas", 1, "name")),
        (7, ("slas", 1, "kind")),
        (11, ("slas", 2, "notify", 0)),
        (12, ("extra",)),
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "coplane.yaml")
    assert len(str(caught.value).splitlines()) == 5


def test_cli_check_accepts_a_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = runner.invoke(app, ["slas", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: 3 SLAs, 4 channels, OK" in result.stdout


def test_cli_check_names_each_bad_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "slas:\n  - name: a\n    kind: heartbeat\n    target: a\n    period: 5x\n"
    )
    result = runner.invoke(app, ["slas", "check", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}:5: slas[0].period: '5x' is not a duration" in result.stderr
    assert "OK" not in result.stdout


def test_cli_check_of_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = runner.invoke(app, ["slas", "check", str(path)])
    assert result.exit_code == 2
    assert f"{path}: cannot read" in result.stderr


CALENDARS = """\
calendars:
  berlin:
    country: DE
    subdivision: BE
    days_off: ["2027-12-24"]
    working: ["2027-03-08"]
slas:
  - name: sales
    kind: freshness
    target: wh.sales
    deadline: "0 9 * * *"
    timezone: Europe/Berlin
    calendar: berlin
"""


def test_an_sla_names_a_calendar_defined_once(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CALENDARS))
    [sla] = config.slas
    assert isinstance(sla, FreshnessSLA) and sla.calendar == config.calendars["berlin"]
    assert sla.calendar.country == "DE" and sla.calendar.days_off == (date(2027, 12, 24),)


def test_an_unknown_calendar_is_named_at_its_line(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, CALENDARS.replace("calendar: berlin", "calendar: paris"))
    assert (problem.line, problem.loc) == (13, ("slas", 0, "calendar"))
    assert problem.message == "no calendar named 'paris' in calendars: (berlin)"


def test_a_bad_calendar_is_named_once_where_it_is_defined(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, CALENDARS.replace("subdivision: BE", "subdivision: XX"))
    assert (problem.line, problem.loc) == (2, ("calendars", "berlin"))
    assert problem.message.startswith("subdivision 'XX' is not one of DE's (BB, BE,")


def test_cli_calendars_show_lists_the_days_off(tmp_path: Path) -> None:
    path = write(tmp_path, CALENDARS)
    result = runner.invoke(app, ["calendars", "show", "berlin", "--year", "2027", "--config",
                                 str(path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "2027-03-26  Fri  Good Friday" in lines
    assert "2027-12-24  Fri  closed" in lines
    assert "2027-12-25  Sat  Christmas Day" in lines  # a holiday on a weekend is shown
    assert not any(line.startswith("2027-03-08") for line in lines)  # worked
    assert not any("Saturday" in line for line in lines)  # weekends are one line
    assert lines[-1] == "and every sat, sun"


def test_cli_calendars_show_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, CALENDARS)
    unknown = runner.invoke(app, ["calendars", "show", "paris", "--config", str(path)])
    assert unknown.exit_code == 2
    assert f"error: {path}: no calendar named 'paris' in calendars: (berlin)" in unknown.stderr
    monkeypatch.delenv("COPLANE_CONFIG", raising=False)
    assert "give --config FILE" in runner.invoke(app, ["calendars", "show", "berlin"]).stderr
    bad = write(tmp_path, CALENDARS.replace("country: DE", "country: XX"))
    broken = runner.invoke(app, ["calendars", "show", "berlin", "--config", str(bad)])
    assert broken.exit_code == 2 and f"{bad}:2: calendars.berlin:" in broken.stderr


QUIET = CALENDARS + """\
channels:
  ops:
    type: webhook
    url: https://example.com/hook
    quiet:
      - calendar: berlin
        timezone: Europe/Berlin
"""


def test_a_channel_is_quiet_on_a_named_calendars_days_off(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, QUIET))
    [quiet] = config.channels["ops"].quiet
    assert quiet.calendar == config.calendars["berlin"] and quiet.timezone == "Europe/Berlin"
    problem = only_problem(tmp_path, QUIET.replace("- calendar: berlin", "- calendar: paris"))
    assert (problem.line, problem.loc) == (19, ("channels", "ops", "quiet", 0, "calendar"))
    both = only_problem(tmp_path, QUIET + "        until: 2027-01-01T00:00:00Z\n")
    assert both.message == "give exactly one of until, calendar"
