"""Write operations: what a debit, a top-up and a refund cost, and what the handler adds.

Cost: each operation runs once with a `Probe` (requests, capacity by AWS's rules).
Overhead: a full debit through `functions.debit.app.lambda_handler` against the very
`TransactWriteItems` it issued, replayed bare on a mirror table that holds the same account
state (same item sizes, same conditions, same DynamoDB Local, interleaved call by call).
"""

from __future__ import annotations

import copy
import statistics
import time
from decimal import Decimal
from typing import Any

from bench.capacity import PARTITION_WRITE_UNITS_PER_SECOND, Probe
from bench.env import Environment, Handler, quiet, say, unique
from bench.sizes import Sizes
from bench.stats import latency, overhead
from devtools.api_events import LambdaContextStub
from serverless_credits import wiring
from serverless_credits.domain.commands import CreditCommand, DebitCommand
from serverless_credits.storage import keys

DEBIT_FUNCTION = "DebitFunction"
OPENING_BALANCE = 1_000_000


def debit_event(account_id: str, key: str) -> dict[str, Any]:
    """A Debit function request as another Lambda sends it (priced by action)."""
    return {
        "accountId": account_id,
        "idempotencyKey": key,
        "action": "api_call",
        "quantity": 1,
        "endpoint": "/v1/echo",
        "description": "bench call",
    }


def _invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    with quiet():
        response = handler(event, LambdaContextStub())
    if "error" in response:
        raise RuntimeError(f"handler refused a benchmark request: {response['error']}")
    return response


def write_costs(env: Environment, samples: int) -> dict[str, Any]:
    """Requests and capacity of debit (cold and warm function), top-up and refund, then the
    time of each on a warm function (`samples` of each, interleaved)."""
    results: dict[str, Any] = {}
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        store = wiring.store()
        account_id = unique("cost")
        env.create_account(wiring.ledger(), account_id, OPENING_BALANCE)
        wiring.reset()  # a cold function: no price list, no account state cached
        store = wiring.store()
        probe = Probe(store.client, side_client=env.admin, capacity=True)
        with probe.recording() as tally:
            _invoke(handler, debit_event(account_id, unique("k")))
        results["debit_cold"] = tally.summary()
        for _ in range(3):  # steady state: the function keeps the account's last version
            _invoke(handler, debit_event(account_id, unique("k")))
        with probe.recording() as tally:
            debited = _invoke(handler, debit_event(account_id, unique("k")))
        results["debit"] = tally.summary()
        with probe.recording() as tally:
            wiring.ledger().top_up(
                CreditCommand(
                    account_id=account_id,
                    idempotency_key=unique("topup"),
                    amount=Decimal(500),
                    reference="po_123456",
                    description="bench top-up",
                )
            )
        results["topup"] = tally.summary()
        refund = {
            "operation": "refund",
            "accountId": account_id,
            "idempotencyKey": unique("refund"),
            "transactionId": debited["transactionId"],
            "reason": "bench refund",
            "failedCall": True,
        }
        with probe.recording() as tally:
            _invoke(handler, refund)
        results["refund"] = tally.summary()
        probe.close()
        times: dict[str, list[float]] = {"debit": [], "topup": [], "refund": []}
        for index in range(samples):
            started = time.perf_counter()
            debited = _invoke(handler, debit_event(account_id, f"timed-{index}"))
            times["debit"].append(time.perf_counter() - started)
            command = CreditCommand(
                account_id=account_id,
                idempotency_key=f"timed-topup-{index}",
                amount=Decimal(500),
                reference="po_123456",
            )
            started = time.perf_counter()
            wiring.ledger().top_up(command)
            times["topup"].append(time.perf_counter() - started)
            refund = {**refund, "idempotencyKey": f"timed-refund-{index}"}
            refund["transactionId"] = debited["transactionId"]
            started = time.perf_counter()
            _invoke(handler, refund)
            times["refund"].append(time.perf_counter() - started)
        for name, samples_ in times.items():
            results[name]["latency"] = latency(samples_)
        results["debit"]["entry_point"] = "Debit handler (direct invoke event)"
        results["debit_cold"]["entry_point"] = "Debit handler, first call of a fresh instance"
        results["refund"]["entry_point"] = "Debit handler (operation: refund)"
        results["topup"]["entry_point"] = "Ledger.top_up (no handler: an operator/billing call)"

    debit = results["debit"]
    balance_units = debit["write_units_by_pk_prefix"].get("ACCOUNT", 0.0)
    partition = {
        "write_units_per_debit": balance_units,
        "items_per_debit_on_balance_key": sum(
            1 for item in debit["calls"][-1]["write_items"] if item["pk"].startswith("ACCOUNT#")
        ),
        "max_debits_per_second_one_account": (
            PARTITION_WRITE_UNITS_PER_SECOND / balance_units if balance_units else None
        ),
        "rule": "1,000 write units per second per partition; a transactional write of an "
        "item up to 1 KB costs 2",
    }
    return {"operations": results, "balance_partition": partition}


def debit_overhead(env: Environment, sizes: Sizes) -> dict[str, Any]:
    """Median full handler debit / median bare TransactWriteItems (the same request)."""
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        account_id = unique("overhead")
        env.create_account(wiring.ledger(), account_id, OPENING_BALANCE, mirror=True)
        store = wiring.store()
        bare = env.store(env.mirror).client
        probe = Probe(store.client, capture=True)
        handler_times: list[float] = []
        bare_times: list[float] = []
        requests: list[int] = []
        for index in range(sizes.warmup + sizes.samples):
            event = debit_event(account_id, f"overhead-{index}")
            with probe.recording() as tally:
                started = time.perf_counter()
                _invoke(handler, event)
                handler_elapsed = time.perf_counter() - started
            writes = [params for name, params in probe.captured if name == "TransactWriteItems"]
            if len(writes) != 1:
                raise RuntimeError(f"expected one TransactWriteItems per debit, saw {len(writes)}")
            request = _retarget(writes[0], env.mirror)
            started = time.perf_counter()
            bare.transact_write_items(**request)
            bare_elapsed = time.perf_counter() - started
            if index >= sizes.warmup:
                handler_times.append(handler_elapsed)
                bare_times.append(bare_elapsed)
                requests.append(tally.requests)
        probe.close()
    result = overhead(
        handler_times,
        bare_times,
        "TransactWriteItems (the handler's own request, replayed on a mirror table)",
    )
    result["requests_per_handler_call"] = statistics.median(requests)
    say(
        f"  debit overhead: handler p50 {result['handler']['p50_ms']} ms, bare TransactWriteItems "
        f"p50 {result['bare']['p50_ms']} ms, ratio {result['ratio_p50']}"
    )
    return result


def _retarget(params: dict[str, Any], table: str) -> dict[str, Any]:
    """The captured request on another table, with its own client request token."""
    request = copy.deepcopy(params)
    request.pop("ClientRequestToken", None)
    for entry in request["TransactItems"]:
        for body in entry.values():
            body["TableName"] = table
    return request


def account_key(account_id: str) -> dict[str, Any]:
    return {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.ACCOUNT_SK}}


def warm_up(env: Environment, seconds: float) -> int:
    """Exercise DynamoDB Local's write and read paths until its JIT settles (not reported)."""
    store = env.store()
    ledger = env.ledger(store)
    account_id = unique("warmup")
    env.create_account(ledger, account_id, OPENING_BALANCE)
    deadline = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < deadline:
        ledger.debit(
            DebitCommand(
                account_id=account_id,
                idempotency_key=f"warm-{calls}",
                amount=Decimal(1),
                endpoint="/v1/echo",
            )
        )
        store.accounts.get(account_id, consistent=True)
        store.entries.page(account_id, limit=50)
        calls += 1
    return calls
