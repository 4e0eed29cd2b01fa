"""Least privilege, checked: every DynamoDB request a function's handler makes is allowed by
that function's policy in `template.yaml`, evaluated as IAM evaluates it (the action, the
table or index ARN, and `dynamodb:LeadingKeys` against the request's partition keys).

Each function runs its use cases on moto (a debit, a reserve/capture/release, every HTTP
route, the admin operations, a stream batch, an expiry sweep, a reconciliation) while a
botocore hook records the requests of the function that is running. A request the policy
does not allow fails the test with the function, action and key: in AWS it would be an
AccessDenied. The table of what each function may touch is in docs/security.md.

The recorded requests also show what a policy grants that nothing uses (`test_no_function
is granted an action it never uses`), so a grant cannot linger after its code is gone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from devtools import template
from devtools.api_events import LambdaContextStub, api_event, invoke
from devtools.streams import StreamPoller, materializer_poller, streams_client_for
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreditCommand, ReserveCommand
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore

ACTOR = "ops@example"
TABLE = "CreditsTable"
# A request's action as IAM names it, per operation; a transaction is authorized item by
# item, each as the single-item action it contains.
_TRANSACT_ACTIONS = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem"}


# ---------------------------------------------------------------- the template's policies
@dataclass(frozen=True)
class Grant:
    """One Allow statement's DynamoDB part: actions on the table or one of its indexes,
    optionally only for partition keys matching `leading_keys` (ForAllValues:StringLike)."""

    actions: frozenset[str]
    index: str | None  # None: the table itself
    leading_keys: tuple[str, ...] | None

    def allows(self, action: str, index: str | None, pks: tuple[str, ...]) -> bool:
        if action not in self.actions or index != self.index:
            return False
        if self.leading_keys is None:
            return True
        # ForAllValues is vacuously true for a request without partition keys (a Scan):
        # never rely on it to narrow one, so such a request needs an unconditioned grant.
        return bool(pks) and all(
            any(fnmatch.fnmatchcase(pk, pattern) for pattern in self.leading_keys) for pk in pks
        )


def _resource_index(resource: Any) -> str | None:
    """`!GetAtt CreditsTable.Arn` -> None; `!Sub ${CreditsTable.Arn}/index/X` -> "X"."""
    if resource in ({"Fn::GetAtt": f"{TABLE}.Arn"}, {"Fn::GetAtt": [TABLE, "Arn"]}):
        return None
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        found = re.fullmatch(
            r"\$\{" + TABLE + r"\.Arn\}/index/([A-Za-z0-9_.-]+)", resource["Fn::Sub"]
        )
        if found:
            return found.group(1)
    raise AssertionError(f"a DynamoDB grant on an unexpected resource: {resource!r}")


def grants(function: str) -> list[Grant]:
    """The function's DynamoDB grants (its inline statements; SAM policy templates such as
    SQSSendMessagePolicy grant no DynamoDB action)."""
    properties = template.resource(function)["Properties"]
    found: list[Grant] = []
    for policy in properties.get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            assert not any("DynamoDB" in str(name) for name in policy), policy
            continue
        for statement in policy["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            dynamodb = frozenset(a.split(":", 1)[1] for a in actions if a.startswith("dynamodb:"))
            if not dynamodb:
                continue
            assert statement["Effect"] == "Allow"
            assert "*" not in "".join(dynamodb), statement
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            condition = statement.get("Condition", {})
            leading = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            for resource in resources:
                found.append(
                    Grant(dynamodb, _resource_index(resource), tuple(leading) if leading else None)
                )
    return found


# ---------------------------------------------------------------- the recorded requests
@dataclass(frozen=True)
class Request:
    function: str
    action: str
    index: str | None
    pks: tuple[str, ...]

    def __str__(self) -> str:
        where = f" on index {self.index}" if self.index else ""
        return f"{self.function}: dynamodb:{self.action}{where} pk={list(self.pks)}"


def _pk(item: dict[str, Any]) -> str:
    return str(item["pk"]["S"])


def _query_pk(params: dict[str, Any]) -> tuple[str, ...]:
    """The partition key value a Query's key condition names (`<attr> = :placeholder`)."""
    expression = params["KeyConditionExpression"]
    found = re.match(r"\s*(#?\w+)\s*=\s*(:\w+)", expression)
    assert found, expression
    return (str(params["ExpressionAttributeValues"][found.group(2)]["S"]),)


def requests_of(function: str, operation: str, params: dict[str, Any]) -> list[Request]:  # noqa: PLR0911 - one return per operation
    """The IAM requests one DynamoDB API call makes (a transaction: one per item)."""
    index = params.get("IndexName")
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        return [Request(function, operation, None, (_pk(params["Key"]),))]
    if operation == "PutItem":
        return [Request(function, operation, None, (_pk(params["Item"]),))]
    if operation == "Query":
        return [Request(function, operation, index, _query_pk(params))]
    if operation == "Scan":
        return [Request(function, operation, index, ())]
    if operation == "BatchGetItem":
        pks = tuple(_pk(k) for table in params["RequestItems"].values() for k in table["Keys"])
        return [Request(function, operation, None, pks)]
    if operation == "TransactWriteItems":
        found = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            target = body.get("Key") or body["Item"]
            action = _TRANSACT_ACTIONS.get(kind, "ConditionCheckItem")
            found.append(Request(function, action, None, (_pk(target),)))
        return found
    return [Request(function, operation, index, ())]


@dataclass
class Recorder:
    """Attributes each DynamoDB call made on the service's client to the running function."""

    function: str | None = None
    requests: list[Request] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is not None:
            self.requests.extend(requests_of(self.function, model.name, params))

    @contextlib.contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None


# ---------------------------------------------------------------- the functions' use cases
FUNCTIONS_WITH_TABLE_ACCESS = (
    "AdminFunction",
    "DebitFunction",
    "BalanceFunction",
    "TransactionsFunction",
    "StatsFunction",
    "AccountSummaryFunction",
    "MaterializerFunction",
    "EventPublisherFunction",
    "ExpirerFunction",
    "ReconcilerFunction",
)


def _handler(function: str) -> Any:
    module = template.resource(function)["Properties"]["CodeUri"].split("/")[-1]
    return __import__(f"functions.{module}.app", fromlist=["app"]).lambda_handler


def _admin(recorder: Recorder, operation: str, **fields: Any) -> dict[str, Any]:
    with recorder.running("AdminFunction"):
        response: dict[str, Any] = _handler("AdminFunction")(
            {"operation": operation, "actor": ACTOR, **fields}, LambdaContextStub()
        )
    assert "error" not in response, (operation, response)
    return response


def _debit(recorder: Recorder, **fields: Any) -> dict[str, Any]:
    with recorder.running("DebitFunction"):
        response: dict[str, Any] = _handler("DebitFunction")(fields, LambdaContextStub())
    return response


def _http(recorder: Recorder, function: str, path: str, api_key_id: str, **query: str) -> Any:
    with recorder.running(function):
        response = invoke(_handler(function), api_event(path, query, api_key_id=api_key_id))
    assert response.status == 200, (path, response.body)
    return response.body


@pytest.fixture
def recorded(moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every function's use cases, run on moto; the requests each made."""
    gateway = boto3.client("apigateway", region_name="us-east-1")
    for tier in ("FREE", "PRO"):
        plan = gateway.create_usage_plan(name=f"credits-{tier}")["id"]
        monkeypatch.setenv(f"{tier}_USAGE_PLAN_ID", plan)
    bus = boto3.client("events", region_name="us-east-1").create_event_bus(Name="credits")
    queue = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replay")
    monkeypatch.setenv("EVENT_BUS_NAME", bus["EventBusArn"].split("/")[-1])
    monkeypatch.setenv("EVENT_REPLAY_QUEUE_URL", queue["QueueUrl"])
    # No cache of API-key mappings or prices: each function makes its own reads, as it
    # does in its own execution environment.
    monkeypatch.setenv("CACHE_SECONDS", "0")
    for name in ("API_GATEWAY", "EVENTBRIDGE", "SQS"):
        monkeypatch.delenv(f"AWS_ENDPOINT_URL_{name}", raising=False)
    wiring.reset()
    store = wiring.store()
    recorder = Recorder()
    store.client.meta.events.register("provide-client-params.dynamodb.*", recorder)
    materialize = materializer_poller(store.client, store.table_name)
    materialize.stream_arn()
    publisher = StreamPoller(
        store.client,
        streams_client_for(store.client),
        store.table_name,
        lambda event: _handler("EventPublisherFunction")(event, LambdaContextStub()),
    )
    publisher.stream_arn()

    def stream_consumers() -> None:
        with recorder.running("MaterializerFunction"):
            materialize.drain()
        with recorder.running("EventPublisherFunction"):
            publisher.drain()

    # Operators: an account with a key, money in, settings, keys listed and rotated.
    created = _admin(recorder, "accounts.create", name="Acme", credits=100)
    account = created["accountId"]
    api_key_id = created["apiKeyId"]
    _admin(recorder, "credits.topup", accountId=account, amount=50, idempotencyKey="top-1")
    _admin(recorder, "credits.grant", accountId=account, amount=5, idempotencyKey="grant-1")
    _admin(
        recorder,
        "credits.adjust",
        accountId=account,
        amount=-1,
        reason="fix",
        idempotencyKey="adj-1",
    )
    _admin(
        recorder,
        "accounts.set",
        accountId=account,
        lowBalanceThreshold=140,
        autoReload=True,
        autoReloadThreshold=120,
        autoReloadAmount=10,
    )
    _admin(recorder, "accounts.show", accountId=account)
    _admin(recorder, "accounts.list")
    _admin(recorder, "keys.list", accountId=account)
    _admin(recorder, "keys.create", accountId=account)
    stream_consumers()

    # Services: a debit, its replay and void; a reserve captured, one released; a refusal.
    debit = _debit(recorder, accountId=account, amount="2", idempotencyKey="d-1", endpoint="/x")
    assert "error" not in debit, debit
    _debit(recorder, accountId=account, amount="2", idempotencyKey="d-1", endpoint="/x")
    _debit(
        recorder,
        operation="void",
        accountId=account,
        transactionId=debit["transactionId"],
        idempotencyKey="v-1",
    )
    refused = _debit(recorder, accountId=account, amount="100000", idempotencyKey="d-2")
    assert refused["error"]["code"] == "INSUFFICIENT_CREDITS", refused
    for n, operation in enumerate(("capture", "release")):
        hold = _debit(
            recorder,
            operation="reserve",
            accountId=account,
            amount="3",
            expiresIn=60,
            idempotencyKey=f"r-{n}",
        )
        assert "error" not in hold, hold
        fields = {"amount": "2"} if operation == "capture" else {}
        done = _debit(
            recorder,
            operation=operation,
            accountId=account,
            holdId=hold["holdId"],
            idempotencyKey=f"{operation}-{n}",
            **fields,
        )
        assert "error" not in done, done
    stream_consumers()
    more = _debit(recorder, accountId=account, amount="30", idempotencyKey="d-3", endpoint="/x")
    assert "error" not in more, more  # crosses the low-balance and auto-reload thresholds
    # A hold made ten minutes ago for a minute: past its expiry, the sweep's to release.
    past = wiring.build_ledger(
        store, wiring.prices(), clock=lambda: datetime.now(UTC) - timedelta(minutes=10)
    )
    late = past.holds.reserve(
        ReserveCommand(
            account_id=account, idempotency_key="r-late", amount=Decimal(1), expires_in=60
        )
    )
    open_hold, _ = (
        _debit(
            recorder,
            operation="reserve",
            accountId=account,
            amount="1",
            expiresIn=600,
            idempotencyKey=f"r-open-{n}",
        )
        for n in range(2)
    )
    stream_consumers()

    # Lots: a grant with an expiry (spent first: priority 90), a debit across it and the
    # next lot, and a lot granted ten minutes ago for five: past its expiry, the sweep's.
    granted = _admin(
        recorder,
        "credits.grant",
        accountId=account,
        amount=4,
        priority=90,
        expiresAt=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
        idempotencyKey="grant-exp",
    )
    across = _debit(recorder, accountId=account, amount="6", idempotencyKey="d-lots")
    assert "error" not in across, across
    spent = store.accounts.get(account, consistent=True)
    assert spent is not None
    assert granted["lotId"] not in (spent.lots or {})  # burned whole, the rest from another
    expiring = past.grant(
        CreditCommand(
            account_id=account,
            idempotency_key="g-late",
            amount=Decimal(3),
            expires_at=datetime.now(UTC) - timedelta(minutes=4),
        )
    )
    assert expiring.lots, expiring
    stream_consumers()  # the LOT items, and the expiring one's listing in the expiry index

    # The expiry sweep (before an operator's reconciliation would expire the hold): the
    # overdue hold, then the overdue lot, which leaves the account item and the index.
    with recorder.running("ExpirerFunction"):
        swept = _handler("ExpirerFunction")({}, LambdaContextStub())
    assert late.hold_id
    assert swept["expired"] == 1, swept
    assert (swept["lots"]["due"], swept["lots"]["expired"]) == (1, 1), swept
    stream_consumers()

    # Customers: every route, the paged ones over two pages (a signed cursor).
    _http(recorder, "BalanceFunction", "/v1/credits/balance", api_key_id)
    _http(recorder, "BalanceFunction", "/v1/credits/balances", api_key_id)
    page = _http(
        recorder, "BalanceFunction", "/v1/credits/balances", api_key_id, status="all", limit="2"
    )
    assert page["nextCursor"], page
    _http(
        recorder,
        "BalanceFunction",
        "/v1/credits/balances",
        api_key_id,
        status="all",
        limit="2",
        cursor=page["nextCursor"],
    )
    page = _http(recorder, "BalanceFunction", "/v1/credits/holds", api_key_id, limit="1")
    assert page["nextCursor"], page
    _http(
        recorder,
        "BalanceFunction",
        "/v1/credits/holds",
        api_key_id,
        limit="1",
        cursor=page["nextCursor"],
    )
    page = _http(
        recorder, "TransactionsFunction", "/v1/credits/transactions", api_key_id, limit="2"
    )
    _http(
        recorder,
        "TransactionsFunction",
        "/v1/credits/transactions",
        api_key_id,
        limit="2",
        cursor=page["nextCursor"],
    )
    _http(
        recorder,
        "TransactionsFunction",
        "/v1/credits/transactions",
        api_key_id,
        type="debit",
        limit="1",
    )
    today = datetime.now(UTC).date().isoformat()
    _http(
        recorder,
        "TransactionsFunction",
        "/v1/credits/transactions",
        api_key_id,
        **{"from": today, "to": today},
    )
    _http(recorder, "StatsFunction", "/v1/credits/stats", api_key_id)
    _http(recorder, "AccountSummaryFunction", "/v1/account/summary", api_key_id)

    # Operators again: the ledger, holds, a refund, a hold released by hand, a reconciliation.
    _admin(recorder, "ledger.list", accountId=account)
    _admin(recorder, "holds.list", accountId=account)
    lots = _admin(recorder, "lots.list", accountId=account)
    assert lots["lots"], lots
    _admin(recorder, "lots.expire", accountId=account)
    _admin(
        recorder,
        "credits.refund",
        accountId=account,
        transactionId=more["transactionId"],
        amount=1,
        idempotencyKey="ref-1",
    )
    _admin(
        recorder,
        "holds.release",
        accountId=account,
        holdId=open_hold["holdId"],
        idempotencyKey="rel-1",
    )
    _admin(recorder, "reconcile", accountId=account)
    _admin(recorder, "keys.rotate", accountId=account)
    stream_consumers()

    # The nightly reconciliation, and on demand; it expires a hold and a lot left past
    # their expiry.
    past.holds.reserve(
        ReserveCommand(
            account_id=account, idempotency_key="r-overdue", amount=Decimal(1), expires_in=60
        )
    )
    past.grant(
        CreditCommand(
            account_id=account,
            idempotency_key="g-overdue",
            amount=Decimal(2),
            expires_at=datetime.now(UTC) - timedelta(minutes=4),
        )
    )
    stream_consumers()
    # A debit and a grant the stream has not delivered yet: a gap the reconciler fills at
    # once (settle 0), the grant's LOT item with it.
    gap = _debit(recorder, accountId=account, amount="1", idempotencyKey="d-gap", endpoint="/x")
    assert "error" not in gap, gap
    _admin(recorder, "credits.grant", accountId=account, amount=2, idempotencyKey="grant-gap")
    monkeypatch.setenv("RECONCILE_SETTLE_SECONDS", "0")
    get_settings.cache_clear()
    wiring.reconciler.cache_clear()
    with recorder.running("ReconcilerFunction"):
        _handler("ReconcilerFunction")({}, LambdaContextStub())
        _handler("ReconcilerFunction")({"accountId": account}, LambdaContextStub())
    # An operator's grant the stream has not delivered: an operator's `reconcile` fills its
    # entry and its LOT item.
    _admin(recorder, "credits.grant", accountId=account, amount=1, idempotencyKey="grant-gap-2")
    filled = _admin(recorder, "reconcile", accountId=account)
    assert filled["filled"] == 1, filled
    return recorder.requests


def test_every_request_is_allowed_by_its_functions_policy(recorded: list[Request]) -> None:
    denied = sorted(
        {
            str(r)
            for r in recorded
            if not any(g.allows(r.action, r.index, r.pks) for g in grants(r.function))
        }
    )
    assert not denied, "AccessDenied in AWS:\n" + "\n".join(denied)
    assert {r.function for r in recorded} == set(FUNCTIONS_WITH_TABLE_ACCESS)


def test_every_leading_key_pattern_names_a_key_the_storage_builds() -> None:
    """A pattern that matches no key `storage.keys` builds is a typo that denies a request."""
    built = [
        keys.account_pk("a"),
        keys.ledger_pk("a"),
        keys.idempotency_pk("a", "k"),
        keys.usage_pk("a"),
        keys.apikey_pk("k"),
        keys.account_keys_pk("a"),
        keys.refunds_pk("a", "t"),
        keys.holds_pk("a"),
        keys.lots_pk("a"),
        keys.PRICES_PK,
    ]
    for function in FUNCTIONS_WITH_TABLE_ACCESS:
        for grant in grants(function):
            for pattern in grant.leading_keys or ():
                assert any(fnmatch.fnmatchcase(pk, pattern) for pk in built), (function, pattern)


def test_no_function_is_granted_an_action_it_never_uses(recorded: list[Request]) -> None:
    """Each granted action is used by some recorded request of the function; the few used
    only on paths this scenario does not reach are named here, with where they run."""
    unreached = {
        # A top-up answering a pending auto-reload request: the publisher reads its record.
        ("EventPublisherFunction", "GetItem"),
        # A refused expiry releases its lease (tests/unit/test_expirer_function.py); the
        # reconciler's expiry goes through the same write path.
        ("ExpirerFunction", "DeleteItem"),
        ("ReconcilerFunction", "DeleteItem"),
    }
    used = {(r.function, r.action) for r in recorded}
    for function in FUNCTIONS_WITH_TABLE_ACCESS:
        for grant in grants(function):
            for action in grant.actions:
                key = (function, action)
                assert key in used or key in unreached, f"{function} never uses {action}"


def test_scans_are_granted_without_a_leading_keys_condition() -> None:
    """ForAllValues:StringLike on dynamodb:LeadingKeys is true for a Scan (it has no
    partition key): granting Scan under it would look narrow and read the whole table."""
    for function in FUNCTIONS_WITH_TABLE_ACCESS:
        for grant in grants(function):
            if grant.leading_keys is not None:
                assert not grant.actions & {"Scan"}, function


def test_the_recorder_sees_what_the_policy_would_deny() -> None:
    """The evaluator itself: a key outside the patterns, another action, the index."""
    grant = Grant(frozenset({"GetItem"}), None, ("ACCOUNT#*",))
    assert grant.allows("GetItem", None, ("ACCOUNT#a",))
    assert not grant.allows("GetItem", None, ("APIKEY#k",))
    assert not grant.allows("PutItem", None, ("ACCOUNT#a",))
    assert not grant.allows("GetItem", "ExpiryIndex", ("ACCOUNT#a",))
    assert not grant.allows("GetItem", None, ("ACCOUNT#a", "LEDGER#a"))
    assert not Grant(frozenset({"Scan"}), None, ("ACCOUNT#*",)).allows("Scan", None, ())


def test_every_function_with_table_access_is_exercised() -> None:
    """A function granted DynamoDB actions that the scenario does not run would go unchecked."""
    granted = {name for name in template.functions() if grants(name)}
    assert granted == set(FUNCTIONS_WITH_TABLE_ACCESS)
