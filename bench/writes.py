"""Write operations: what a debit, a top-up and a void cost, and what the handler adds.

Cost: each operation runs once with a `Probe` (requests, capacity by AWS's rules from item
sizes). A debit is priced whole: the Debit function's three requests (lease `PutItem`,
account `UpdateItem`, completion `UpdateItem`) and the Materializer's share, measured on
the materializer's own client while it drains a batch of `materializer_batch` debits (one
entry `PutItem` and one record-finalizing `UpdateItem` per debit; the ledger head and the
day's usage item once per account and batch).
Overhead: a full debit through `functions.debit.app.lambda_handler` against the bare
account `UpdateItem` it issued (and against all three of its requests), replayed on a
mirror table that holds the same account state (same item sizes, same conditions, same
DynamoDB Local, interleaved call by call).
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
from bench.stats import latency, overhead, ratio
from devtools.api_events import LambdaContextStub
from serverless_credits import wiring
from serverless_credits.domain.commands import CreditCommand, DebitCommand
from serverless_credits.storage import keys

DEBIT_FUNCTION = "DebitFunction"
OPENING_BALANCE = 1_000_000
WRITE_UNITS_TARGET = 5


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


def void_event(account_id: str, debit_key: str) -> dict[str, Any]:
    """The calling service gives back its own debit (a failed call), by the debit's key."""
    return {"operation": "void", "accountId": account_id, "idempotencyKey": debit_key}


def _invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    with quiet():
        response = handler(event, LambdaContextStub())
    if "error" in response:
        raise RuntimeError(f"handler refused a benchmark request: {response['error']}")
    return response


def _item_role(call: dict[str, Any], item: dict[str, Any]) -> str:
    """What a written item is, by its key prefix and the request that wrote it."""
    prefix = item["pk"].split("#", 1)[0]
    names = {
        ("PutItem", "IDEMPOTENCY"): "lease (PutItem)",
        ("UpdateItem", "ACCOUNT"): "account (UpdateItem)",
        ("PutItem", "LEDGER"): "ledger entry (PutItem)",
        ("UpdateItem", "USAGE"): "daily usage (UpdateItem)",
        ("UpdateItem", "LEDGER"): "ledger head (UpdateItem)",
        ("UpdateItem", "REFUNDS"): "refund guard (UpdateItem)",
    }
    return names.get((call["operation"], prefix), f"{prefix} ({call['operation']})")


def breakdown(summary: dict[str, Any], *, completion: str) -> list[dict[str, Any]]:
    """The written items of a tally, in order, named (`completion` names the record update)."""
    rows: list[dict[str, Any]] = []
    for call in summary["calls"]:
        for item in call["write_items"]:
            role = _item_role(call, item)
            if role.startswith("IDEMPOTENCY (UpdateItem"):
                role = completion
            rows.append({"item": role, "bytes": item["bytes"], "units": item["units"]})
    return rows


def materializer_cost(env: Environment, handler: Handler, debits: int) -> dict[str, Any]:
    """The Materializer's requests and write units for `debits` debits of one account
    delivered together (a stream batch of at most the template's BatchSize, 100)."""
    env.drain()  # nothing older in the stream than what is priced here
    account_id = unique("matcost")
    env.create_account(wiring.ledger(), account_id, OPENING_BALANCE)
    env.drain()
    for index in range(debits):
        _invoke(handler, debit_event(account_id, f"mat-{index}"))
    # Every thread: the Materializer puts a batch's entries and finalizes its records in
    # a thread pool.
    probe = Probe(
        env.materializer_store.client, side_client=env.admin, capacity=True, every_thread=True
    )
    with probe.recording() as tally:
        records = env.drain()
    probe.close()
    summary = tally.summary()
    rows = [
        {"item": _item_role(call, item), "bytes": item["bytes"], "units": item["units"]}
        for call in summary["calls"]
        for item in call["write_items"]
    ]
    for row in rows:
        if row["item"].startswith("IDEMPOTENCY"):
            row["item"] = "record finalize (UpdateItem)"
    by_item: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_item.setdefault(row["item"], {"writes": 0, "units": 0.0, "max_bytes": 0})
        entry["writes"] += 1
        entry["units"] += row["units"]
        entry["max_bytes"] = max(entry["max_bytes"], row["bytes"])
    batches = summary["by_operation"].get("GetItem", 0)  # one head read per account and batch
    return {
        "debits": debits,
        "stream_records": records,
        "batches": batches,
        "requests": summary["requests"],
        "by_operation": summary["by_operation"],
        "write_units": summary["write_units"],
        "read_units": summary["read_units"],
        "write_units_per_debit": round(summary["write_units"] / debits, 3),
        "read_units_per_debit": round(summary["read_units"] / debits, 3),
        "write_units_by_pk_prefix": summary["write_units_by_pk_prefix"],
        "by_item": by_item,
        "errors": summary["errors"],
    }


def write_costs(env: Environment, samples: int, batch: int) -> dict[str, Any]:
    """Requests and capacity of debit (cold and warm function, plus its materialization),
    top-up and void, then the time of each on a warm function (`samples` of each)."""
    results: dict[str, Any] = {}
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        account_id = unique("cost")
        env.create_account(wiring.ledger(), account_id, OPENING_BALANCE)
        wiring.reset()  # a cold function: no price list cached
        store = wiring.store()
        probe = Probe(store.client, side_client=env.admin, capacity=True)
        with probe.recording() as tally:
            _invoke(handler, debit_event(account_id, unique("k")))
        results["debit_cold"] = tally.summary()
        for _ in range(3):
            _invoke(handler, debit_event(account_id, unique("k")))
        voided_key = unique("k")
        with probe.recording() as tally:
            _invoke(handler, debit_event(account_id, voided_key))
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
        # A service gives back its own failed call: void, by the debit's idempotency key.
        with probe.recording() as tally:
            _invoke(handler, void_event(account_id, voided_key))
        results["void"] = tally.summary()
        probe.close()
        times: dict[str, list[float]] = {"debit": [], "topup": [], "void": []}
        for index in range(samples):
            started = time.perf_counter()
            _invoke(handler, debit_event(account_id, f"timed-{index}"))
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
        for index in range(samples):
            started = time.perf_counter()
            _invoke(handler, void_event(account_id, f"timed-{index}"))
            times["void"].append(time.perf_counter() - started)
        for name, samples_ in times.items():
            results[name]["latency"] = latency(samples_)
        results["debit"]["entry_point"] = "Debit handler (direct invoke event)"
        results["debit_cold"]["entry_point"] = "Debit handler, first call of a fresh instance"
        results["void"]["entry_point"] = "Debit handler (operation: void, by the debit's key)"
        results["topup"]["entry_point"] = "Ledger.top_up (no handler: an operator/billing call)"
        materialized = materializer_cost(env, handler, batch)

    debit = results["debit"]
    writer_units = debit["write_units"]
    account_units = debit["write_units_by_pk_prefix"].get("ACCOUNT", 0.0) + materialized[
        "write_units_by_pk_prefix"
    ].get("ACCOUNT", 0.0) / max(1, batch)
    account_items = [
        item
        for call in debit["calls"]
        for item in call["write_items"]
        if item["pk"].startswith("ACCOUNT#")
    ]
    per_debit = writer_units + materialized["write_units_per_debit"]
    # One debit alone in its stream batch: entry + finalize + usage + head.
    lone = writer_units + sum(
        entry["units"] / entry["writes"] for entry in materialized["by_item"].values()
    )
    partition = {
        "write_units_per_debit": account_units,
        "items_per_debit_on_account_key": len(account_items),
        "account_item_bytes": max((i["bytes"] for i in account_items), default=None),
        "max_debits_per_second_one_account": (
            PARTITION_WRITE_UNITS_PER_SECOND / account_units if account_units else None
        ),
        "rule": "1,000 write units per second per partition; a write of an item up to 1 KB costs 1",
    }
    units = {
        "writer": writer_units,
        "materializer_per_debit": materialized["write_units_per_debit"],
        "total_per_debit": round(per_debit, 3),
        "total_per_debit_lone": round(lone, 3),
        "target": WRITE_UNITS_TARGET,
        "meets_target": per_debit <= WRITE_UNITS_TARGET,
        "items": [
            *breakdown(debit, completion="record complete (UpdateItem)"),
            *[
                {
                    "item": name,
                    "bytes": entry["max_bytes"],
                    "units": round(entry["units"] / batch, 3),
                    "writes_in_batch": entry["writes"],
                }
                for name, entry in materialized["by_item"].items()
            ],
        ],
    }
    say(
        f"  debit: {debit['requests']} requests, {writer_units:g} WCU in the function + "
        f"{materialized['write_units_per_debit']:g} WCU materializing ({batch} per batch) = "
        f"{per_debit:.2f} WCU/debit, {account_units:g} on the account's partition "
        f"(account item {partition['account_item_bytes']} B)"
    )
    return {
        "operations": results,
        "materializer": materialized,
        "debit_write_units": units,
        "balance_partition": partition,
    }


def debit_overhead(env: Environment, sizes: Sizes) -> dict[str, Any]:
    """A full handler debit against the bare account UpdateItem it issued (the price of
    idempotency and of the handler), and against all three of its requests replayed bare."""
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        account_id = unique("overhead")
        env.create_account(wiring.ledger(), account_id, OPENING_BALANCE, mirror=True)
        store = wiring.store()
        bare = env.store(env.mirror).client
        probe = Probe(store.client, capture=True)
        handler_times: list[float] = []
        update_times: list[float] = []
        three_times: list[float] = []
        requests: list[int] = []
        for index in range(sizes.warmup + sizes.samples):
            event = debit_event(account_id, f"overhead-{index}")
            with probe.recording() as tally:
                started = time.perf_counter()
                _invoke(handler, event)
                handler_elapsed = time.perf_counter() - started
            captured = [(name, _retarget(params, env.mirror)) for name, params in probe.captured]
            updates = [
                params
                for name, params in captured
                if name == "UpdateItem" and params["Key"]["pk"]["S"].startswith("ACCOUNT#")
            ]
            if len(updates) != 1:
                raise RuntimeError(f"expected one account UpdateItem per debit: {captured}")
            # Alternate which bare replay goes first; the account update runs in both (the
            # mirror's account moves twice per debit: same size, same conditions).
            first_three = index % 2 == 0
            if first_three:
                three_elapsed = _replay_all(bare, captured)
            started = time.perf_counter()
            bare.update_item(**updates[0])
            update_elapsed = time.perf_counter() - started
            if not first_three:
                three_elapsed = _replay_all(bare, captured)
            if index >= sizes.warmup:
                handler_times.append(handler_elapsed)
                update_times.append(update_elapsed)
                three_times.append(three_elapsed)
                requests.append(tally.requests)
        probe.close()
    result = overhead(
        handler_times,
        update_times,
        "UpdateItem of the account (the handler's own request, replayed on a mirror table)",
    )
    result["requests_per_handler_call"] = statistics.median(requests)
    result["bare_requests"] = latency(three_times)
    result["ratio_p50_over_bare_requests"] = ratio(
        statistics.median(handler_times), statistics.median(three_times)
    )
    say(
        f"  debit: handler p50 {result['handler']['p50_ms']} ms, bare UpdateItem p50 "
        f"{result['bare']['p50_ms']} ms (x{result['ratio_p50']}), its 3 requests bare p50 "
        f"{result['bare_requests']['p50_ms']} ms"
    )
    return result


def _replay_all(client: Any, captured: list[tuple[str, dict[str, Any]]]) -> float:
    """The handler's requests in order, bare, with fresh copies (a lease key is unique)."""
    started = time.perf_counter()
    for name, params in captured:
        getattr(client, _snake(name))(**copy.deepcopy(params))
    return time.perf_counter() - started


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _retarget(params: dict[str, Any], table: str) -> dict[str, Any]:
    """A captured request on another table."""
    request = copy.deepcopy(params)
    request["TableName"] = table
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
        if calls % 50 == 0:
            env.drain()
    env.drain()
    return calls
