"""Holds: what reserve, capture, release and expiry cost beside a debit, what open holds do
to the account item's write units up to the cap, and the rate of reserve+capture pairs on
one hot account beside debits and the Powertools baseline.

Cost: each step runs once through its real entry point (the Debit function's `reserve`,
`capture`, `release` operations; the ExpirerFunction's sweep of one due hold) with a probe
on the function's client, then alone in its stream batch with a probe on the
Materializer's client: the ledger entry, the record finalize and the HOLD item's update
per step, the day's usage item and the ledger head once per account and batch. A debit is
measured the same way in the same run. A capture reads the account item and the HOLD item
(materialized before it, as it is unless the capture follows its reserve within the
stream's lag); an expiry is one Query per `ExpiryIndex` shard, the account item's read and
the write path.
At the cap: one account with 0, 1, 10 and 50 (`MAX_OPEN_HOLDS`) open holds; at each, the
account item's size and the write units of one debit and of one reserve; the 51st reserve
must be refused with `TOO_MANY_OPEN_HOLDS` (the section fails otherwise).
Rate: 1 and 16 workers (threads, each its own client, store and ledger, as in
bench/contention.py) reserving 1 credit and capturing it, on one account funded for about
nine tenths of the pairs, beside debits of this design and the Powertools baseline at the
same worker count in the same run, in rotating order; after each pair run the stream is
drained and the accounting checked (reserved 0, balance = funded - captured, a gapless
chain of a hold and a capture entry per pair, every HOLD item captured).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench import contention, writes
from bench.capacity import PARTITION_WRITE_UNITS_PER_SECOND, Probe, item_size
from bench.env import Environment, Handler, Parts, quiet, run_together, say, unique
from bench.stats import latency, ratio
from devtools.api_events import LambdaContextStub
from serverless_credits import wiring
from serverless_credits.domain.commands import CaptureCommand, ReserveCommand
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.domain.holds import MAX_OPEN_HOLDS
from serverless_credits.domain.models import EntryType, LedgerEntry
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.items import from_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

DEBIT_FUNCTION = writes.DEBIT_FUNCTION
EXPIRER_FUNCTION = "ExpirerFunction"
OPENING_BALANCE = writes.OPENING_BALANCE
CAP_LEVELS = (0, 1, 10, MAX_OPEN_HOLDS)
# The shortest hold (1 s): reserved first, swept last, when it is due by the real clock.
DUE_HOLD_SECONDS = 1
DUE_WAIT_SECONDS = 10.0
# Holds opened to fill the account up to the cap: never due while the suite runs.
FILL_HOLD_SECONDS = 3600
PAIRS = "reserve_capture"
DESIGN = contention.DESIGN
BASELINE = contention.BASELINE
REFUSAL_AT_CAP = "TOO_MANY_OPEN_HOLDS"
# Written once per account and stream batch by the Materializer, whatever the batch holds.
PER_BATCH_ITEMS = frozenset({"daily usage (UpdateItem)", "ledger head (UpdateItem)"})
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def _probe(client: DynamoDBClient, side_client: DynamoDBClient) -> Probe:
    """A probe pricing every call on `client`, from every thread: the Expirer's sweep
    expires holds in a thread pool, the Materializer writes a batch in parallel."""
    return Probe(client, side_client=side_client, capacity=True, capture=True, every_thread=True)


# ---------------------------------------------------------------- events
def reserve_event(account_id: str, key: str, expires_in: int | None = None) -> dict[str, Any]:
    """A reserve for the price of the same call a debit charges (`writes.debit_event`)."""
    event = {"operation": "reserve", **writes.debit_event(account_id, key)}
    if expires_in is not None:
        event["expiresIn"] = expires_in
    return event


def capture_event(account_id: str, key: str, hold_id: str) -> dict[str, Any]:
    """Capture all of the hold (no amount)."""
    return {
        "operation": "capture",
        "accountId": account_id,
        "idempotencyKey": key,
        "holdId": hold_id,
    }


def release_event(account_id: str, key: str, hold_id: str) -> dict[str, Any]:
    return {
        "operation": "release",
        "accountId": account_id,
        "idempotencyKey": key,
        "holdId": hold_id,
    }


def _call(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    with quiet():
        return handler(event, LambdaContextStub())


def _invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    response = _call(handler, event)
    if "error" in response:
        raise RuntimeError(f"handler refused a benchmark request: {response['error']}")
    return response


# ---------------------------------------------------------------- 1. cost per step
def _role(call: dict[str, Any], item: dict[str, Any], *, materializer: bool) -> str:
    role = writes._item_role(call, item)
    if role.startswith("HOLDS"):
        return "HOLD item (UpdateItem)"
    if role.startswith("IDEMPOTENCY (UpdateItem"):
        return "record finalize (UpdateItem)" if materializer else "record complete (UpdateItem)"
    return role


def _reads(summary: dict[str, Any], captured: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """What each read of a step read: item kind (by key prefix or index), bytes, units."""
    rows: list[dict[str, Any]] = []
    reads = [c for c in summary["calls"] if c["operation"] in ("GetItem", "Query", "BatchGetItem")]
    asked = [p for name, p in captured if name in ("GetItem", "Query", "BatchGetItem")]
    if len(asked) != len(reads):  # not one request after the other: leave them unnamed
        asked = [{}] * len(reads)
    for call, params in zip(reads, asked, strict=True):
        if "IndexName" in params:
            what = f"{params['IndexName']} shard"
        elif "Key" in params:
            what = str(params["Key"]["pk"]["S"]).split("#", 1)[0]
        elif "RequestItems" in params:
            what = "records"
        else:
            what = "-"
        rows.append(
            {
                "read": f"{what} ({call['operation']})",
                "consistent": call["consistent"],
                "items": call["items_returned"],
                "bytes": call["read_bytes"],
                "units": call["read_units"],
            }
        )
    return rows


def _lite(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in summary.items() if name != "calls"}


def _step(
    entry_point: str,
    writer: dict[str, Any],
    writer_captured: list[tuple[str, dict[str, Any]]],
    materialized: dict[str, Any],
) -> dict[str, Any]:
    """One step's figures: the function's requests and units, the Materializer's writes
    item by item (per step, and per account and batch), and the totals."""
    writer_items = _written(writer, materializer=False)
    materializer_items = _written(materialized, materializer=True)
    for row in materializer_items:
        row["per"] = "batch" if row["item"] in PER_BATCH_ITEMS else "step"
    per_step = sum(r["units"] for r in materializer_items if r["per"] == "step")
    per_batch = sum(r["units"] for r in materializer_items if r["per"] == "batch")
    return {
        "entry_point": entry_point,
        "requests": writer["requests"],
        "by_operation": writer["by_operation"],
        "errors": writer["errors"],
        "read_units": writer["read_units"],
        "write_units": writer["write_units"],
        "account_write_units": writer["write_units_by_pk_prefix"].get("ACCOUNT", 0.0),
        "local_reported_units": writer["local_reported_units"],
        "reads": _reads(writer, writer_captured),
        "writer_items": writer_items,
        "materializer": {
            **_lite(materialized),
            "items": materializer_items,
            "write_units_per_step": per_step,
            "write_units_per_batch": per_batch,
        },
        "total_write_units_in_a_batch": writer["write_units"] + per_step,
        "total_write_units_alone": writer["write_units"] + per_step + per_batch,
        "calls": writer["calls"],
    }


def _written(summary: dict[str, Any], *, materializer: bool) -> list[dict[str, Any]]:
    """The items a tally wrote, in order, named, with their billed size and units."""
    return [
        {
            "item": _role(call, item, materializer=materializer),
            "bytes": item["bytes"],
            "units": item["units"],
        }
        for call in summary["calls"]
        for item in call["write_items"]
    ]


class _Recorder:
    """A probe on the function's client and one on the Materializer's (created per
    function environment: the function's client is `wiring.store()`'s)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.writer = _probe(wiring.store().client, env.admin)
        self.materializer = _probe(env.materializer_store.client, env.admin)

    def run(
        self, entry_point: str, call: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        self.env.drain()  # nothing else in the batch priced below
        with self.writer.recording() as tally:
            response = call()
        writer, captured = tally.summary(), list(self.writer.captured)
        with self.materializer.recording() as tally:
            records = self.env.drain()
        materialized = tally.summary()
        materialized["stream_records"] = records
        return _step(entry_point, writer, captured, materialized), response

    def close(self) -> None:
        self.writer.close()
        self.materializer.close()


def step_costs(env: Environment) -> dict[str, Any]:
    """Debit, reserve, capture, release through the Debit handler and the expiry of one due
    hold through the Expirer handler, each with its materialization."""
    steps: dict[str, Any] = {}
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        # The hold the sweep expires at the end: reserved first, on an account of its own.
        due_account = unique("holddue")
        env.create_account(wiring.ledger(), due_account, OPENING_BALANCE)
        due = _invoke(handler, reserve_event(due_account, unique("k"), DUE_HOLD_SECONDS))
        account_id = unique("holdcost")
        env.create_account(wiring.ledger(), account_id, OPENING_BALANCE)
        # A warm function: price list cached, clients connected, every path run once.
        for _ in range(2):
            _invoke(handler, writes.debit_event(account_id, unique("k")))
        warm = _invoke(handler, reserve_event(account_id, unique("k")))
        env.drain()
        _invoke(handler, capture_event(account_id, unique("k"), warm["holdId"]))
        recorder = _Recorder(env)
        try:
            steps["debit"], _ = recorder.run(
                "Debit handler (direct invoke event)",
                lambda: _invoke(handler, writes.debit_event(account_id, unique("k"))),
            )
            steps["reserve"], held = recorder.run(
                "Debit handler (operation: reserve)",
                lambda: _invoke(handler, reserve_event(account_id, unique("k"))),
            )
            steps["capture"], _ = recorder.run(
                "Debit handler (operation: capture, all of the hold)",
                lambda: _invoke(handler, capture_event(account_id, unique("k"), held["holdId"])),
            )
            again = _invoke(handler, reserve_event(account_id, unique("k")))
            steps["release"], _ = recorder.run(
                "Debit handler (operation: release)",
                lambda: _invoke(handler, release_event(account_id, unique("k"), again["holdId"])),
            )
        finally:
            recorder.close()
    steps["expiry"] = _expiry(env, due_account, due)
    debit = steps["debit"]
    for name, step in steps.items():
        step["write_units_vs_debit"] = ratio(
            step["total_write_units_in_a_batch"], debit["total_write_units_in_a_batch"]
        )
        say(
            f"  {name}: {step['requests']} requests "
            f"({' + '.join(f'{n} {k}' for k, n in step['by_operation'].items())}), "
            f"{step['read_units']:g} RCU, {step['write_units']:g} WCU in the function "
            f"({step['account_write_units']:g} on the account) + "
            f"{step['materializer']['write_units_per_step']:g} materializing "
            f"(+{step['materializer']['write_units_per_batch']:g} per batch) = "
            f"{step['total_write_units_in_a_batch']:g} WCU"
        )
    return steps


def _expiry(env: Environment, account_id: str, due: dict[str, Any]) -> dict[str, Any]:
    """One sweep of the ExpirerFunction finding exactly the one due hold; fails otherwise."""
    expires_at = datetime.fromisoformat(str(due["expiresAt"]).replace("Z", "+00:00"))
    deadline = time.monotonic() + DUE_WAIT_SECONDS
    while time.time() < expires_at.timestamp():  # the clock's own time, not async work
        if time.monotonic() > deadline:
            raise RuntimeError(f"hold {due['holdId']} not due after {DUE_WAIT_SECONDS} s")
        time.sleep(0.05)
    with env.in_function(EXPIRER_FUNCTION):
        handler = env.handler(EXPIRER_FUNCTION)
        recorder = _Recorder(env)
        try:
            step, report = recorder.run(
                "Expirer handler (scheduled sweep, one due hold)",
                lambda: _call(handler, dict(SCHEDULED_EVENT)),
            )
        finally:
            recorder.close()
    no_lots = {"due": 0, "expired": 0, "pinned": 0, "gone": 0, "failed": 0}
    expected = {"due": 1, "expired": 1, "alreadyClosed": 0, "failed": 0, "lots": no_lots}
    if report != expected:
        raise RuntimeError(f"the sweep of one due hold reported {report}, not {expected}")
    account = _account(env, account_id)
    if Decimal(str(account.get("reserved", 0))) != 0 or account.get("holds"):
        raise RuntimeError(f"the expired hold is still on the account: {account.get('holds')}")
    step["sweep"] = report
    return step


# ---------------------------------------------------------------- 2. at the cap
def at_the_cap(env: Environment) -> dict[str, Any]:
    """The account item's size and the write units of a debit and a reserve with 0, 1, 10
    and 50 open holds; the 51st reserve refused (`TOO_MANY_OPEN_HOLDS`) or the section
    fails."""
    rows: list[dict[str, Any]] = []
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        ledger = wiring.ledger()
        account_id = unique("holdcap")
        env.create_account(ledger, account_id, OPENING_BALANCE)
        _invoke(handler, writes.debit_event(account_id, unique("k")))  # prices cached
        probe = _probe(wiring.store().client, env.admin)
        opened = 0
        try:
            for level in CAP_LEVELS:
                while opened < level:
                    ledger.holds.reserve(
                        ReserveCommand(
                            account_id=account_id,
                            idempotency_key=unique("fill"),
                            amount=Decimal(1),
                            expires_in=FILL_HOLD_SECONDS,
                        )
                    )
                    opened += 1
                account = _account(env, account_id, raw=True)
                holds_now = len(from_item(account).get("holds") or {})
                if holds_now != level:
                    raise RuntimeError(f"{holds_now} open holds on the account, expected {level}")
                with probe.recording() as tally:
                    _invoke(handler, writes.debit_event(account_id, unique("k")))
                debit = tally.summary()
                with probe.recording() as tally:
                    response = _call(
                        handler, reserve_event(account_id, unique("k"), FILL_HOLD_SECONDS)
                    )
                reserve = tally.summary()
                refused = response.get("error", {}).get("code")
                if level < MAX_OPEN_HOLDS and refused:
                    raise RuntimeError(f"reserve with {level} open holds refused: {refused}")
                if level >= MAX_OPEN_HOLDS and refused != REFUSAL_AT_CAP:
                    raise RuntimeError(
                        f"reserve #{level + 1} with {level} open holds: {response}, "
                        f"not {REFUSAL_AT_CAP}"
                    )
                if not refused:
                    opened += 1
                rows.append(_cap_row(level, item_size(account), debit, reserve, refused))
        finally:
            probe.close()
    final = _account(env, account_id)
    left_open = len(final.get("holds") or {})
    if left_open != MAX_OPEN_HOLDS or Decimal(str(final["reserved"])) != MAX_OPEN_HOLDS:
        raise RuntimeError(
            f"after the refusal: {left_open} holds, reserved {final['reserved']} "
            f"(expected {MAX_OPEN_HOLDS} of 1 credit)"
        )
    for row in rows:
        say(
            f"  {row['open_holds']:>2} open holds: account item {row['account_item_bytes']} B; "
            f"debit {row['debit']['write_units']:g} WCU ({row['debit']['account_write_units']:g} "
            f"on the account, <= {row['max_debits_per_second_one_account']:,.0f} debits/s); "
            f"reserve {row['reserve']['write_units']:g} WCU"
            + (f" refused {row['reserve']['refused']}" if row["reserve"]["refused"] else "")
        )
    return {"levels": rows, "max_open_holds": MAX_OPEN_HOLDS, "refused_at_cap": REFUSAL_AT_CAP}


def _cap_row(
    level: int,
    account_bytes: int,
    debit: dict[str, Any],
    reserve: dict[str, Any],
    refused: str | None,
) -> dict[str, Any]:
    def figures(summary: dict[str, Any]) -> dict[str, Any]:
        written = [
            item["bytes"]
            for call in summary["calls"]
            for item in call["write_items"]
            if item["pk"].startswith("ACCOUNT#")
        ]
        return {
            "requests": summary["requests"],
            "by_operation": summary["by_operation"],
            "write_units": summary["write_units"],
            "account_write_units": summary["write_units_by_pk_prefix"].get("ACCOUNT", 0.0),
            "account_bytes_written": max(written, default=None),
            "read_units": summary["read_units"],
            "local_reported_units": summary["local_reported_units"],
        }

    account_units = figures(debit)["account_write_units"]
    return {
        "open_holds": level,
        "account_item_bytes": account_bytes,
        "debit": figures(debit),
        "reserve": {**figures(reserve), "refused": refused},
        "max_debits_per_second_one_account": (
            PARTITION_WRITE_UNITS_PER_SECOND / account_units if account_units else None
        ),
    }


# ---------------------------------------------------------------- 3. rate
@dataclass
class PairOutcome:
    pair_latencies: list[float] = field(default_factory=list)
    reserve_latencies: list[float] = field(default_factory=list)
    capture_latencies: list[float] = field(default_factory=list)
    captured: int = 0
    declined: int = 0
    gave_up: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def run_pairs(
    env: Environment, workers: list[contention.DesignWorker], pairs: int
) -> dict[str, Any]:
    """`pairs` reserve+capture pairs of 1 credit on one account, by `workers` at once."""
    funded = contention.plan(pairs)
    account_id = unique(f"holdhot{len(workers)}")
    env.create_account(env.ledger(env.store()), account_id, funded)
    ledgers = [env.ledger(w.store) for w in workers]  # fresh instances, warm clients
    before = sum(w.updates.count for w in workers)
    outcome, lock = PairOutcome(), threading.Lock()

    def attempt(ledger: Ledger, key: str) -> None:
        step = "reserve"
        try:
            started = time.perf_counter()
            try:
                held = ledger.holds.reserve(
                    ReserveCommand(
                        account_id=account_id,
                        idempotency_key=f"r-{key}",
                        amount=Decimal(1),
                        endpoint="/v1/echo",
                    )
                )
            except InsufficientCredits:
                with lock:
                    outcome.declined += 1
                return
            reserved = time.perf_counter()
            step = "capture"
            ledger.holds.capture(
                CaptureCommand(
                    account_id=account_id, idempotency_key=f"c-{key}", hold_id=held.hold_id
                )
            )
        except contention.GIVE_UPS as exc:
            with lock:
                outcome.gave_up[f"{step} {type(exc).__name__}"] += 1
            return
        except Exception as exc:  # counted and reported, never hidden
            with lock:
                outcome.errors[f"{step} {type(exc).__name__}"] += 1
            return
        done = time.perf_counter()
        with lock:
            outcome.captured += 1
            outcome.pair_latencies.append(done - started)
            outcome.reserve_latencies.append(reserved - started)
            outcome.capture_latencies.append(done - reserved)

    run_id = unique("p")
    tasks = [f"{run_id}-{index}" for index in range(pairs)]
    random.shuffle(tasks)
    elapsed = run_together(ledgers, tasks, attempt)
    updates = sum(w.updates.count for w in workers) - before
    started = time.perf_counter()
    records = env.drain()
    drained = time.perf_counter() - started
    checks = verify_pairs(env, account_id, funded, outcome)
    return {
        "pairs_attempted": pairs,
        "funded": funded,
        "captured": outcome.captured,
        "declined": outcome.declined,
        "gave_up": sum(outcome.gave_up.values()),
        "gave_up_by_reason": dict(outcome.gave_up),
        "errors": dict(outcome.errors),
        "seconds": round(elapsed, 3),
        "pairs_per_second": round(outcome.captured / elapsed, 1) if elapsed else None,
        "latency": latency(outcome.pair_latencies),
        "reserve_latency": latency(outcome.reserve_latencies),
        "capture_latency": latency(outcome.capture_latencies),
        "account_updates": updates,
        "updates_per_pair": round(updates / pairs, 3),
        "correct": checks["ok"],
        "checks": checks,
        "drain": {"stream_records": records, "seconds": round(drained, 3)},
        "_outcome": outcome,
    }


def verify_pairs(
    env: Environment, account_id: str, funded: int, outcome: PairOutcome
) -> dict[str, Any]:
    """Exact accounting after a pair run, once the stream is drained: nothing left
    reserved, the balance moved by exactly the captures, one hold and one capture entry
    per pair in a gapless chain that adds up, the head at the account's version, and
    every HOLD item captured."""
    problems: list[str] = []
    account = _account(env, account_id)
    balance = Decimal(str(account["balance"]))
    reserved = Decimal(str(account.get("reserved", 0)))
    available = Decimal(str(account.get("available", balance)))
    captured = outcome.captured
    clean = not outcome.gave_up and not outcome.errors
    if reserved != 0 or account.get("holds"):
        problems.append(f"reserved {reserved} with {len(account.get('holds') or {})} holds open")
    if available != balance - reserved:
        problems.append(f"available {available} != {balance} - {reserved}")
    if balance < 0:
        problems.append(f"overspent: balance {balance}")
    if balance != funded - captured:
        problems.append(f"balance {balance} != {funded} - {captured}")
    if clean and captured != funded:
        problems.append(f"{captured} captured for {funded} funded pairs")
    entries = _entries(env, account_id)
    types = Counter(entry.type.value for entry in entries)
    if len(entries) != 1 + 2 * captured:  # + the opening grant
        problems.append(f"{len(entries)} entries for {captured} pairs: {dict(types)}")
    if types[EntryType.HOLD.value] != captured or types[EntryType.CAPTURE.value] != captured:
        problems.append(f"entry types {dict(types)} for {captured} pairs")
    problems += _chain_problems(entries, balance, reserved)
    head = env.head(account_id).version
    version = int(account["version"])
    if head != version:
        problems.append(f"ledger head {head} != account version {version}")
    statuses = _hold_statuses(env, account_id)
    if statuses != Counter({"captured": captured}):
        problems.append(f"HOLD items {dict(statuses)} for {captured} captured pairs")
    return {
        "ok": not problems,
        "problems": problems[:10],
        "entries": len(entries),
        "account_version": version,
        "head": head,
        "reserved": str(reserved),
        "balance": str(balance),
        "hold_items": dict(statuses),
    }


def _chain_problems(entries: list[LedgerEntry], balance: Decimal, reserved: Decimal) -> list[str]:
    """Sequences 1..n, `balanceAfter` and `availableAfter` chains that add up, and sums
    equal to the account's balance and reserved."""
    problems: list[str] = []
    running = held = Decimal(0)
    for position, entry in enumerate(entries, start=1):
        running += entry.amount
        held += entry.held or Decimal(0)
        if entry.sequence != position:
            problems.append(f"sequence gap at {position} (found {entry.sequence})")
            break
        if entry.balance_after != running:
            problems.append(
                f"balanceAfter breaks at {position}: {entry.balance_after} != {running}"
            )
            break
        if entry.available_after is not None and entry.available_after != running - held:
            problems.append(
                f"availableAfter breaks at {position}: {entry.available_after} != "
                f"{running} - {held}"
            )
            break
    if running != balance:
        problems.append(f"ledger sums to {running}, balance is {balance}")
    if held != reserved:
        problems.append(f"held sums to {held}, reserved is {reserved}")
    return problems


def _entries(env: Environment, account_id: str) -> list[LedgerEntry]:
    """Every materialized entry of the account, oldest first."""
    entries: list[LedgerEntry] = []
    after: int | None = None
    while True:
        page, after = env.materializer_store.entries.page(
            account_id, limit=500, newest_first=False, after_sequence=after
        )
        entries.extend(page)
        if after is None:
            return entries


def _hold_statuses(env: Environment, account_id: str) -> Counter[str]:
    statuses: Counter[str] = Counter()
    paginator = env.admin.get_paginator("query")
    for page in paginator.paginate(
        TableName=env.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.holds_pk(account_id)}},
        ConsistentRead=True,
    ):
        statuses.update(str(from_item(item).get("status")) for item in page.get("Items", []))
    return statuses


def _account(env: Environment, account_id: str, *, raw: bool = False) -> dict[str, Any]:
    item = env.admin.get_item(
        TableName=env.table, Key=writes.account_key(account_id), ConsistentRead=True
    )["Item"]
    return dict(item) if raw else from_item(item)


def _combine_pairs(runs: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    outcomes: list[PairOutcome] = [run.pop("_outcome") for run in runs]
    attempted = sum(r["pairs_attempted"] for r in runs)
    updates = sum(r["account_updates"] for r in runs)
    gave_up: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for run in runs:
        gave_up.update(run["gave_up_by_reason"])
        errors.update(run["errors"])
    rates = [r["pairs_per_second"] or 0.0 for r in runs]
    return {
        "workers": workers,
        "runs": len(runs),
        "pairs_per_second": round(statistics.median(rates), 1),
        "operations_per_second": round(2 * statistics.median(rates), 1),
        "rates": rates,
        "latency": latency([v for o in outcomes for v in o.pair_latencies]),
        "reserve_latency": latency([v for o in outcomes for v in o.reserve_latencies]),
        "capture_latency": latency([v for o in outcomes for v in o.capture_latencies]),
        "pairs_attempted": attempted,
        "captured": sum(r["captured"] for r in runs),
        "declined": sum(r["declined"] for r in runs),
        "gave_up": sum(gave_up.values()),
        "gave_up_by_reason": dict(gave_up),
        "errors": dict(errors),
        "updates_per_pair": round(updates / attempted, 3) if attempted else None,
        "correct": all(r["correct"] for r in runs),
        "problems": [p for r in runs for p in r["checks"]["problems"]][:10],
        "each": runs,
    }


def rates(
    env: Environment, concurrency: tuple[int, ...], pairs: int, repeats: int
) -> dict[str, Any]:
    """Reserve+capture pairs/s beside debits/s (this design and the Powertools baseline),
    at each worker count, `repeats` runs each in rotating order."""
    started = time.perf_counter()
    size = max(concurrency)
    design_pool = []
    for _ in range(size):
        store = env.store()
        design_pool.append(
            contention.DesignWorker(store, contention.AccountUpdates(store.client, env.table))
        )
    baseline_pool = contention.baseline_pool(env, size)
    env.drain()
    setup = round(time.perf_counter() - started, 2)
    rows: list[dict[str, Any]] = []
    names = (PAIRS, DESIGN, BASELINE)
    for workers in concurrency:
        pair_runs: list[dict[str, Any]] = []
        debit_runs: dict[str, tuple[list[dict[str, Any]], list[contention.Outcome]]] = {
            DESIGN: ([], []),
            BASELINE: ([], []),
        }
        for repeat in range(repeats):
            shift = (repeat + workers) % len(names)
            for name in names[shift:] + names[:shift]:
                if name == PAIRS:
                    pair_runs.append(run_pairs(env, design_pool[:workers], pairs))
                    continue
                if name == DESIGN:
                    run, outcome = contention.run_design(env, design_pool[:workers], pairs)
                else:
                    run, outcome = contention.run_baseline(env, baseline_pool[:workers], pairs)
                debit_runs[name][0].append(run)
                debit_runs[name][1].append(outcome)
        held = _combine_pairs(pair_runs, workers)
        design = contention._combine(*debit_runs[DESIGN], workers)
        baseline = contention._combine(*debit_runs[BASELINE], workers)
        row = {
            "workers": workers,
            PAIRS: held,
            DESIGN: design,
            BASELINE: baseline,
            "pairs_vs_debits": ratio(held["pairs_per_second"], design["debits_per_second"]),
            "pairs_vs_baseline": ratio(held["pairs_per_second"], baseline["debits_per_second"]),
            "operations_vs_debits": ratio(
                held["operations_per_second"], design["debits_per_second"]
            ),
        }
        rows.append(row)
        say(
            f"  {workers:>2} workers: {held['pairs_per_second']} pairs/s (p50/p99 "
            f"{held['latency'].get('p50_ms')}/{held['latency'].get('p99_ms')} ms, "
            f"{held['gave_up']} gave up, {held['updates_per_pair']} updates/pair, "
            f"exact={held['correct']}) vs {design['debits_per_second']} debits/s "
            f"(x{row['pairs_vs_debits']}) vs baseline {baseline['debits_per_second']}/s "
            f"(x{row['pairs_vs_baseline']})"
        )
    return {
        "one_account": rows,
        "pairs_per_run": pairs,
        "funded_per_run": contention.plan(pairs),
        "repeats": repeats,
        "setup_seconds": setup,
    }


# ---------------------------------------------------------------- the section
def holds(
    env: Environment, concurrency: tuple[int, ...], pairs: int, repeats: int
) -> dict[str, Any]:
    part = Parts()
    with part("costs", "cost per step"):
        costs = step_costs(env)
    with part("cap", "write units at the cap"):
        cap = at_the_cap(env)
    with part("rate", "rate on one account"):
        rate = rates(env, concurrency, pairs, repeats)
    return {"costs": costs, "cap": cap, "rate": rate, "seconds": part.seconds}


def failures(section: dict[str, Any]) -> list[str]:
    """The accounting checks of the rate runs (the cost and cap checks raise)."""
    problems: list[str] = []
    for row in (section.get("rate") or {}).get("one_account") or []:
        for name in (PAIRS, DESIGN, BASELINE):
            if not row[name]["correct"]:
                problems.append(f"holds {name} x{row['workers']}: {row[name]['problems']}")
    return problems
