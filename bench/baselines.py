"""Peer baselines: the same debit done the ways a user might pick instead of this design.

(a) naive: GetItem the balance, check it in the function, PutItem it back (no condition):
    two cheap requests, and under concurrency lost updates and overspending;
(b) a bare conditional `UpdateItem` (`balance >= :amount`): no idempotency, no ledger;
(c) Powertools' idempotency utility (`idempotent_function` with `DynamoDBPersistenceLayer`
    on its own table) around one conditional `UpdateItem` (`balance >= :amount`): safe
    against overspending and replays, but three round trips per debit, no ledger entry, no
    exact `balanceAfter` chain, no usage row, and the record and the balance are not written
    atomically (a crash between them leaves an in-progress record to expire).

Both run with one worker (cost and latency) and with several workers on one account
(correctness and throughput), on the same DynamoDB Local as the rest of the run.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from bench.capacity import Probe
from bench.env import Environment, account_key, run_together, say, unique
from bench.stats import latency
from devtools import dynamodb_local
from devtools.api_events import LambdaContextStub
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.errors import InsufficientCredits, OperationInProgress, ServiceBusy
from serverless_credits.storage.store import CreditsStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Debit = Callable[[str, str], bool]  # (account id, idempotency key) -> charged?


# ---------------------------------------------------------------- this design
def design_debit(env: Environment, client: DynamoDBClient) -> Debit:
    """The library's debit (lease, account update, completion), as the Debit function runs
    it; its ledger entry is written later from the stream (not timed here)."""
    ledger = env.ledger(CreditsStore(client, env.table))

    def debit(account_id: str, key: str) -> bool:
        command = DebitCommand(
            account_id=account_id, idempotency_key=key, amount=Decimal(1), endpoint="/v1/echo"
        )
        try:
            ledger.debit(command)
        except InsufficientCredits:
            return False
        return True

    return debit


# ---------------------------------------------------------------- (a) naive
def naive_debit(env: Environment, client: DynamoDBClient) -> Debit:
    def debit(account_id: str, _key: str) -> bool:
        item = client.get_item(TableName=env.table, Key=account_key(account_id))["Item"]
        balance = Decimal(item["balance"]["N"])
        if balance < 1:
            return False
        item["balance"] = {"N": str(balance - 1)}
        client.put_item(TableName=env.table, Item=item)
        return True

    return debit


# ---------------------------------------------------------------- (b) bare UpdateItem
def bare_update_debit(env: Environment, client: DynamoDBClient) -> Debit:
    def debit(account_id: str, _key: str) -> bool:
        try:
            client.update_item(
                TableName=env.table,
                Key=account_key(account_id),
                UpdateExpression="SET balance = balance - :amount",
                ConditionExpression="balance >= :amount",
                ExpressionAttributeValues={":amount": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    return debit


# ---------------------------------------------------------------- (c) Powertools idempotency
def create_idempotency_table(env: Environment) -> str:
    """The table Powertools' documentation asks for: partition key `id`, TTL `expiration`."""
    name = f"idempotency-bench-{env.run_id}"
    if name in env.admin.list_tables()["TableNames"]:
        return name  # created by an earlier section of this run
    env.admin.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    env.admin.get_waiter("table_exists").wait(TableName=name)
    env.admin.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    return name


class Declined(Exception):
    pass


def powertools_debit(env: Environment, client: DynamoDBClient, table: str) -> Debit:
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415 - baseline only
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    config = IdempotencyConfig(
        event_key_jmespath="idempotencyKey", raise_on_no_idempotency_key=True
    )
    config.register_lambda_context(LambdaContextStub())  # type: ignore[arg-type]

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="request", persistence_store=persistence, config=config
    )
    def charge(request: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.update_item(
                TableName=env.table,
                Key=account_key(request["accountId"]),
                UpdateExpression="SET balance = balance - :amount",
                ConditionExpression="balance >= :amount",
                ExpressionAttributeValues={":amount": {"N": str(request["amount"])}},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Declined from exc
            raise
        return {"balanceAfter": response["Attributes"]["balance"]["N"]}

    def debit(account_id: str, key: str) -> bool:
        try:
            charge(request={"accountId": account_id, "idempotencyKey": key, "amount": 1})
        except Declined:
            return False
        return True

    return debit


# ---------------------------------------------------------------- runs
def _singles(
    env: Environment,
    makers: dict[str, Callable[[DynamoDBClient], Debit]],
    samples: int,
    warmup: int,
) -> dict[str, tuple[dict[str, Any], float, dict[str, Any]]]:
    """One warm worker per approach, timed call by call in turn (same load for each)."""
    setup = env.ledger(env.store())
    runs: dict[str, tuple[DynamoDBClient, Debit, str]] = {}
    for name, make in makers.items():
        client = dynamodb_local.client_for(env.endpoint)
        account_id = unique("peer")
        env.create_account(setup, account_id, 1_000_000)
        runs[name] = (client, make(client), account_id)
    times: dict[str, list[float]] = {name: [] for name in makers}
    for index in range(warmup + samples):
        for name, (_, debit, account_id) in runs.items():
            started = time.perf_counter()
            debit(account_id, f"single-{index}")
            if index >= warmup:
                times[name].append(time.perf_counter() - started)
    results: dict[str, tuple[dict[str, Any], float, dict[str, Any]]] = {}
    for name, (client, debit, account_id) in runs.items():
        probe = Probe(client, side_client=env.admin, capacity=True)
        with probe.recording() as tally:
            debit(account_id, unique("probe"))
        probe.close()
        results[name] = (latency(times[name]), statistics.median(times[name]), tally.summary())
    return results


def _concurrent(
    env: Environment, make: Callable[[DynamoDBClient], Debit], workers: int, debits: int
) -> dict[str, Any]:
    funded = debits // 2
    account_id = unique("peerhot")
    env.create_account(env.ledger(env.store()), account_id, funded)
    functions = [make(dynamodb_local.client_for(env.endpoint)) for _ in range(workers)]
    lock = threading.Lock()
    accepted = 0
    errors: dict[str, int] = {}

    def work(debit: Debit, index: int) -> None:
        nonlocal accepted
        try:
            charged = debit(account_id, f"hot-{index}")
        except (ServiceBusy, OperationInProgress):  # a 503/409 refusal, nothing charged
            with lock:
                errors["ServiceBusy"] = errors.get("ServiceBusy", 0) + 1
            return
        except Exception as exc:  # counted and reported
            with lock:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        if charged:
            with lock:
                accepted += 1

    elapsed = run_together(functions, range(debits), work)
    final = env.balance(account_id)
    deducted = Decimal(funded) - final
    return {
        "workers": workers,
        "debits_attempted": debits,
        "funded": funded,
        "accepted": accepted,
        "actually_deducted": int(deducted),
        "lost_updates": int(accepted - deducted),
        "overspent_credits": max(0, accepted - funded),
        "final_balance": int(final),
        "errors": errors,
        "accepted_per_second": round(accepted / elapsed, 1) if elapsed else None,
        "gave_up": errors.get("ServiceBusy", 0),
        # Exact accounting: every accepted debit deducted once, never past the funds, and
        # nothing refused while funds remained (unless it gave up with a 503).
        "correct": deducted == accepted
        and final == funded - accepted
        and accepted <= funded
        and (accepted == funded or bool(errors.get("ServiceBusy")))
        and not set(errors) - {"ServiceBusy"},
    }


def baselines(
    env: Environment, samples: int, warmup: int, workers: int, debits: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    idempotency_table = create_idempotency_table(env)
    makers: dict[str, tuple[str, Callable[[DynamoDBClient], Debit]]] = {
        "this_design": (
            "Idempotency lease (PutItem), one conditional UpdateItem of the account "
            "(ALL_NEW: exact balanceAfter and sequence), completion (UpdateItem); the ledger "
            "entry and usage are written from the stream afterwards",
            lambda client: design_debit(env, client),
        ),
        "bare_update": (
            "One conditional UpdateItem (balance >= amount): no idempotency, no ledger",
            lambda client: bare_update_debit(env, client),
        ),
        "naive_get_put": (
            "GetItem + PutItem, balance checked in the function (no condition, no ledger)",
            lambda client: naive_debit(env, client),
        ),
        "powertools_idempotency": (
            "Powertools idempotent_function (DynamoDBPersistenceLayer, own table) around a "
            "conditional UpdateItem (balance >= amount); no ledger entry",
            lambda client: powertools_debit(env, client, idempotency_table),
        ),
    }
    singles = _singles(env, {name: make for name, (_, make) in makers.items()}, samples, warmup)
    for name, (description, make) in makers.items():
        single, median, cost = singles[name]
        hot = _concurrent(env, make, workers, debits)
        results[name] = {
            "description": description,
            "latency": single,
            "median_s": median,
            "cost": cost,
            "concurrent": hot,
        }
        say(
            f"  {name}: p50 {single['p50_ms']} ms, {cost['requests']} requests, "
            f"{cost['write_units']} WCU + {cost['read_units']} RCU; {workers} workers: "
            f"{hot['accepted']} accepted for {hot['funded']} funded, "
            f"{hot['lost_updates']} lost updates, overspent {hot['overspent_credits']}"
        )
    return results
