"""API Gateway REST (proxy, v1) events and Lambda contexts for calling the HTTP handlers
in-process, as API Gateway would after accepting an API key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from devtools import template
from devtools.memory_api_keys import InMemoryKeyIssuer
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.ledger.provisioning import Tier

EVENTS_DIR = template.PROJECT_ROOT / "events"


@dataclass
class LambdaContextStub:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "local-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local-function"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def api_event(
    path: str,
    query: Mapping[str, str | list[str]] | None = None,
    *,
    api_key_id: str | None,
    method: str = "GET",
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """A REST API proxy event for `path`, with `requestContext.identity.apiKeyId` set as
    API Gateway sets it for a request whose key it accepted (None: no key)."""
    multi = {k: list(v) if isinstance(v, list) else [v] for k, v in (query or {}).items()}
    single = {k: v[-1] for k, v in multi.items() if v}
    all_headers = {"Accept": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": single or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": request_id or str(uuid.uuid4()),
            "identity": {"apiKeyId": api_key_id, "sourceIp": "127.0.0.1"},
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def load_event(name: str) -> dict[str, Any]:
    """An event file from `events/` (name without `.json`)."""
    document: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    return document


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


def invoke(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any]
) -> ApiResponse:
    """Call a handler with an event; the proxy response with its JSON body parsed."""
    raw = handler(event, LambdaContextStub())
    headers = {k: v[-1] for k, v in (raw.get("multiValueHeaders") or {}).items() if v}
    headers.update(raw.get("headers") or {})
    text = raw.get("body")
    return ApiResponse(int(raw["statusCode"]), headers, json.loads(text) if text else None)


def event_files() -> list[Path]:
    return sorted(EVENTS_DIR.glob("*.json"))


@dataclass(frozen=True)
class ApiAccount:
    account_id: str
    api_key_id: str


def open_account(
    account_id: str,
    *,
    opening_balance: str | int = 0,
    tier: str = "free",
    **settings: Any,
) -> ApiAccount:
    """Provision an account with an API key (in-memory issuer) through the library, on the
    process's store, for calling the handlers as its owner."""
    provisioned = wiring.provisioner().provision_account(
        CreateAccountCommand(
            account_id=account_id, opening_balance=Decimal(opening_balance), **settings
        ),
        Tier(tier),
        issuer=InMemoryKeyIssuer(),
    )
    return ApiAccount(provisioned.account.account_id, provisioned.api_key_id)
