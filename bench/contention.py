"""Contention: concurrent workers debiting ONE account, this design beside the baseline a
user would build instead (Powertools' idempotency utility around a plain conditional
`UpdateItem`, bench/baselines.py), in the same run, at each worker count, in alternating
order.

Each worker is one function instance: its own client, store and ledger, running in a
thread. The account is funded for all but about a tenth of the debits aimed at it, so each
run also proves the accounting exact under contention. This design: successes == funded
debits (no overspend, nothing refused early), and once the stream is drained the ledger
holds the opening grant plus one entry per success, sequences 1..n without a gap, a
`balanceAfter` chain that adds up, summing to the balance, its head at the account's
version. The baseline: the balance moved by exactly the accepted debits, never past the
funds (it writes no ledger).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench import baselines
from bench.env import Environment, run_together, say, unique
from bench.stats import latency, ratio
from devtools import dynamodb_local
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.errors import InsufficientCredits, OperationInProgress, ServiceBusy
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore

DESIGN = "this_design"
BASELINE = "powertools_idempotency"
TARGET_WORKERS = 16
TARGETS = {"min_ratio": 0.6, "max_p99_ms": 1000.0, "give_ups": 0}
GIVE_UPS = (ServiceBusy, OperationInProgress)


class AccountRequests:
    """Counts the requests of one kind a client sends to the credits table's account
    items."""

    OPERATION = ""

    def __init__(self, client: Any, table: str) -> None:
        self.count = 0
        self._table = table
        self._lock = threading.Lock()
        client.meta.events.register(f"provide-client-params.dynamodb.{self.OPERATION}", self._seen)

    def _seen(self, params: dict[str, Any], **_: Any) -> None:
        pk = params.get("Key", {}).get("pk", {}).get("S", "")
        if params.get("TableName") == self._table and str(pk).startswith("ACCOUNT#"):
            with self._lock:
                self.count += 1


class AccountUpdates(AccountRequests):
    """The UpdateItem requests (the attempts a debit makes on the hot item)."""

    OPERATION = "UpdateItem"


def baseline_pool(env: Environment, size: int) -> list[BaselineWorker]:
    """`size` workers of the Powertools baseline, each its own client, on one idempotency
    table."""
    table = baselines.create_idempotency_table(env)
    pool = []
    for _ in range(size):
        client = dynamodb_local.client_for(env.endpoint)
        pool.append(
            BaselineWorker(
                baselines.powertools_debit(env, client, table), AccountUpdates(client, env.table)
            )
        )
    return pool


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    successes: int = 0
    declined: int = 0
    gave_up: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class DesignWorker:
    """One Debit function instance (reused across runs, so its client stays warm)."""

    store: CreditsStore
    updates: AccountUpdates


@dataclass
class BaselineWorker:
    debit: baselines.Debit
    updates: AccountUpdates


def plan(debits: int) -> int:
    """Debits one account is funded for out of `debits` aimed at it."""
    return debits - max(1, debits // 10)


def _timed(outcome: Outcome, lock: threading.Lock, attempt: Callable[[], bool]) -> None:
    started = time.perf_counter()
    try:
        charged = attempt()
    except GIVE_UPS as exc:
        with lock:
            outcome.gave_up[type(exc).__name__] += 1
        return
    except Exception as exc:  # counted and reported, never hidden
        with lock:
            outcome.errors[type(exc).__name__] += 1
        return
    elapsed = time.perf_counter() - started
    with lock:
        if charged:
            outcome.successes += 1
            outcome.latencies.append(elapsed)
        else:
            outcome.declined += 1


def run_design(
    env: Environment, workers: list[DesignWorker], debits: int
) -> tuple[dict[str, Any], Outcome]:
    funded = plan(debits)
    account_id = unique(f"hot{len(workers)}")
    env.create_account(env.ledger(env.store()), account_id, funded)
    ledgers = [(env.ledger(w.store), w) for w in workers]  # fresh instances, warm clients
    before = sum(w.updates.count for w in workers)
    outcome, lock = Outcome(), threading.Lock()

    def attempt(ledger: Ledger, key: str) -> bool:
        try:
            ledger.debit(
                DebitCommand(
                    account_id=account_id,
                    idempotency_key=key,
                    amount=Decimal(1),
                    endpoint="/v1/echo",
                )
            )
        except InsufficientCredits:
            return False
        return True

    keys = [f"c-{index}" for index in range(debits)]
    random.shuffle(keys)
    elapsed = run_together(
        ledgers, keys, lambda pair, key: _timed(outcome, lock, lambda: attempt(pair[0], key))
    )
    updates = sum(w.updates.count for w in workers) - before
    started = time.perf_counter()
    records = env.drain()
    drained = time.perf_counter() - started
    checks = verify_design(env, account_id, funded, outcome)
    run = _summary(elapsed, debits, funded, outcome, updates, checks)
    run["drain"] = {"stream_records": records, "seconds": round(drained, 3)}
    return run, outcome


def run_baseline(
    env: Environment, workers: list[BaselineWorker], debits: int
) -> tuple[dict[str, Any], Outcome]:
    funded = plan(debits)
    account_id = unique(f"pthot{len(workers)}")
    env.create_account(env.ledger(env.store()), account_id, funded)
    before = sum(w.updates.count for w in workers)
    outcome, lock = Outcome(), threading.Lock()
    run_id = unique("pt")
    keys = [f"{run_id}-{index}" for index in range(debits)]
    random.shuffle(keys)
    elapsed = run_together(
        workers,
        keys,
        lambda worker, key: _timed(outcome, lock, lambda: worker.debit(account_id, key)),
    )
    updates = sum(w.updates.count for w in workers) - before
    balance = env.balance(account_id)
    problems: list[str] = []
    if balance != funded - outcome.successes:
        problems.append(f"balance {balance} != {funded} - {outcome.successes}")
    if balance < 0:
        problems.append(f"overspent: balance {balance}")
    if not outcome.gave_up and not outcome.errors and outcome.successes != funded:
        problems.append(f"{outcome.successes} successes for {funded} funded debits")
    checks = {"ok": not problems, "problems": problems}
    return _summary(elapsed, debits, funded, outcome, updates, checks), outcome


def _summary(  # noqa: PLR0917 - one figure per argument
    elapsed: float,
    debits: int,
    funded: int,
    outcome: Outcome,
    updates: int,
    checks: dict[str, Any],
) -> dict[str, Any]:
    return {
        "debits_attempted": debits,
        "funded": funded,
        "successes": outcome.successes,
        "declined": outcome.declined,
        "gave_up": sum(outcome.gave_up.values()),
        "gave_up_by_reason": dict(outcome.gave_up),
        "errors": dict(outcome.errors),
        "seconds": round(elapsed, 3),
        "debits_per_second": round(outcome.successes / elapsed, 1) if elapsed else None,
        "latency": latency(outcome.latencies),
        "account_updates": updates,
        "attempts_per_debit": round(updates / debits, 3),
        "updates_per_success": round(updates / outcome.successes, 3) if outcome.successes else None,
        "correct": checks["ok"],
        "checks": checks,
    }


def verify_design(
    env: Environment, account_id: str, funded: int, outcome: Outcome
) -> dict[str, Any]:
    """Exact accounting of one account after its stream is drained."""
    problems: list[str] = []
    balance = env.balance(account_id)
    version = env.version(account_id)
    rows = env.ledger_rows(account_id)
    successes = outcome.successes
    if balance < 0:
        problems.append(f"overspent: balance {balance}")
    if balance != funded - successes:
        problems.append(f"balance {balance} != {funded} - {successes}")
    if not outcome.gave_up and not outcome.errors and successes != funded:
        problems.append(f"{successes} successes for {funded} funded debits")
    if len(rows) != successes + 1:  # + the opening grant
        problems.append(f"{len(rows) - 1} debit entries for {successes} successes")
    running = Decimal(0)
    for position, (sequence, amount, after) in enumerate(rows, start=1):
        running += amount
        if sequence != position:
            problems.append(f"sequence gap at {position} (found {sequence})")
            break
        if after != running:
            problems.append(f"balanceAfter breaks at {position}: {after} != {running}")
            break
    if running != balance:
        problems.append(f"ledger sums to {running}, balance is {balance}")
    head = env.head(account_id).version
    if head != version:
        problems.append(f"ledger head {head} != account version {version}")
    return {
        "ok": not problems,
        "problems": problems[:10],
        "entries": len(rows),
        "account_version": version,
        "head": head,
    }


def _combine(runs: list[dict[str, Any]], outcomes: list[Outcome], workers: int) -> dict[str, Any]:
    latencies = [value for outcome in outcomes for value in outcome.latencies]
    rates = [r["debits_per_second"] or 0.0 for r in runs]
    attempted = sum(r["debits_attempted"] for r in runs)
    updates = sum(r["account_updates"] for r in runs)
    successes = sum(r["successes"] for r in runs)
    gave_up: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for run in runs:
        gave_up.update(run["gave_up_by_reason"])
        errors.update(run["errors"])
    return {
        "workers": workers,
        "runs": len(runs),
        "debits_per_second": round(statistics.median(rates), 1),
        "rates": rates,
        "latency": latency(latencies),
        "debits_attempted": attempted,
        "successes": successes,
        "declined": sum(r["declined"] for r in runs),
        "gave_up": sum(gave_up.values()),
        "gave_up_by_reason": dict(gave_up),
        "errors": dict(errors),
        "attempts_per_debit": round(updates / attempted, 3) if attempted else None,
        "updates_per_success": round(updates / successes, 3) if successes else None,
        "correct": all(r["correct"] for r in runs),
        "problems": [p for r in runs for p in r["checks"]["problems"]][:10],
        "each": runs,
    }


def contention(
    env: Environment, concurrency: tuple[int, ...], debits: int, repeats: int
) -> dict[str, Any]:
    size = max(concurrency)
    design_pool = []
    for _ in range(size):
        store = env.store()
        design_pool.append(DesignWorker(store, AccountUpdates(store.client, env.table)))
    baselines_ = baseline_pool(env, size)
    env.drain()
    rows: list[dict[str, Any]] = []
    for workers in concurrency:
        results: dict[str, tuple[list[dict[str, Any]], list[Outcome]]] = {
            DESIGN: ([], []),
            BASELINE: ([], []),
        }
        for repeat in range(repeats):
            order = (DESIGN, BASELINE) if (repeat + workers) % 2 == 0 else (BASELINE, DESIGN)
            for name in order:
                if name == DESIGN:
                    run, outcome = run_design(env, design_pool[:workers], debits)
                else:
                    run, outcome = run_baseline(env, baselines_[:workers], debits)
                results[name][0].append(run)
                results[name][1].append(outcome)
        design = _combine(*results[DESIGN], workers)
        baseline = _combine(*results[BASELINE], workers)
        row = {
            "workers": workers,
            DESIGN: design,
            BASELINE: baseline,
            "ratio": ratio(design["debits_per_second"], baseline["debits_per_second"]),
        }
        rows.append(row)
        say(
            f"  {workers:>2} workers: {design['debits_per_second']} debits/s (p50 "
            f"{design['latency'].get('p50_ms')} ms, p99 {design['latency'].get('p99_ms')} ms, "
            f"{design['gave_up']} gave up, {design['attempts_per_debit']} updates/debit, "
            f"exact={design['correct']}) vs baseline {baseline['debits_per_second']}/s "
            f"(p99 {baseline['latency'].get('p99_ms')} ms): ratio {row['ratio']}"
        )
    return {
        "one_account": rows,
        "debits_per_run": debits,
        "funded_per_run": plan(debits),
        "repeats": repeats,
        "targets": verdict(rows),
    }


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked at 16 workers (reported, never asserted)."""
    row = next((r for r in rows if r["workers"] == TARGET_WORKERS), None)
    if row is None:
        return {"workers": TARGET_WORKERS, "measured": False}
    design = row[DESIGN]
    p99 = design["latency"].get("p99_ms")
    checks = {
        "ratio": row["ratio"],
        "ratio_ok": row["ratio"] is not None and row["ratio"] >= TARGETS["min_ratio"],
        "p99_ms": p99,
        "p99_ok": p99 is not None and p99 <= TARGETS["max_p99_ms"],
        "gave_up": design["gave_up"],
        "gave_up_ok": design["gave_up"] == TARGETS["give_ups"],
        "exact": design["correct"],
    }
    checks["all_met"] = all(v for k, v in checks.items() if k.endswith("_ok")) and design["correct"]
    return {"workers": TARGET_WORKERS, "measured": True, **TARGETS, **checks}
