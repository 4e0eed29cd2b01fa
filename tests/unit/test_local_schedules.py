"""The local stack's scheduled functions (`devtools.schedules`): the template's schedule events,
the `rate(...)` parser, the event EventBridge sends, what a run prints, and the runner thread."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import local_stack, schedules, template
from devtools.local_lambda import Invocation
from devtools.schedules import UnsupportedScheduleError, parse_rate
from devtools.template import ScheduleSource


def source(
    expression: str = "rate(1 minute)",
    *,
    function: str = "ExpirerFunction",
    kind: str = "Schedule",
    enabled: bool = True,
    input: str | None = None,
) -> ScheduleSource:
    return ScheduleSource(function, "EveryMinute", kind, expression, enabled, input)


def ok(result: Any) -> Invocation:
    return Invocation("req-1", json.dumps(result).encode())


# ---------------------------------------------------------------- rate expressions
@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        ("  rate( 2 minutes )  ", timedelta(minutes=2)),
    ],
)
def test_rates_in_minutes_hours_and_days(expression: str, period: timedelta) -> None:
    assert parse_rate(expression) == period


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("cron(0 12 * * ? *)", "only rate(...) schedules, not cron(...)"),
        ("at(2030-01-01T00:00:00)", "not at(...)"),
        ("rate(1 minutes)", "EventBridge wants rate(1 minute)"),
        ("rate(5 minute)", "EventBridge wants rate(5 minutes)"),
        ("rate(0 minutes)", "positive whole number"),
        ("rate(30 seconds)", "minute(s), hour(s) or day(s)"),
        ("rate(1.5 hours)", "not a schedule expression"),
        ("every minute", "not a schedule expression"),
        ("", "not a schedule expression"),
    ],
)
def test_anything_but_a_valid_rate_is_refused_with_a_reason(expression: str, says: str) -> None:
    with pytest.raises(UnsupportedScheduleError, match=re.escape(says)):
        parse_rate(expression)


# ---------------------------------------------------------------- the scale variable
@pytest.mark.parametrize(
    ("value", "scale"), [(None, 1.0), ("", 1.0), ("0.02", 0.02), ("3", 3.0), ("0", 0.0)]
)
def test_the_scale_comes_from_the_environment(value: str | None, scale: float) -> None:
    environ = {} if value is None else {schedules.SCALE_VARIABLE: value}
    assert schedules.scale_from_environment(environ) == scale


@pytest.mark.parametrize("value", ["fast", "-1", "nan", "inf"])
def test_a_scale_that_is_not_a_number_at_least_zero_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match=schedules.SCALE_VARIABLE):
        schedules.scale_from_environment({schedules.SCALE_VARIABLE: value})


def test_the_command_line_takes_the_scale_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(schedules.SCALE_VARIABLE, raising=False)
    assert local_stack.parse_args([]).schedule_scale == 1
    assert local_stack.StackSettings().schedule_scale == 1

    monkeypatch.setenv(schedules.SCALE_VARIABLE, "0.5")
    assert local_stack.parse_args([]).schedule_scale == 0.5
    assert local_stack.StackSettings().schedule_scale == 0.5  # tests build settings directly
    assert local_stack.parse_args(["--schedule-scale", "0"]).schedule_scale == 0

    with pytest.raises(SystemExit):
        local_stack.parse_args(["--schedule-scale", "-2"])
    assert "--schedule-scale wants a number >= 0" in capsys.readouterr().err
    monkeypatch.setenv(schedules.SCALE_VARIABLE, "soon")
    with pytest.raises(SystemExit):
        local_stack.parse_args([])
    assert "is not a number" in capsys.readouterr().err


# ---------------------------------------------------------------- the template reader
def test_the_template_schedules_the_expirer_each_minute_and_the_reconciler_daily() -> None:
    found = {s.function: s for s in template.schedule_sources()}

    assert found["ExpirerFunction"].expression == "rate(1 minute)"
    assert found["ReconcilerFunction"].expression == "rate(1 day)"
    assert all(s.kind == "Schedule" and s.enabled and s.input is None for s in found.values())
    # ... and the local stack can run every one of them.
    runners = schedules.scheduled_functions(
        list(found.values()), _never, scale=1, account="1", region="r"
    )
    assert {r.source.function: r.period for r in runners} == {
        "ExpirerFunction": 60,
        "ReconcilerFunction": 86400,
    }


def _never(function: str, event: Any) -> Invocation:
    raise AssertionError(f"{function} invoked")


def a_template(events: dict[str, Any]) -> dict[str, Any]:
    return {
        "Parameters": {"SweepRate": {"Type": "String", "Default": "rate(5 minutes)"}},
        "Resources": {
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Handler": "app.handler", "Events": events},
            },
        },
    }


def test_the_reader_knows_both_schedule_event_types_and_their_switches() -> None:
    document = a_template(
        {
            "Api": {"Type": "Api", "Properties": {"Path": "/x", "Method": "get"}},
            "Rule": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}},
            "Off": {
                "Type": "Schedule",
                "Properties": {"Schedule": "cron(0 1 * * ? *)", "Enabled": False},
            },
            "Scheduler": {
                "Type": "ScheduleV2",
                "Properties": {"ScheduleExpression": {"Ref": "SweepRate"}, "Input": '{"a": 1}'},
            },
            "Paused": {
                "Type": "ScheduleV2",
                "Properties": {"ScheduleExpression": "rate(1 day)", "State": "DISABLED"},
            },
        }
    )

    found = template.schedule_sources(document)

    assert found == [
        ScheduleSource("Fn", "Rule", "Schedule", "rate(1 hour)", True, None),
        ScheduleSource("Fn", "Off", "Schedule", "cron(0 1 * * ? *)", False, None),
        ScheduleSource("Fn", "Scheduler", "ScheduleV2", "rate(5 minutes)", True, '{"a": 1}'),
        ScheduleSource("Fn", "Paused", "ScheduleV2", "rate(1 day)", False, None),
    ]
    overridden = template.schedule_sources(document, {"SweepRate": "rate(2 hours)"})
    assert overridden[2].expression == "rate(2 hours)"


def test_a_schedule_event_without_its_expression_is_an_error() -> None:
    document = a_template({"Broken": {"Type": "ScheduleV2", "Properties": {"State": "ENABLED"}}})
    with pytest.raises(ValueError, match=re.escape("Fn.Broken: a ScheduleV2 event without")):
        template.schedule_sources(document)


# ---------------------------------------------------------------- which schedules run
def test_an_enabled_cron_schedule_fails_the_start_naming_its_function() -> None:
    sources = [source("rate(1 minute)"), source("cron(0/5 * * * ? *)", function="Nightly")]
    with pytest.raises(
        UnsupportedScheduleError, match=re.escape("Nightly.EveryMinute in template.yaml")
    ):
        schedules.scheduled_functions(sources, _never, scale=1, account="1", region="r")


def test_disabled_schedules_do_not_run_and_a_scale_of_zero_runs_none() -> None:
    sources = [source("rate(1 minute)"), source("cron(bad)", function="Off", enabled=False)]

    scaled = schedules.scheduled_functions(sources, _never, scale=0.5, account="1", region="r")
    off = schedules.scheduled_functions(sources, _never, scale=0, account="1", region="r")

    assert [(r.source.function, r.period) for r in scaled] == [("ExpirerFunction", 30)]
    assert off == []


def test_a_schedule_for_a_function_the_stack_lacks_is_an_error() -> None:
    with pytest.raises(ValueError, match="names no function 'ExpirerFunction'"):
        schedules.scheduled_functions(
            [source()], _never, scale=1, account="1", region="r", functions={"Other": object()}
        )


# ---------------------------------------------------------------- the event
def test_a_rule_sends_eventbridges_scheduled_event() -> None:
    now = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)

    event = schedules.scheduled_event(source(), now, account="123456789012", region="us-east-1")

    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-03-01T12:30:05Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/ExpirerFunctionEveryMinute"],
        "detail": {},
    }
    again = schedules.scheduled_event(source(), now, account="1", region="r")
    assert again["id"] != event["id"]


def test_an_input_replaces_the_event_and_a_scheduler_without_input_sends_an_empty_one() -> None:
    now = datetime.now(UTC)
    with_input = source(input='{"accountId": "acct_1"}')
    scheduler = source(kind="ScheduleV2")

    assert schedules.scheduled_event(with_input, now, account="1", region="r") == {
        "accountId": "acct_1"
    }
    assert schedules.scheduled_event(scheduler, now, account="1", region="r") == {}


# ---------------------------------------------------------------- what a run prints
@pytest.mark.parametrize(
    ("function", "result", "line"),
    [
        (
            "ExpirerFunction",
            {"due": 1, "expired": 1, "alreadyClosed": 0, "failed": 0},
            "expirer: released 1 expired hold(s)",
        ),
        ("ExpirerFunction", {"due": 2, "expired": 0, "alreadyClosed": 2, "failed": 0}, None),
        ("ExpirerFunction", {"due": 0, "expired": 0, "alreadyClosed": 0, "failed": 0}, None),
        (
            "ExpirerFunction",
            {"due": 3, "expired": 2, "alreadyClosed": 0, "failed": 1},
            "expirer: released 2 expired hold(s); 1 due hold(s) left for the next run",
        ),
        ("ReconcilerFunction", {"accounts": 4, "filled": 0, "inconsistent": []}, None),
        (
            "ReconcilerFunction",
            {"accounts": 4, "filled": 1, "inconsistent": []},
            "reconciler: 4 accounts checked, 1 ledger entry filled, 0 inconsistent",
        ),
        ("SomeFunction", None, None),
        ("SomeFunction", {"moved": 2}, 'SomeFunction: {"moved": 2}'),
    ],
)
def test_a_run_prints_a_line_only_when_it_did_something(
    function: str, result: Any, line: str | None
) -> None:
    assert schedules.summary(function, ok(result)) == line


def test_a_failed_run_says_why() -> None:
    failed = Invocation(
        "req-1",
        json.dumps({"errorType": "KeyError", "errorMessage": "'TABLE_NAME'"}).encode(),
        "Unhandled",
    )
    assert schedules.summary("ExpirerFunction", failed) == (
        "ExpirerFunction: scheduled run failed (KeyError: 'TABLE_NAME')"
    )


def test_periods_read_as_people_write_them() -> None:
    assert schedules.describe_period(60) == "1 minute"
    assert schedules.describe_period(86400 * 2) == "2 days"
    assert schedules.describe_period(60 * 0.02) == "1.2 s"
    assert schedules.describe_period(90) == "90 s"


# ---------------------------------------------------------------- the runner
class Recorder:
    """A fake `FunctionRuntime.invoke`: records each event, answers with `results` in turn
    (an exception is raised), then with the last one; `ran(n)` waits for n runs."""

    def __init__(self, *results: Any) -> None:
        self.events: list[Any] = []
        self.results = list(results)
        self._lock = threading.Lock()
        self._counted = threading.Condition(self._lock)

    def ran(self, runs: int, timeout: float = 10) -> bool:
        with self._counted:
            return self._counted.wait_for(lambda: len(self.events) >= runs, timeout)

    def __call__(self, function: str, event: Any) -> Invocation:
        with self._counted:
            self.events.append(event)
            self._counted.notify_all()
            result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return ok(result)


def runner(
    invoke: Callable[[str, Any], Invocation], period: float, lines: list[str]
) -> schedules.ScheduledFunction:
    return schedules.ScheduledFunction(
        source(), period, invoke, account="1", region="r", announce=lines.append
    )


def test_the_runner_invokes_on_its_period_and_prints_what_runs_did() -> None:
    nothing = {"due": 0, "expired": 0, "alreadyClosed": 0, "failed": 0}
    recorder = Recorder({**nothing, "due": 1, "expired": 1}, nothing)
    lines: list[str] = []
    scheduled = runner(recorder, 0.01, lines)

    scheduled.start()
    try:
        assert recorder.ran(3), recorder.events
    finally:
        scheduled.stop()

    assert all(event["detail-type"] == "Scheduled Event" for event in recorder.events)
    assert len({event["id"] for event in recorder.events}) == len(recorder.events)
    assert lines == ["expirer: released 1 expired hold(s)"]  # the runs that did nothing: silent


def test_a_run_that_raises_does_not_stop_the_schedule() -> None:
    recorder = Recorder(RuntimeError("boom"), {"expired": 0})
    scheduled = runner(recorder, 0.01, [])

    scheduled.start()
    try:
        assert recorder.ran(2), "no run after the failed one"
    finally:
        scheduled.stop()


def test_the_first_run_is_a_period_away_and_stop_ends_the_thread() -> None:
    recorder = Recorder({"expired": 0})
    scheduled = runner(recorder, 3600, [])

    scheduled.start()
    scheduled.stop()

    assert recorder.events == []
    assert not scheduled.running


def test_a_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        runner(Recorder({}), 0, [])


def test_make_run_refuses_to_start_on_a_schedule_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Checked before a port is bound or DynamoDB is reached (the endpoint here is unused)."""
    nightly = source("cron(0 3 * * ? *)", function="ReconcilerFunction")
    monkeypatch.setattr(template, "schedule_sources", lambda **_: [nightly])
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            local_stack.main(
                [
                    "--api-port=0",
                    "--lambda-port=0",
                    "--dynamodb-endpoint=http://127.0.0.1:9",
                    f"--state-file={tmp_path / 'stack.json'}",
                ]
            )
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])

    assert str(stopped.value.code).startswith(
        "The local stack could not start: ReconcilerFunction.EveryMinute in template.yaml: "
        "'cron(0 3 * * ? *)': the local stack runs only rate(...) schedules"
    )
    assert not (tmp_path / "stack.json").exists()
