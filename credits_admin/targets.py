"""Where the AdminFunction is, and how it is invoked (Lambda's Invoke API, with IAM).

- `--local`: the local stack `make run` serves, described by `.local/stack.json` (its
  `lambdaEndpoint` and `region`; the local Invoke API accepts any credentials).
- `--stack-name NAME [--region R]`: a deployed stack; the function's name is its
  CloudFormation output `AdminFunctionName`.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

LOCAL_STACK_FILE = Path(".local") / "stack.json"
LOCAL_FUNCTION = "AdminFunction"  # the local Invoke API serves functions by logical id
FUNCTION_OUTPUT = "AdminFunctionName"
LOCAL_CREDENTIALS = {"accessKeyId": "local", "secretAccessKey": "local"}
READ_TIMEOUT = 60  # seconds; an operator's request may reconcile every account


class TargetError(Exception):
    """The target cannot be reached or described (exit 1, with this message)."""


class InvokeFailed(Exception):
    """The AdminFunction failed unexpectedly (a function error, not a refusal)."""


class Invoker(Protocol):
    """Sends one request to the AdminFunction and returns its JSON response."""

    def invoke(self, payload: dict[str, Any]) -> Any: ...

    def default_actor(self) -> str: ...


@dataclass(frozen=True)
class Target:
    local: bool
    stack_file: Path | None = None
    stack_name: str | None = None
    region: str | None = None


def local_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container's uid without passwd)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class LambdaInvoker:
    def __init__(self, client: Any, function_name: str, actor: Any = None) -> None:
        self._client = client
        self.function_name = function_name
        self._actor = actor  # a callable giving the default actor, or None: user@host

    def invoke(self, payload: dict[str, Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response = self._client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
            raw = response["Payload"].read()
        except (BotoCoreError, ClientError) as exc:
            raise TargetError(f"cannot invoke {self.function_name}: {exc}") from exc
        try:
            body = json.loads(raw or b"null", parse_float=Decimal)
        except ValueError as exc:
            raise InvokeFailed(f"{self.function_name} returned no JSON: {raw[:200]!r}") from exc
        if response.get("FunctionError"):
            message = body.get("errorMessage") if isinstance(body, dict) else body
            raise InvokeFailed(f"{self.function_name} failed: {message}")
        return body

    def default_actor(self) -> str:
        return str(self._actor()) if self._actor is not None else local_actor()


def connect(target: Target) -> Invoker:
    """An invoker for `target` (boto3 is imported here: `--help` stays fast)."""
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    # No retries of our own on a read timeout: money operations are idempotent by key, but
    # the operator decides whether to retry (the key is printed).
    config = Config(retries={"total_max_attempts": 1}, read_timeout=READ_TIMEOUT)
    if target.local:
        description = read_stack_file(target.stack_file or LOCAL_STACK_FILE)
        credentials = {**LOCAL_CREDENTIALS, **(description.get("credentials") or {})}
        functions = description.get("functions")
        if isinstance(functions, list) and LOCAL_FUNCTION not in functions:
            raise TargetError(
                f"the local stack has no {LOCAL_FUNCTION} (functions: {', '.join(functions)}): "
                "restart `make run` with this version"
            )
        client = boto3.client(
            "lambda",
            endpoint_url=str(description["lambdaEndpoint"]),
            region_name=str(description.get("region") or "us-east-1"),
            aws_access_key_id=str(credentials["accessKeyId"]),
            aws_secret_access_key=str(credentials["secretAccessKey"]),
            config=config,
        )
        return LambdaInvoker(client, LOCAL_FUNCTION)
    assert target.stack_name is not None  # noqa: S101 - the parser requires a target
    session = boto3.session.Session(region_name=target.region)
    function_name = stack_output(session, target.stack_name, FUNCTION_OUTPUT)

    def caller_arn() -> str:
        try:
            return str(session.client("sts").get_caller_identity()["Arn"])
        except Exception:
            return local_actor()

    return LambdaInvoker(session.client("lambda", config=config), function_name, caller_arn)


def read_stack_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(
            f"{path} not found: start the local stack with `make run` (in this directory), "
            "or pass --stack-file PATH"
        ) from None
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc}") from exc
    try:
        description = json.loads(text)
    except ValueError as exc:
        raise TargetError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(description, dict) or not description.get("lambdaEndpoint"):
        raise TargetError(f"{path} has no lambdaEndpoint: is it a local stack description?")
    return description


def stack_output(session: Any, stack_name: str, output: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise TargetError(f"cannot describe stack {stack_name}: {exc}") from exc
    for stack in stacks:
        for item in stack.get("Outputs") or []:
            if item.get("OutputKey") == output:
                return str(item["OutputValue"])
    raise TargetError(f"stack {stack_name} has no output {output}: deploy this version first")
