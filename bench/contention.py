"""Contention: concurrent workers debiting one account, or spread over many.

Each worker is one function instance: its own client, store and ledger (with its own cache
of account versions), running in a thread. Every account is funded for all but about a tenth
of the debits aimed at it, so each run also proves the accounting exact under contention:
successes == funded debits (no overspend, nothing refused early), ledger entries ==
successes with gapless sequences and a consistent `balanceAfter` chain, and the final
balance == opening balance - successes.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench.env import Environment, run_together, say, unique
from bench.stats import latency
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.errors import InsufficientCredits, ServiceBusy
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore, from_item


@dataclass
class Worker:
    """One simulated function instance, reused across runs (its client stays warm)."""

    store: CreditsStore
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        events = self.store.client.meta.events
        events.register("before-call.dynamodb", self._count)
        events.register("after-call.dynamodb.TransactWriteItems", self._outcome)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _outcome(self, parsed: dict[str, Any], **_: Any) -> None:
        """Why a transaction attempt failed: the balance's reason, or the first non-None."""
        reasons = [r.get("Code", "None") for r in parsed.get("CancellationReasons", [])]
        if reasons:
            reason = (
                reasons[0]
                if reasons[0] != "None"
                else next((r for r in reasons if r != "None"), "None")
            )
            self.calls[f"cancelled:{reason}"] += 1
        elif "Error" in parsed:
            self.calls[f"error:{parsed['Error'].get('Code')}"] += 1


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    declined_latencies: list[float] = field(default_factory=list)
    successes: Counter[str] = field(default_factory=Counter)
    declined: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class WorkerPool:
    def __init__(self, env: Environment, size: int) -> None:
        self.env = env
        self.workers = [Worker(env.store()) for _ in range(size)]


def plan_run(debits: int, accounts: int) -> tuple[int, int]:
    """(debits aimed at each account, debits each account is funded for)."""
    per_account = debits // accounts
    funded = per_account - max(1, per_account // 10)
    return per_account, funded


def run_contention(
    env: Environment, pool: WorkerPool, workers: int, accounts: int, debits: int
) -> dict[str, Any]:
    per_account, funded = plan_run(debits, accounts)
    setup = env.ledger(env.store())
    account_ids = [unique(f"hot{workers}x{accounts}") for _ in range(accounts)]
    for account_id in account_ids:
        env.create_account(setup, account_id, funded)
    tasks = [account_ids[i % accounts] for i in range(per_account * accounts)]
    random.shuffle(tasks)
    lock = threading.Lock()
    outcome = Outcome()
    chosen = pool.workers[:workers]
    before = [Counter(w.calls) for w in chosen]
    ledgers = [env.ledger(w.store) for w in chosen]  # fresh instances: no cached account state

    def work(ledger: Ledger, task: tuple[int, str]) -> None:
        index, account_id = task
        command = DebitCommand(
            account_id=account_id,
            idempotency_key=f"c-{index}",
            amount=Decimal(1),
            endpoint="/v1/echo",
        )
        started = time.perf_counter()
        try:
            ledger.debit(command)
        except InsufficientCredits:
            elapsed = time.perf_counter() - started
            with lock:
                outcome.declined[account_id] += 1
                outcome.declined_latencies.append(elapsed)
            return
        except ServiceBusy:
            with lock:
                outcome.gave_up += 1
            return
        except Exception as exc:  # counted and reported, never hidden
            with lock:
                outcome.errors[type(exc).__name__] += 1
            return
        elapsed = time.perf_counter() - started
        with lock:
            outcome.successes[account_id] += 1
            outcome.latencies.append(elapsed)

    elapsed = run_together(ledgers, enumerate(tasks), work)

    calls: Counter[str] = Counter()
    for worker, previous in zip(chosen, before, strict=True):
        calls.update(worker.calls - previous)
    successes = sum(outcome.successes.values())
    checks = verify(env, account_ids, funded, per_account, outcome)
    result = {
        "workers": workers,
        "accounts": accounts,
        "debits_attempted": len(tasks),
        "funded_per_account": funded,
        "successes": successes,
        "declined": sum(outcome.declined.values()),
        "gave_up": outcome.gave_up,
        "errors": dict(outcome.errors),
        "seconds": round(elapsed, 3),
        "debits_per_second": round(successes / elapsed, 1) if elapsed else None,
        "latency": latency(outcome.latencies),
        "declined_latency": latency(outcome.declined_latencies),
        "transact_write_items": calls["TransactWriteItems"],
        "get_item": calls["GetItem"],
        "update_item": calls["UpdateItem"],
        "attempts_per_debit": round(calls["TransactWriteItems"] / len(tasks), 2),
        "failed_attempts": {
            name.split(":", 1)[1]: count
            for name, count in calls.items()
            if name.startswith(("cancelled:", "error:"))
        },
        "correct": checks["ok"],
        "checks": checks,
    }
    say(
        f"  {workers:>2} workers on {accounts:>2} account(s): {result['debits_per_second']} "
        f"debits/s, p50 {result['latency'].get('p50_ms')} ms, p99 "
        f"{result['latency'].get('p99_ms')} ms, {result['attempts_per_debit']} attempts/debit, "
        f"correct={checks['ok']}"
    )
    return result


def verify(
    env: Environment, account_ids: list[str], funded: int, per_account: int, outcome: Outcome
) -> dict[str, Any]:
    """Exact accounting for every account after a run."""
    problems: list[str] = []
    for account_id in account_ids:
        successes = outcome.successes[account_id]
        balance = env.balance(account_id)
        entries = _ledger(env, account_id)
        if balance < 0:
            problems.append(f"{account_id}: overspent, balance {balance}")
        if balance != funded - successes:
            problems.append(f"{account_id}: balance {balance} != {funded} - {successes}")
        if outcome.gave_up == 0 and not outcome.errors and successes != funded:
            problems.append(f"{account_id}: {successes} successes for {funded} funded debits")
        if len(entries) != successes + 1:  # + the opening grant
            problems.append(
                f"{account_id}: {len(entries) - 1} debit entries, {successes} successes"
            )
        running = Decimal(0)
        for position, entry in enumerate(entries, start=1):
            running += Decimal(str(entry["amount"]))
            if int(entry["sequence"]) != position:
                problems.append(f"{account_id}: sequence gap at {position}")
                break
            if Decimal(str(entry["balanceAfter"])) != running:
                problems.append(f"{account_id}: balanceAfter breaks at {position}")
                break
        if running != balance:
            problems.append(f"{account_id}: ledger sums to {running}, balance is {balance}")
    return {
        "ok": not problems,
        "problems": problems[:10],
        "no_overspend": not any("overspent" in p for p in problems),
        "ledger_entries_equal_successes": not any("entries" in p for p in problems),
        "accounts_checked": len(account_ids),
        "debits_aimed_per_account": per_account,
    }


def _ledger(env: Environment, account_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        request: dict[str, Any] = {
            "TableName": env.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": keys.ledger_pk(account_id)}},
            "ConsistentRead": True,
        }
        if start:
            request["ExclusiveStartKey"] = start
        page = env.admin.query(**request)
        items.extend(from_item(item) for item in page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def contention(
    env: Environment, concurrency: tuple[int, ...], hot_debits: int, debits: int, spread: int
) -> dict[str, Any]:
    pool = WorkerPool(env, max(concurrency))
    one = [run_contention(env, pool, n, 1, hot_debits) for n in concurrency]
    many = [run_contention(env, pool, n, spread, debits) for n in concurrency]
    return {"one_account": one, "spread": many, "spread_accounts": spread}
