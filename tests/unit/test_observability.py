"""Observability (issue 15, point 6): the metrics the handlers emit, the alarms and the
dashboard in template.yaml, and the structured log lines with their correlation ids.

Metrics and logs are read from what Powertools prints (Embedded Metric Format documents and
JSON log lines on stdout), as CloudWatch would receive them."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import template
from devtools.api_events import api_event, invoke, open_account
from functions.balance import app as balance_app
from functions.debit import app as debit_app
from functions.materializer import app as materializer_app
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.domain.models import utc_now
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import debit_api, streams
from tests.unit.test_debit_function import FakeLambdaContext, emitted_metrics
from tests.unit.test_streams import NOW, FakeMaterializer, image, stream_record

ACCOUNT = "acct_obs"
NAMESPACE = "ServerlessCredits"
PROJECT = template.PROJECT_ROOT


# ---------------------------------------------------------------- reading stdout
def metric_points(output: str) -> list[tuple[str, dict[str, str], list[Any]]]:
    """Every metric of every EMF document: (name, its dimensions, its values)."""
    points: list[tuple[str, dict[str, str], list[Any]]] = []
    for line in output.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        document = json.loads(line)
        for definition in document["_aws"]["CloudWatchMetrics"]:
            assert definition["Namespace"] == NAMESPACE
            [dimension_names] = definition["Dimensions"]
            dimensions = {name: document[name] for name in dimension_names}
            for metric in definition["Metrics"]:
                values = document[metric["Name"]]
                points.append((metric["Name"], dimensions, values))
    return points


def log_lines(output: str) -> list[dict[str, Any]]:
    """The structured log lines (JSON with a level and a message) Powertools printed."""
    lines = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' not in line:
            document = json.loads(line)
            if "level" in document and "message" in document:
                lines.append(document)
    return lines


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the functions log from now on. Powertools' handler (one for the service, shared
    by every function's Logger) holds the stdout of the moment it was made, which `capsys`
    does not replace: its stream is pointed here instead."""
    buffer = io.StringIO()
    handler = debit_app.logger.registered_handler
    assert handler is balance_app.logger.registered_handler
    monkeypatch.setattr(handler, "stream", buffer)
    return buffer


def debit(event: Any) -> dict[str, Any]:
    response: dict[str, Any] = debit_app.lambda_handler(event, FakeLambdaContext())
    return response


@pytest.fixture
def account(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=10))
    return ACCOUNT


# ---------------------------------------------------------------- Debit function metrics
def test_a_refusal_is_counted_in_total_and_under_its_code(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The total feeds the refusal-rate alarm; the `code` series (same metric name, one
    more dimension) feeds the dashboard's refusals by code."""
    debit({"accountId": account, "amount": 50, "idempotencyKey": "too-much"})

    points = metric_points(capsys.readouterr().out)

    assert sorted((name, sorted(dims.items()), values) for name, dims, values in points) == [
        (
            "DebitsDeclined",
            [("code", "INSUFFICIENT_CREDITS"), ("service", "serverless-credits")],
            [1],
        ),
        ("DebitsDeclined", [("service", "serverless-credits")], [1]),
    ]


@pytest.mark.parametrize(
    ("code", "dimension"),
    [
        ("INSUFFICIENT_CREDITS", "INSUFFICIENT_CREDITS"),
        ("VALIDATION_ERROR", "VALIDATION_ERROR"),
        ("HOLD_NOT_OPEN", "HOLD_NOT_OPEN"),
        ("SOMETHING_NEW", "OTHER"),  # the dimension's values stay a bounded set
        ("x" * 300, "OTHER"),
        (None, "OTHER"),
    ],
)
def test_the_code_dimension_is_a_known_code_or_other(code: Any, dimension: str) -> None:
    assert debit_app.refusal_code(code) == dimension


def test_each_operation_is_counted_once_with_its_amount(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    debit({"accountId": account, "amount": 2, "idempotencyKey": "o-1"})
    debit({"accountId": account, "amount": 2, "idempotencyKey": "o-1"})  # a replay
    held = debit(
        {"operation": "reserve", "accountId": account, "amount": 3, "idempotencyKey": "o-2"}
    )
    capsys.readouterr()
    debit(
        {
            "operation": "capture",
            "accountId": account,
            "holdId": held["holdId"],
            "amount": 1,
            "idempotencyKey": "o-2:capture",
        }
    )
    captured = emitted_metrics(capsys.readouterr().out)
    debit({"operation": "void", "accountId": account, "idempotencyKey": "o-1"})
    voided = emitted_metrics(capsys.readouterr().out)

    assert captured == {"HoldsCaptured": [1], "CreditsDebited": [1]}
    assert voided == {"Voids": [1], "CreditsVoided": [2]}


def test_every_count_metric_has_an_amount_metric_for_the_same_operations() -> None:
    assert set(debit_app.COUNT_METRICS) == set(debit_app.AMOUNT_METRICS)
    assert set(debit_app.COUNT_METRICS) == set(debit_api.OPERATIONS)


# ---------------------------------------------------------------- materialization lag
def test_the_lag_is_the_age_of_the_oldest_new_version_when_the_batch_is_done() -> None:
    older = image("acct_a", version=1)  # updatedAt = NOW
    newer = image("acct_b", version=1, updatedAt={"S": (NOW + timedelta(seconds=1)).isoformat()})
    event = {"Records": [stream_record(1, older), stream_record(2, newer)]}

    response, report = streams.materialize(
        event,
        FakeMaterializer(),  # type: ignore[arg-type]
        clock=lambda: NOW + timedelta(seconds=2.5),
    )

    assert response == {"batchItemFailures": []}
    assert (report.read, report.failed, report.lag_ms) == (2, 0, 2500)


def test_versions_of_failed_accounts_and_changes_without_a_version_have_no_lag() -> None:
    """A failed account is delivered again and measured when it is written; a settings
    change (no new version) is not a write of the ledger."""
    failed = image("acct_a", version=3)
    settings_only = image("acct_b", version=2)
    event = {"Records": [stream_record(7, failed), stream_record(8, settings_only, settings_only)]}

    response, report = streams.materialize(
        event,
        FakeMaterializer(failing=["7"]),  # type: ignore[arg-type]
        clock=lambda: NOW + timedelta(seconds=1),
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "7"}]}
    assert (report.read, report.failed, report.lag_ms) == (2, 1, None)


def test_the_materializer_function_emits_the_lag_in_milliseconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wiring, "materializer", FakeMaterializer)
    event = {"Records": [stream_record(1, image("acct_a", version=1))]}  # written at NOW

    before = utc_now()
    materializer_app.lambda_handler(event, FakeLambdaContext())
    after = utc_now()

    [(name, _, [lag]), *others] = [
        p for p in metric_points(capsys.readouterr().out) if p[0] == "MaterializationLag"
    ]
    assert (name, others) == ("MaterializationLag", [])
    assert (before - NOW).total_seconds() * 1000 <= lag <= (after - NOW).total_seconds() * 1000
    assert emitted_metrics(capsys.readouterr().out) == {}  # one document, read above


# ---------------------------------------------------------------- correlation ids in logs
def refusals(logs: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in log_lines(logs.getvalue()) if line["message"] == "request refused"]


def test_debit_log_lines_carry_the_callers_correlation_id(
    account: str, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    response = debit(
        {
            "accountId": account,
            "amount": 50,
            "idempotencyKey": "idem-secret-123",
            "correlationId": "order-42/attempt-1",
        }
    )

    [refused] = refusals(logs)
    assert response["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert refused["correlation_id"] == "order-42/attempt-1"
    assert (refused["code"], refused["operation"]) == ("INSUFFICIENT_CREDITS", "debit")
    assert "idem-secret-123" not in logs.getvalue() + capsys.readouterr().out


def test_without_a_correlation_id_the_invocation_request_id_is_used(
    account: str, logs: io.StringIO
) -> None:
    debit({"accountId": account, "amount": 50, "idempotencyKey": "k-no-cid"})

    [refused] = refusals(logs)
    assert refused["correlation_id"] == FakeLambdaContext.aws_request_id


def test_a_correlation_id_does_not_change_the_operation(account: str) -> None:
    """It is taken off before validation (commands refuse unknown fields) and is not part
    of what the idempotency key replays: the same debit with another one is a replay."""
    first = debit(
        {"accountId": account, "amount": 1, "idempotencyKey": "c-1", "correlationId": "a"}
    )
    again = debit(
        {"accountId": account, "amount": 1, "idempotencyKey": "c-1", "correlationId": "b"}
    )

    assert first["replayed"] is False
    assert again == {**first, "replayed": True}


@pytest.mark.parametrize("value", ["", "x" * 129, "has space", "line\n", 42, None, ["a"]])
def test_a_malformed_correlation_id_is_a_typed_refusal_that_charges_nothing(
    account: str, value: Any, logs: io.StringIO
) -> None:
    response = debit(
        {"accountId": account, "amount": 1, "idempotencyKey": "c-bad", "correlationId": value}
    )

    assert response["error"]["code"] == "VALIDATION_ERROR"
    assert "correlationId" in json.dumps(response["error"]["details"])
    assert wiring.ledger().account(account).balance == 10
    # The line still carries a correlation id: the invocation's, never the bad value.
    [refused] = refusals(logs)
    assert refused["correlation_id"] == FakeLambdaContext.aws_request_id
    assert refused["code"] == "VALIDATION_ERROR"


def test_an_http_refusal_is_one_line_with_status_code_route_and_request_id(
    moto_store: CreditsStore, logs: io.StringIO
) -> None:
    """One line per refusal, none for a 2xx; every line of a request carries API
    Gateway's request id (the response's X-Request-Id) as its correlation id."""
    owner = open_account("acct_obs_http", opening_balance=5)
    logs.seek(0)
    logs.truncate()

    served = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/balance", api_key_id=owner.api_key_id, request_id="rq-obs-ok"),
    )
    refused = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/balance", api_key_id="unknown-key", request_id="rq-obs-1"),
    )

    assert (served.status, refused.status) == (200, 403)
    assert [
        (line["correlation_id"], line["status"], line["code"], line["route"])
        for line in refusals(logs)
    ] == [("rq-obs-1", 403, "FORBIDDEN", "/v1/credits/balance")]
    lines = log_lines(logs.getvalue())
    assert {line["correlation_id"] for line in lines} <= {"rq-obs-ok", "rq-obs-1"}


# ---------------------------------------------------------------- template: alarms
def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = template.load_template()["Resources"]
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def alarm_metrics(alarm: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The metrics an alarm reads (`Namespace`/`MetricName` or its metric math's)."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        yield {k: properties.get(k) for k in ("Namespace", "MetricName", "Dimensions")}
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            yield query["MetricStat"]["Metric"]


def dimension(metric: dict[str, Any], name: str) -> Any:
    return next((d["Value"] for d in metric.get("Dimensions") or [] if d["Name"] == name), None)


def test_the_alarms_cover_errors_throttles_queues_streams_publishing_and_refusals() -> None:
    watched = {
        (
            m["Namespace"],
            m["MetricName"],
            json.dumps(dimension(m, "FunctionName") or dimension(m, "QueueName")),
        )
        for alarm in resources_of("AWS::CloudWatch::Alarm").values()
        for m in alarm_metrics(alarm)
    }

    def function(logical_id: str) -> str:
        return json.dumps({"Ref": logical_id})

    def queue(logical_id: str) -> str:
        return json.dumps({"Fn::GetAtt": [logical_id, "QueueName"]})

    assert {
        ("AWS/Lambda", "Errors", function("DebitFunction")),
        ("AWS/Lambda", "Throttles", function("DebitFunction")),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue("MaterializerFailureQueue")),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue("EventReplayQueue")),
        ("AWS/Lambda", "IteratorAge", function("MaterializerFunction")),
        ("AWS/Lambda", "IteratorAge", function("EventPublisherFunction")),
        (NAMESPACE, "EventPublishFailures", "null"),
        (NAMESPACE, "DebitsDeclined", "null"),
        ("AWS/Lambda", "Invocations", function("DebitFunction")),
    } <= watched


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [("FunctionErrorsAlarm", "Errors"), ("FunctionThrottlesAlarm", "Throttles")],
)
def test_errors_and_throttles_alarms_sum_every_function_of_the_service(
    alarm: str, metric: str
) -> None:
    """Metric math alarms read at most 10 metrics (a hard CloudWatch limit): the 10
    functions of the service; the example consumer is on the dashboard only. A new
    function must be added here, or the alarm split in two (or a composite alarm)."""
    properties = template.resource(alarm)["Properties"]
    metrics = list(alarm_metrics(template.resource(alarm)))
    functions = {
        name
        for name in resources_of("AWS::Serverless::Function")
        if name != "ExampleConsumerFunction"
    }
    [total] = [q for q in properties["Metrics"] if q.get("ReturnData")]
    ids = [q["Id"] for q in properties["Metrics"] if "MetricStat" in q]

    assert len(metrics) <= 10
    assert {m["MetricName"] for m in metrics} == {metric}
    assert {dimension(m, "FunctionName")["Ref"] for m in metrics} == functions
    assert total["Expression"] == f"SUM([{', '.join(ids)}])"


def test_the_refusal_rate_alarm_uses_its_parameters() -> None:
    properties = template.resource("DebitRefusalRateAlarm")["Properties"]
    [rate] = [q for q in properties["Metrics"] if q.get("ReturnData")]
    parameters = template.parameter_defaults()

    assert properties["Threshold"] == {"Ref": "RefusalRateThresholdPercent"}
    assert "${RefusalRateMinInvocations}" in rate["Expression"]["Fn::Sub"]
    assert "100 * FILL(refused, 0) / calls" in rate["Expression"]["Fn::Sub"]
    assert 0 < parameters["RefusalRateThresholdPercent"] <= 100


def test_every_alarm_notifies_the_optional_topic() -> None:
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    conditions = template.load_template()["Conditions"]

    assert template.parameter_defaults()["AlarmTopicArn"] == ""
    assert conditions["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    for name, alarm in resources_of("AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"].get("AlarmActions") == topic, name
        assert alarm["Properties"].get("OKActions") == topic, name


# ---------------------------------------------------------------- template: dashboard
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def dashboard() -> tuple[dict[str, Any], set[str]]:
    """The dashboard's body as CloudFormation would render it (placeholders replaced by
    sample values), and the names its placeholders refer to."""
    [resource] = resources_of("AWS::CloudWatch::Dashboard").values()
    text: str = resource["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(PLACEHOLDER.findall(text))
    parameters = template.parameter_defaults()

    def sample(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(parameters[name]) if name in parameters else f"sample-{name}"

    return json.loads(PLACEHOLDER.sub(sample, text)), names


def test_the_dashboard_body_is_json_and_refers_only_to_what_exists() -> None:
    body, names = dashboard()
    document = template.load_template()
    known = set(document["Resources"]) | set(document["Parameters"]) | {"AWS::Region"}

    assert body["widgets"]
    assert {name.split(".")[0] for name in names} <= known


def widget_metrics(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {w["properties"]["title"]: w["properties"].get("metrics", []) for w in body["widgets"]}


def test_the_dashboard_shows_the_key_figures() -> None:
    body, _ = dashboard()
    by_title = widget_metrics(body)
    shown = {
        (row[0], row[1]) for rows in by_title.values() for row in rows if isinstance(row[0], str)
    }

    assert {
        (NAMESPACE, "Debits"),
        (NAMESPACE, "CreditsDebited"),
        (NAMESPACE, "DebitsDeclined"),
        (NAMESPACE, "IdempotentReplays"),
        (NAMESPACE, "HoldsReserved"),
        (NAMESPACE, "HoldsCaptured"),
        (NAMESPACE, "HoldsReleased"),
        (NAMESPACE, "HoldsExpired"),
        (NAMESPACE, "MaterializationLag"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/ApiGateway", "4XXError"),
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/ApiGateway", "Latency"),
    } <= shown
    every_function = {f"sample-{name}" for name in resources_of("AWS::Serverless::Function")}
    for title in ("Function errors", "Function throttles"):
        assert {row[3] for row in by_title[title]} == every_function
    [search] = [
        row[0]["expression"] for row in by_title["Refusals by code"] if "expression" in row[0]
    ]
    assert "{ServerlessCredits,code,service}" in search


def test_every_service_metric_in_alarms_and_dashboard_is_emitted_by_the_code() -> None:
    """A renamed metric leaves no alarm or graph silently empty."""
    body, _ = dashboard()
    used = {row[1] for rows in widget_metrics(body).values() for row in rows if row[0] == NAMESPACE}
    used |= {
        m["MetricName"]
        for alarm in resources_of("AWS::CloudWatch::Alarm").values()
        for m in alarm_metrics(alarm)
        if m["Namespace"] == NAMESPACE
    }
    sources = [
        *PROJECT.glob("functions/*/app.py"),
        PROJECT / "layers/shared/serverless_credits/transport/http_api.py",
    ]
    code = "\n".join(Path(path).read_text("utf-8") for path in sources)

    assert used
    assert {name for name in used if f'"{name}"' not in code} == set()
