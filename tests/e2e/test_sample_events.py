"""Every events/*.json against the running stack, as `sam local invoke -e` sends it with
env.json: the API events' key id resolves to the demo account, the debit events charge it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools import template
from devtools.local_gateway import match, routes

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

pytestmark = pytest.mark.e2e

EVENTS = sorted((template.PROJECT_ROOT / "events").glob("*.json"))


def function_for(path: Path, event: dict[str, Any]) -> str:
    """The function an event is for: by route for API events, else by file name."""
    if "httpMethod" in event:
        found = match(
            routes(template.functions(), "CreditsApi"), event["httpMethod"], event["path"]
        )
        assert found is not None, f"{path.name}: no route for {event['path']}"
        return found[0].function
    stem = path.stem.replace("-", "").lower()
    for logical_id in template.functions():
        if stem.startswith(logical_id.removesuffix("Function").lower()):
            return logical_id
    raise AssertionError(f"{path.name}: which function is it for?")


@pytest.mark.parametrize("path", EVENTS, ids=lambda path: path.name)
def test_a_sample_event_works_against_the_local_stack(
    path: Path, lambda_client: LambdaClient
) -> None:
    event = json.loads(path.read_text())
    function = function_for(path, event)

    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    body = json.loads(response["Payload"].read())

    assert "FunctionError" not in response, body
    if "httpMethod" in event:
        assert body["statusCode"] == 200, body
        assert json.loads(body["body"])
    elif path.stem.endswith("insufficient"):
        assert body["error"]["code"] == "INSUFFICIENT_CREDITS"
    else:
        assert "error" not in body, body
