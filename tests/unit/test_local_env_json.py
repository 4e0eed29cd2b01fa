"""env.json (`sam local invoke/start-api --env-vars`, see samconfig.toml) points every function
at the local stack's DynamoDB Local from inside the SAM container."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import template
from devtools.local_stack import LocalStack, StackSettings

ENV_FILE = template.PROJECT_ROOT / "env.json"
FROM_CONTAINER = "http://host.docker.internal"


@pytest.fixture(scope="module")
def env_vars() -> dict[str, dict[str, str]]:
    loaded: dict[str, Any] = json.loads(ENV_FILE.read_text())
    return loaded


def test_every_function_has_an_entry_and_every_entry_is_a_function(
    env_vars: dict[str, dict[str, str]],
) -> None:
    assert set(env_vars) == set(template.functions())


def test_functions_reach_the_local_stacks_table_and_dynamodb_local(
    env_vars: dict[str, dict[str, str]],
) -> None:
    """`make run` (defaults) serves the table env.json names on the port it names."""
    defaults = StackSettings()
    table = LocalStack(defaults).table_name
    for function, values in env_vars.items():
        assert values["TABLE_NAME"] == table, function
        assert values["AWS_ENDPOINT_URL_DYNAMODB"] == (
            f"{FROM_CONTAINER}:{defaults.dynamodb_port}"
        ), function


def test_functions_that_invoke_others_reach_the_local_invoke_api(
    env_vars: dict[str, dict[str, str]],
) -> None:
    for function, spec in template.functions().items():
        if "DEBIT_FUNCTION_NAME" in spec.environment:
            assert env_vars[function]["DEBIT_FUNCTION_NAME"] == "DebitFunction"
            assert env_vars[function]["AWS_ENDPOINT_URL_LAMBDA"] == (
                f"{FROM_CONTAINER}:{StackSettings().lambda_port}"
            )


def test_secrets_resolved_at_deploy_time_get_a_local_value(
    env_vars: dict[str, dict[str, str]],
) -> None:
    for function, spec in template.functions().items():
        for name, value in spec.environment.items():
            if "{{resolve:" in value:
                assert env_vars[function].get(name), f"{function}.{name} needs a local value"


def test_env_json_only_sets_variables_the_template_declares(
    env_vars: dict[str, dict[str, str]],
) -> None:
    """SAM CLI applies an --env-vars value only to a variable the function's template
    environment declares (samcli/local/lambdafn/env_vars.py `resolve`): any other is silently
    dropped. An endpoint variable declared empty in the template is inert in AWS (botocore
    ignores an empty AWS_ENDPOINT_URL_*) and overridable locally."""
    for function, values in env_vars.items():
        declared = template.functions()[function].environment
        undeclared = sorted(set(values) - set(declared))
        assert not undeclared, (
            f"{function}: template.yaml must declare {undeclared} (e.g. empty in "
            "Globals.Function.Environment) or sam local ignores them"
        )


def test_functions_reading_the_cursor_secret_get_a_local_key_instead(
    env_vars: dict[str, dict[str, str]],
) -> None:
    """No Secrets Manager under `sam local`: the secret's name is blanked, which makes the
    functions use the local-only CURSOR_SIGNING_KEY (docs/security.md)."""
    readers = [
        f for f, s in template.functions().items() if "CURSOR_SIGNING_SECRET_ARN" in s.environment
    ]
    assert readers
    for function in readers:
        assert env_vars[function]["CURSOR_SIGNING_SECRET_ARN"] == ""
        assert len(env_vars[function]["CURSOR_SIGNING_KEY"]) >= 16
