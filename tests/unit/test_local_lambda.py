"""The in-process function runtime and the Lambda Invoke API stand-in (no AWS, no DynamoDB)."""

from __future__ import annotations

import decimal
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.serving import make_server
from werkzeug.test import Client

from devtools import local_lambda, template
from devtools.local_lambda import FunctionRuntime, lambda_invoke_app
from devtools.template import FunctionSpec

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

HANDLERS = """
import decimal
import os
import time

def echo(event, context):
    return {
        "event": event,
        "function": context.function_name,
        "requestId": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "price": decimal.Decimal("1.5"),
        "balance": decimal.Decimal("123456789012.345678"),
    }

def fail(event, context):
    raise ValueError("the handler broke")

def unserialisable(event, context):
    return {"when": object()}

def environment(event, context):
    return {name: os.environ.get(name) for name in event["names"]}

def slow(event, context):
    time.sleep(event.get("seconds", 0))
    return {"slept": event.get("seconds", 0)}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> FunctionRuntime:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    specs = {
        name: FunctionSpec(name, tmp_path, f"handlers.{handler}", {}, {})
        for name, handler in {
            "EchoFunction": "echo",
            "FailingFunction": "fail",
            "OddFunction": "unserialisable",
            "EnvFunction": "environment",
            "SlowFunction": "slow",
            "OtherSlowFunction": "slow",
        }.items()
    }
    specs["MissingFunction"] = FunctionSpec("MissingFunction", tmp_path, "nothing.handler", {}, {})
    return FunctionRuntime(specs)


@pytest.fixture
def lambda_client(runtime: FunctionRuntime) -> Iterator[LambdaClient]:
    server = make_server("127.0.0.1", 0, lambda_invoke_app(runtime), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),
        )
    finally:
        server.shutdown()
        server.server_close()


def payload(response: Any) -> Any:
    return json.loads(response["Payload"].read())


# ---------------------------------------------------------------- the runtime
def test_a_handler_runs_with_a_lambda_like_context(runtime: FunctionRuntime) -> None:
    result = runtime.invoke("EchoFunction", {"a": 1}, request_id="req-1")

    assert not result.failed
    body = result.json()
    assert body["event"] == {"a": 1}
    assert body["function"] == "EchoFunction"
    assert body["requestId"] == "req-1"
    timeout = template.load_template()["Globals"]["Function"]["Timeout"]
    assert 0 < body["remaining"] <= timeout * 1000
    assert body["price"] == 1.5  # Decimal serialised as the Python runtime does
    # ... as its exact literal (awslambdaric: `RawJSON(str(decimal))`), never via a float.
    assert b'"balance":123456789012.345678' in result.payload
    exact = json.loads(result.payload, parse_float=decimal.Decimal)["balance"]
    assert exact == decimal.Decimal("123456789012.345678")


def test_failures_are_reported_as_lambda_reports_them(runtime: FunctionRuntime) -> None:
    failed = runtime.invoke("FailingFunction", {})
    assert failed.failed
    assert failed.json()["errorType"] == "ValueError"
    assert failed.json()["errorMessage"] == "the handler broke"

    assert runtime.invoke("OddFunction", {}).json()["errorType"] == "Runtime.MarshalError"
    assert runtime.invoke("MissingFunction", {}).json()["errorType"] == "Runtime.ImportModuleError"
    with pytest.raises(local_lambda.FunctionNotFoundError):
        runtime.invoke("NoSuchFunction", {})


def test_the_template_functions_get_their_environment_and_local_secrets() -> None:
    runtime = FunctionRuntime.from_template({"CreditsTable": "local-table"})

    transactions = runtime.specs["TransactionsFunction"].environment
    assert transactions["TABLE_NAME"] == "local-table"
    assert transactions["STAGE"] == "dev"
    # The cursor key is no environment variable: the template names its secret (a Ref,
    # here the logical id) and leaves the local-only key empty (the local stack sets both).
    assert transactions["CURSOR_SIGNING_SECRET_ARN"] == "CursorSigningSecret"
    assert transactions["CURSOR_SIGNING_KEY"] == ""
    assert runtime.specs["ExampleConsumerFunction"].environment["DEBIT_FUNCTION_NAME"] == (
        "DebitFunction"
    )
    union = runtime.environment()
    assert union["CURSOR_SIGNING_SECRET_ARN"] == "CursorSigningSecret"
    assert union["TABLE_NAME"] == "local-table"


def test_one_variable_with_two_values_cannot_share_a_process(tmp_path: Path) -> None:
    specs = [
        FunctionSpec("A", tmp_path, "h.f", {"MODE": "one"}, {}),
        FunctionSpec("B", tmp_path, "h.f", {"MODE": "two"}, {}),
    ]
    with pytest.raises(ValueError, match="MODE"):
        local_lambda.union_environment(specs)


def test_only_secrets_manager_references_resolve_locally() -> None:
    local: dict[str, str] = {}
    first = local_lambda.resolve_dynamic_references(
        "{{resolve:secretsmanager:arn-1:SecretString}}", local
    )
    again = local_lambda.resolve_dynamic_references("{{resolve:secretsmanager:arn-1}}", local)
    assert first == again
    with pytest.raises(ValueError, match="cannot resolve"):
        local_lambda.resolve_dynamic_references("{{resolve:ssm:/a/b}}", local)


def test_template_handlers_import_as_the_tests_import_them() -> None:
    runtime = FunctionRuntime.from_template({"CreditsTable": "t"})
    handler = runtime.handler("DebitFunction")
    assert handler.__module__ == "functions.debit.app"
    assert runtime.handler("DebitFunction") is handler


# ---------------------------------------------------------------- the Invoke API
def test_boto3_invokes_a_function_unchanged(lambda_client: LambdaClient) -> None:
    response = lambda_client.invoke(FunctionName="EchoFunction", Payload=b'{"n": 1}')

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert payload(response)["event"] == {"n": 1}


def test_names_arns_and_qualifiers_reach_the_function(lambda_client: LambdaClient) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction:$LATEST"
    assert payload(lambda_client.invoke(FunctionName=arn))["event"] == {}
    assert payload(lambda_client.invoke(FunctionName="EchoFunction:live"))["function"] == (
        "EchoFunction"
    )


def test_a_raised_exception_is_an_unhandled_function_error(lambda_client: LambdaClient) -> None:
    response = lambda_client.invoke(FunctionName="FailingFunction", Payload=b"{}")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    body = payload(response)
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "the handler broke"


def test_unknown_functions_and_bad_payloads_are_client_errors(lambda_client: LambdaClient) -> None:
    with pytest.raises(ClientError) as missing:
        lambda_client.invoke(FunctionName="NoSuchFunction")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    with pytest.raises(ClientError) as malformed:
        lambda_client.invoke(FunctionName="EchoFunction", Payload=b"{not json")
    assert malformed.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_event_and_dry_run_invocations(lambda_client: LambdaClient) -> None:
    assert (
        lambda_client.invoke(FunctionName="EchoFunction", InvocationType="Event")["StatusCode"]
        == 202
    )
    assert (
        lambda_client.invoke(FunctionName="EchoFunction", InvocationType="DryRun")["StatusCode"]
        == 204
    )


def test_other_paths_are_not_lambda_operations(runtime: FunctionRuntime) -> None:
    client = Client(lambda_invoke_app(runtime))
    response = client.get("/2015-03-31/functions/EchoFunction/invocations")
    assert response.status_code == 404
    assert response.headers["X-Amzn-ErrorType"] == "UnknownOperationException"


# ---------------------------------------------------------------- one environment per function
def test_a_function_runs_one_invocation_at_a_time_others_run_alongside(
    runtime: FunctionRuntime,
) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        same = [pool.submit(runtime.invoke, "SlowFunction", {"seconds": 0.3}) for _ in range(2)]
        other = pool.submit(runtime.invoke, "OtherSlowFunction", {"seconds": 0.3})
        other.result()
        other_done = time.monotonic() - started
        for future in same:
            future.result()
    both_done = time.monotonic() - started

    assert both_done >= 0.6  # the two invocations of one function took turns
    assert other_done < 0.55  # another function did not wait for them


def test_a_function_busy_for_its_whole_timeout_is_throttled(
    runtime: FunctionRuntime, lambda_client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = local_lambda._function_setting
    monkeypatch.setattr(
        local_lambda,
        "_function_setting",
        lambda name, setting, default: (
            0.2 if setting == "Timeout" else real(name, setting, default)
        ),
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(runtime.invoke, "SlowFunction", {"seconds": 1})
        time.sleep(0.1)
        with pytest.raises(local_lambda.FunctionBusyError):
            runtime.invoke("SlowFunction", {})
        with pytest.raises(ClientError) as throttled:
            lambda_client.invoke(FunctionName="SlowFunction", Payload=b"{}")
        busy.result()
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"


# ---------------------------------------------------------------- Powertools metrics per function
METRICS_HANDLERS = """
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

metrics = Metrics()


@metrics.log_metrics
def _measured(event, context):
    before = event.get("before")
    if before is not None and not before.wait(5):
        raise TimeoutError("the other function never added its metric")
    metrics.add_metric(name=event["metric"], unit=MetricUnit.Count, value=1)
    added = event.get("added")
    if added is not None:
        added.set()
    after = event.get("after")
    if after is not None and not after.wait(5):
        raise TimeoutError("the other function never flushed")
    return {"metric": event["metric"]}


def handler(event, context):
    result = _measured(event, context)  # its metrics are flushed (printed) on return
    flushed = event.get("flushed")
    if flushed is not None:
        flushed.set()
    return result
"""


@pytest.fixture
def metered(tmp_path: Path) -> FunctionRuntime:
    """Three functions whose module-level `Metrics` flush on every invocation (each function
    loads the module under a name of its own, as each has its own environment in Lambda)."""
    (tmp_path / "metered.py").write_text(textwrap.dedent(METRICS_HANDLERS))
    return FunctionRuntime(
        {
            name: FunctionSpec(name, tmp_path, "metered.handler", {}, {})
            for name in ("FirstFunction", "SecondFunction", "ThirdFunction")
        }
    )


def emitted(out: str) -> list[set[str]]:
    """The metric names of each EMF document printed."""
    documents = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [
        {metric["Name"] for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        for document in documents
    ]


@pytest.mark.filterwarnings("error:No application metrics to publish:UserWarning")
def test_one_functions_flush_never_takes_another_functions_metrics(
    metered: FunctionRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    """The interleaving behind the local stack's occasional 502s, forced with events: the
    first function adds its metric, the second adds and flushes its own, then the first
    flushes. With Powertools' one class-level set, the second flush published and cleared the
    first's metric, and the first then flushed nothing (or failed serialising a set emptied
    under it). Each function must publish exactly its own metric."""
    first_added, second_flushed = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(
            metered.invoke,
            "FirstFunction",
            {"metric": "First", "added": first_added, "after": second_flushed},
        )
        second = pool.submit(
            metered.invoke,
            "SecondFunction",
            {"metric": "Second", "before": first_added, "flushed": second_flushed},
        )
        results = [first.result(), second.result()]

    assert [result.failed for result in results] == [False, False], [
        result.json() for result in results
    ]
    assert emitted(capsys.readouterr().out) == [{"Second"}, {"First"}]


def test_many_threads_invoking_metered_functions_never_fail(
    metered: FunctionRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hammering: 16 threads, 600 invocations over three functions; every invocation
    succeeds and every metric is published exactly once, by its own function."""
    names = sorted(metered.specs)
    calls = [names[i % len(names)] for i in range(600)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(
            pool.map(
                lambda name: metered.invoke(name, {"metric": name.removesuffix("Function")}), calls
            )
        )

    failures = [result.json() for result in results if result.failed]
    assert failures == []
    published = emitted(capsys.readouterr().out)
    assert all(len(names_in_one) == 1 for names_in_one in published), published
    assert len(published) == len(calls)
