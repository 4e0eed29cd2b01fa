"""Credit lots: what the lots on the account item do to its size and to the write units of
every change, what an expiry sweep costs per lot, and the debit rate on one hot account
with 1, 5 and `MAX_ACTIVE_LOTS` active lots beside the single-lot debit and the Powertools
baseline in the same run.

Sizes: every active lot is an entry of the account item's `lots` map, written with every
change of the account. One account is filled to 1, 5 and 25 (`MAX_ACTIVE_LOTS`) lots, then
50 open holds (`MAX_OPEN_HOLDS`); another to `MAX_LOTS_ON_ITEM` lots (25 granted, the
`REOPENED` top-ranked spent by one debit, as many more granted, the debit refunded into them)
and 50 holds. At each level: the account item's bytes and one debit through the Debit
handler priced by item size (1 KB per write unit; a refused conditional update is billed
like a write). The 26th grant must be refused with `TOO_MANY_ACTIVE_LOTS` and the refund
must reopen the lots it emptied (the section fails otherwise).
Sweep: the ExpirerFunction's scheduled sweep through its handler with 0, 1 and 24 due lots
on one account (24 + 1 live lot = the cap), each then materialized alone in its stream
batch: requests and units, and per lot expired the difference to the empty sweep. Lots are
granted due by a ledger whose clock runs `BACKDATE` behind (a lot may not be granted to
expire sooner than `MIN_LOT_LIFETIME`), so the sweep finds them due by the real clock.
Rate: 1 and 16 workers (threads, each its own client, store and ledger, as in
bench/contention.py) debiting `DEBIT_CREDITS` credits from ONE account whose lots are
ranked by priority, expiry and age; "run out": the funds are spread over the lots in sizes
that are no multiple of a debit, so lots are emptied throughout the run (many debits span
two lots; every empty lot makes the other workers' cached images refuse once: a replan),
the last with the funds; "none runs out": the top-ranked lot covers every debit. Beside
them, in rotating order, the same number of debits of this design on a one-lot account
(section 3's) and of the Powertools baseline. After each lots run the stream is drained and
the accounting checked: the lots sum to the balance, none negative, the chain adds up, and
replaying the entries' allocations in sequence order every debit took from the live lots in
burn order (a prefix of them, emptying all but the last it touched).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import contention, holds, writes
from bench.capacity import PARTITION_WRITE_UNITS_PER_SECOND, Probe, item_size
from bench.env import Environment, Handler, Parts, run_together, say, unique
from bench.stats import ratio
from serverless_credits import wiring
from serverless_credits.domain.commands import (
    CreditCommand,
    DebitCommand,
    RefundCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import InsufficientCredits, TooManyActiveLots
from serverless_credits.domain.holds import MAX_OPEN_HOLDS
from serverless_credits.domain.lots import (
    MAX_ACTIVE_LOTS,
    MAX_LOTS_ON_ITEM,
    MIN_LOT_LIFETIME,
    OVERDRAFT_LOT,
    burn_order,
)
from serverless_credits.domain.models import Account, EntryType, LedgerEntry, utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.items import from_item

DEBIT_FUNCTION = writes.DEBIT_FUNCTION
EXPIRER_FUNCTION = holds.EXPIRER_FUNCTION
DESIGN = contention.DESIGN  # section 3's debit of 1 credit on a one-lot account
BASELINE = contention.BASELINE
# A debit in the rate runs: lot sizes are no multiple of it, so debits span lot boundaries.
DEBIT_CREDITS = Decimal(3)
# Each lot of the size levels (debits of 1 credit never empty one).
LOT_CREDITS = Decimal(10_000)
# The longest amounts an item may carry (`domain.money`: up to a billion, six decimals): a
# number's size grows with its digits, so the item at the caps is also measured with them.
LONG_LOT = Decimal("123456789.123456")
LONG_SMALL_LOT = Decimal("1234567.123456")
LONG_HOLD = Decimal("1234567.123456")
# Lots that cover a whole run are ranked first by this priority (the others: 40-60).
TOP_PRIORITY = 90
FILL_HOLD_SECONDS = 3600  # holds of the size levels: never due while the suite runs
REFUSAL_AT_CAP = "TOO_MANY_ACTIVE_LOTS"
# The lots the sweep finds due are granted by a ledger this far behind the real clock.
BACKDATE = timedelta(minutes=10)
DUE_LOT_CREDITS = Decimal(7)
SWEEP_SIZES = (0, 1, MAX_ACTIVE_LOTS - 1)  # the largest: with one live lot, at the cap
REOPENED = MAX_LOTS_ON_ITEM - MAX_ACTIVE_LOTS  # lots the refund reopens on a full item
# Written once per account and stream batch by the Materializer, whatever the batch holds.
PER_BATCH_ITEMS = holds.PER_BATCH_ITEMS


@dataclass(frozen=True)
class Shape:
    """One lots configuration of the rate runs."""

    lots: int
    runs_out: bool

    @property
    def name(self) -> str:
        return f"lots_{self.lots}_{'run_out' if self.runs_out else 'last'}"

    @property
    def label(self) -> str:
        ran = "lots run out" if self.runs_out else "none runs out"
        return f"{self.lots} lot{'s' if self.lots != 1 else ''}, {ran}"


SHAPES = (
    Shape(1, runs_out=False),
    Shape(5, runs_out=True),
    Shape(MAX_ACTIVE_LOTS, runs_out=True),
    Shape(MAX_ACTIVE_LOTS, runs_out=False),
)


def split(total: Decimal, parts: int) -> list[Decimal]:
    """`total` whole credits in `parts` lots differing by at most one credit."""
    base, extra = divmod(int(total), parts)
    return [Decimal(base + 1)] * extra + [Decimal(base)] * (parts - extra)


def lot_sizes(shape: Shape, debits: int) -> list[Decimal]:
    """The lots a run's account is granted, the top-ranked first: spread over every lot
    (the account funded for `contention.plan(debits)` debits) or one lot covering them all
    with the others untouched."""
    if shape.runs_out:
        return split(DEBIT_CREDITS * contention.plan(debits), shape.lots)
    return [DEBIT_CREDITS * debits + 1] + [LOT_CREDITS] * (shape.lots - 1)


def _terms(index: int, now: datetime, *, top: bool) -> tuple[int, datetime | None]:
    """Priority and expiry of a run's lot: mixed, so the burn order is not grant order."""
    if top:
        return TOP_PRIORITY, None
    expires = now + timedelta(days=1 + index) if index % 2 == 0 else None
    return 40 + 10 * (index % 3), expires


# ---------------------------------------------------------------- helpers
def _grant(
    ledger: Ledger,
    account_id: str,
    amount: Decimal,
    priority: int | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Grant a lot; its id."""
    result = ledger.grant(
        CreditCommand(
            account_id=account_id,
            idempotency_key=unique("grant"),
            amount=amount,
            priority=priority,
            expires_at=expires_at,
        )
    )
    return next(lot for lot, share in (result.lots or {}).items() if share > 0)


def _account(env: Environment, account_id: str) -> Account:
    found = env.materializer_store.accounts.get(account_id, consistent=True)
    if found is None:
        raise RuntimeError(f"account {account_id} not found")
    return found


def _raw_account(env: Environment, account_id: str) -> dict[str, Any]:
    item = env.admin.get_item(
        TableName=env.table, Key=writes.account_key(account_id), ConsistentRead=True
    )["Item"]
    return dict(item)


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


def _account_updates(summary: dict[str, Any]) -> int:
    """Account `UpdateItem` requests in a tally (refused ones included)."""
    return sum(
        1
        for call in summary["calls"]
        if call["operation"] == "UpdateItem"
        and any(item["pk"].startswith("ACCOUNT#") for item in call["write_items"])
    )


# ---------------------------------------------------------------- 1. item size
def item_sizes(env: Environment) -> dict[str, Any]:
    """The account item's size and a debit's write units at 1, 5 and 25 lots, 25 lots + 50
    holds and 30 lots + 50 holds; the 26th grant refused, the refund reopening to 30."""
    rows: list[dict[str, Any]] = []
    with env.in_function(DEBIT_FUNCTION):
        handler = env.handler(DEBIT_FUNCTION)
        ledger = wiring.ledger()  # the handler's: its cached image of the account stays fresh
        probe = Probe(wiring.store().client, side_client=env.admin, capacity=True)
        try:
            account_id = unique("lotcap")
            env.create_account(ledger, account_id, 0)
            granted = 0
            for level in (1, 5, MAX_ACTIVE_LOTS):
                while granted < level:
                    _grant(ledger, account_id, LOT_CREDITS)
                    granted += 1
                rows.append(_level(env, handler, probe, account_id, lots=level, open_holds=0))
            refusal = _refused_grant(ledger, probe, account_id)
            _reserve(ledger, account_id, MAX_OPEN_HOLDS)
            rows.append(
                _level(
                    env,
                    handler,
                    probe,
                    account_id,
                    lots=MAX_ACTIVE_LOTS,
                    open_holds=MAX_OPEN_HOLDS,
                )
            )
            for lot, small, hold, digits in (
                (LOT_CREDITS, Decimal(10), Decimal(1), "short"),
                (LONG_LOT, LONG_SMALL_LOT, LONG_HOLD, "long"),
            ):
                full = _thirty_lots(env, ledger, lot, small)
                _reserve(ledger, full, MAX_OPEN_HOLDS, hold)
                row = _level(
                    env, handler, probe, full, lots=MAX_LOTS_ON_ITEM, open_holds=MAX_OPEN_HOLDS
                )
                rows.append({**row, "amounts": digits})
        finally:
            probe.close()
    for row in rows:
        say(
            f"  {row['lots']:>2} lots + {row['open_holds']:>2} holds "
            f"({row.get('amounts', 'short')} amounts): account item "
            f"{row['account_item_bytes']:,} B; debit {row['debit']['write_units']:g} WCU "
            f"({row['debit']['account_write_units']:g} on the account, <= "
            f"{row['max_changes_per_second_one_account']:,.0f} changes/s)"
        )
    say(f"  grant #{MAX_ACTIVE_LOTS + 1}: refused {refusal['refused']}")
    return {
        "levels": rows,
        "refused_grant": refusal,
        "max_active_lots": MAX_ACTIVE_LOTS,
        "max_lots_on_item": MAX_LOTS_ON_ITEM,
        "max_open_holds": MAX_OPEN_HOLDS,
    }


def _reserve(ledger: Ledger, account_id: str, count: int, amount: Decimal = Decimal(1)) -> None:
    for _ in range(count):
        ledger.holds.reserve(
            ReserveCommand(
                account_id=account_id,
                idempotency_key=unique("fill"),
                amount=amount,
                expires_in=FILL_HOLD_SECONDS,
            )
        )


def _refused_grant(ledger: Ledger, probe: Probe, account_id: str) -> dict[str, Any]:
    """Grant #26 at the cap: refused with TOO_MANY_ACTIVE_LOTS, or the section fails."""
    with probe.recording() as tally:
        try:
            _grant(ledger, account_id, LOT_CREDITS)
        except TooManyActiveLots as refused:
            code: str | None = refused.code
        else:
            code = None
    if code != REFUSAL_AT_CAP:
        raise RuntimeError(f"grant #{MAX_ACTIVE_LOTS + 1} was not refused with {REFUSAL_AT_CAP}")
    summary = tally.summary()
    return {
        "refused": code,
        "requests": summary["requests"],
        "by_operation": summary["by_operation"],
        "write_units": summary["write_units"],
        "account_updates": _account_updates(summary),
    }


def _thirty_lots(env: Environment, ledger: Ledger, lot: Decimal, small: Decimal) -> str:
    """An account with `MAX_LOTS_ON_ITEM` lots: 25 granted (the `REOPENED` top-ranked of
    `small` credits), those emptied by one debit, as many more granted, then the debit
    refunded into the lots it emptied."""
    account_id = unique("lotcap30")
    env.create_account(ledger, account_id, 0)
    for _ in range(REOPENED):
        _grant(ledger, account_id, small, priority=TOP_PRIORITY)
    for _ in range(MAX_ACTIVE_LOTS - REOPENED):
        _grant(ledger, account_id, lot)
    paid = ledger.debit(
        DebitCommand(
            account_id=account_id,
            idempotency_key=unique("empty5"),
            amount=small * REOPENED,
            endpoint="/v1/echo",
        )
    )
    for _ in range(REOPENED):
        _grant(ledger, account_id, lot)
    env.drain()  # a refund reads the debit's ledger entry
    ledger.refund(
        RefundCommand(
            account_id=account_id,
            idempotency_key=unique("reopen"),
            transaction_id=paid.transaction_id,
        )
    )
    lots = _account(env, account_id).lots or {}
    if len(lots) != MAX_LOTS_ON_ITEM:
        raise RuntimeError(f"the refund left {len(lots)} lots, not {MAX_LOTS_ON_ITEM}")
    return account_id


def _level(
    env: Environment,
    handler: Handler,
    probe: Probe,
    account_id: str,
    *,
    lots: int,
    open_holds: int,
) -> dict[str, Any]:
    raw = _raw_account(env, account_id)
    account = from_item(raw)
    found_lots = len(account.get("lots") or {})
    found_holds = len(account.get("holds") or {})
    if (found_lots, found_holds) != (lots, open_holds):
        raise RuntimeError(
            f"{found_lots} lots and {found_holds} holds on the account, "
            f"expected {lots} and {open_holds}"
        )
    with probe.recording() as tally:
        response = holds._call(handler, writes.debit_event(account_id, unique("k")))
    if "error" in response:
        raise RuntimeError(f"debit at {lots} lots refused: {response['error']}")
    summary = tally.summary()
    written = [
        item["bytes"]
        for call in summary["calls"]
        for item in call["write_items"]
        if item["pk"].startswith("ACCOUNT#")
    ]
    account_units = summary["write_units_by_pk_prefix"].get("ACCOUNT", 0.0)
    return {
        "lots": lots,
        "open_holds": open_holds,
        "account_item_bytes": item_size(raw),
        "debit": {
            "requests": summary["requests"],
            "by_operation": summary["by_operation"],
            "write_units": summary["write_units"],
            "account_write_units": account_units,
            "account_bytes_written": max(written, default=None),
            "account_updates": _account_updates(summary),
            "local_reported_units": summary["local_reported_units"],
        },
        "max_changes_per_second_one_account": (
            PARTITION_WRITE_UNITS_PER_SECOND / account_units if account_units else None
        ),
    }


# ---------------------------------------------------------------- 2. expiry sweep
def sweep_costs(env: Environment) -> dict[str, Any]:
    """The Expirer handler's sweep with 0, 1 and 24 due lots on one account, priced like
    the holds steps; per lot expired, the difference to the empty sweep."""
    seeder = wiring.build_ledger(
        env.store(),
        PriceCatalog(env.store().catalog, env.settings.cache_seconds),
        env.settings,
        clock=lambda: utc_now() - BACKDATE,
    )
    sweeps: dict[str, Any] = {}
    with env.in_function(EXPIRER_FUNCTION):
        handler = env.handler(EXPIRER_FUNCTION)
        recorder = holds._Recorder(env)
        try:
            for due in SWEEP_SIZES:
                account_id = _seed_due(env, seeder, due) if due else None
                step, report = recorder.run(
                    f"Expirer handler (scheduled sweep, {due} due lots)",
                    lambda: holds._call(handler, dict(holds.SCHEDULED_EVENT)),
                )
                step["sweep"] = report
                step["due_lots"] = due
                step["account_updates"] = _account_updates(
                    {"calls": step["calls"]}  # the function's calls
                )
                _check_sweep(env, account_id, due, report)
                sweeps[str(due)] = step
        finally:
            recorder.close()
    empty = sweeps["0"]
    per_lot: dict[str, Any] = {}
    for due in SWEEP_SIZES[1:]:
        step = sweeps[str(due)]
        per_lot[str(due)] = {
            "requests": round((step["requests"] - empty["requests"]) / due, 2),
            "read_units": round((step["read_units"] - empty["read_units"]) / due, 2),
            "write_units": round((step["write_units"] - empty["write_units"]) / due, 2),
            "materializer_write_units": round(
                step["materializer"]["write_units_per_step"] / due, 2
            ),
            "account_updates": round(step["account_updates"] / due, 2),
        }
    for due in SWEEP_SIZES:
        step = sweeps[str(due)]
        say(
            f"  sweep of {due} due lots: {step['requests']} requests "
            f"({' + '.join(f'{n} {k}' for k, n in step['by_operation'].items())}), "
            f"{step['read_units']:g} RCU, {step['write_units']:g} WCU + "
            f"{step['materializer']['write_units_per_step']:g} materializing, "
            f"{step['account_updates']} account updates"
        )
    return {"sweeps": sweeps, "per_lot": per_lot, "backdate_seconds": BACKDATE.total_seconds()}


def _seed_due(env: Environment, seeder: Ledger, due: int) -> str:
    """An account with `due` lots past their expiry and one live lot."""
    account_id = unique("lotdue")
    env.create_account(seeder, account_id, 0)
    _grant(seeder, account_id, LOT_CREDITS)  # no expiry: the credit left after the sweep
    for _ in range(due):
        expires = utc_now() - BACKDATE + MIN_LOT_LIFETIME + timedelta(seconds=5)
        _grant(seeder, account_id, DUE_LOT_CREDITS, expires_at=expires)
    return account_id


def _check_sweep(
    env: Environment, account_id: str | None, due: int, report: dict[str, Any]
) -> None:
    expected = {"due": due, "expired": due, "pinned": 0, "gone": 0, "failed": 0}
    if report.get("lots") != expected:
        raise RuntimeError(f"the sweep of {due} due lots reported {report}, not lots={expected}")
    if account_id is None:
        return
    account = _account(env, account_id)
    if len(account.lots or {}) != 1 or account.balance != LOT_CREDITS:
        raise RuntimeError(
            f"after the sweep: {len(account.lots or {})} lots, balance {account.balance}"
        )
    expiries = [e for e in _entries(env, account_id) if e.type is EntryType.EXPIRY]
    if len(expiries) != due or sum(e.amount for e in expiries) != -DUE_LOT_CREDITS * due:
        raise RuntimeError(f"{len(expiries)} expiry entries for {due} due lots")


# ---------------------------------------------------------------- 3. rate
class AccountReads(contention.AccountRequests):
    """The `GetItem`s of account items (a cold image, or a cached one that said
    "refuse")."""

    OPERATION = "GetItem"


@dataclass
class LotWorker(contention.DesignWorker):
    reads: AccountReads


def run_lots(
    env: Environment, workers: list[LotWorker], shape: Shape, debits: int
) -> tuple[dict[str, Any], contention.Outcome]:
    """`debits` debits of `DEBIT_CREDITS` on one account with `shape`'s lots."""
    account_id = unique(f"lothot{len(workers)}")
    setup = env.ledger(env.store())
    env.create_account(setup, account_id, 0)
    now = utc_now()
    sizes = lot_sizes(shape, debits)
    for index, size in enumerate(sizes):
        top = index == 0 and not shape.runs_out
        priority, expires = _terms(index, now, top=top)
        _grant(setup, account_id, size, priority, expires)
    funded = sum(sizes, Decimal(0))
    ledgers = [env.ledger(w.store) for w in workers]  # fresh instances, warm clients
    updates_before = sum(w.updates.count for w in workers)
    reads_before = sum(w.reads.count for w in workers)
    outcome, lock = contention.Outcome(), threading.Lock()

    def attempt(ledger: Ledger, key: str) -> bool:
        try:
            ledger.debit(
                DebitCommand(
                    account_id=account_id,
                    idempotency_key=key,
                    amount=DEBIT_CREDITS,
                    endpoint="/v1/echo",
                )
            )
        except InsufficientCredits:
            return False
        return True

    run_id = unique("l")
    keys = [f"{run_id}-{index}" for index in range(debits)]
    random.shuffle(keys)
    elapsed = run_together(
        ledgers,
        keys,
        lambda ledger, key: contention._timed(outcome, lock, lambda: attempt(ledger, key)),
    )
    updates = sum(w.updates.count for w in workers) - updates_before
    reads = sum(w.reads.count for w in workers) - reads_before
    started = time.perf_counter()
    records = env.drain()
    drained = time.perf_counter() - started
    checks = verify_lots(env, account_id, shape, funded, outcome)
    funded_debits = int(funded // DEBIT_CREDITS)
    run = contention._summary(elapsed, debits, funded_debits, outcome, updates, checks)
    run.update(
        {
            "shape": shape.name,
            "lots": shape.lots,
            "lot_sizes": [str(size) for size in sizes],
            "account_reads": reads,
            "reads_per_debit": round(reads / debits, 3),
            "refused_updates": updates - outcome.successes,
            "lots_emptied": checks["lots_emptied"],
            "debits_across_lots": checks["debits_across_lots"],
            "drain": {"stream_records": records, "seconds": round(drained, 3)},
        }
    )
    return run, outcome


def verify_lots(
    env: Environment, account_id: str, shape: Shape, funded: Decimal, outcome: contention.Outcome
) -> dict[str, Any]:
    """Exact accounting of a lots run once its stream is drained."""
    problems: list[str] = []
    account = _account(env, account_id)
    lots = dict(account.lots or {})
    successes = outcome.successes
    clean = not outcome.gave_up and not outcome.errors
    if account.balance != funded - DEBIT_CREDITS * successes:
        problems.append(f"balance {account.balance} != {funded} - {DEBIT_CREDITS} x {successes}")
    if sum(lots.values(), Decimal(0)) != account.balance:
        problems.append(f"lots sum to {sum(lots.values())}, balance is {account.balance}")
    if any(remaining < 0 for remaining in lots.values()) or OVERDRAFT_LOT in lots:
        problems.append(f"a negative lot: {lots}")
    expected_left = 0 if shape.runs_out else shape.lots
    if clean and len(lots) != expected_left:
        problems.append(f"{len(lots)} lots left, expected {expected_left}")
    if clean and successes != int(funded // DEBIT_CREDITS) and shape.runs_out:
        problems.append(f"{successes} successes for {funded} funded credits")
    if not shape.runs_out and outcome.declined:
        problems.append(f"{outcome.declined} debits declined with a lot covering them all")
    entries = _entries(env, account_id)
    if len(entries) != shape.lots + successes:
        problems.append(f"{len(entries)} entries for {shape.lots} grants + {successes} debits")
    problems += _chain_problems(entries, account.balance)
    replayed, across, order_problems = replay_burns(entries)
    problems += order_problems
    if replayed != lots:
        problems.append(f"the entries' allocations leave {replayed}, the item has {lots}")
    head = env.head(account_id).version
    if head != account.version:
        problems.append(f"ledger head {head} != account version {account.version}")
    return {
        "ok": not problems,
        "problems": problems[:10],
        "entries": len(entries),
        "account_version": account.version,
        "head": head,
        "lots_left": len(lots),
        "lots_emptied": shape.lots - len(lots),
        "debits_across_lots": across,
    }


def _chain_problems(entries: list[LedgerEntry], balance: Decimal) -> list[str]:
    problems: list[str] = []
    running = Decimal(0)
    for position, entry in enumerate(entries, start=1):
        running += entry.amount
        if entry.sequence != position:
            return [*problems, f"sequence gap at {position} (found {entry.sequence})"]
        if entry.balance_after != running:
            return [*problems, f"balanceAfter breaks at {position}"]
    if running != balance:
        problems.append(f"ledger sums to {running}, balance is {balance}")
    return problems


def replay_burns(
    entries: list[LedgerEntry],
) -> tuple[dict[str, Decimal], int, list[str]]:
    """Replay the entries' lot allocations in sequence order: the lots left, the debits
    that took from more than one lot, and every debit that did not take from the live lots
    in burn order (a prefix of them, all but the last emptied) or paid other than its
    amount."""
    remaining: dict[str, Decimal] = {}
    across = 0
    problems: list[str] = []
    for entry in entries:
        allocation = entry.lots or {}
        if entry.type is EntryType.DEBIT:
            paid = {lot: -share for lot, share in allocation.items() if share < 0}
            if sum(paid.values(), Decimal(0)) != -entry.amount:
                problems.append(f"#{entry.sequence} paid {paid} for {entry.amount}")
            live = [lot for lot in burn_order(remaining) if remaining[lot] > 0]
            order = burn_order(paid)
            if order != live[: len(order)]:
                problems.append(f"#{entry.sequence} burned {order} before {live[: len(order)]}")
            elif any(paid[lot] != remaining[lot] for lot in order[:-1]) or (
                order and paid[order[-1]] > remaining[order[-1]]
            ):
                problems.append(f"#{entry.sequence} took {paid} of {remaining}")
            across += len(order) > 1
        for lot, share in allocation.items():
            remaining[lot] = remaining.get(lot, Decimal(0)) + share
            if remaining[lot] < 0:
                problems.append(f"#{entry.sequence} left lot {lot} at {remaining[lot]}")
            if remaining[lot] == 0:
                del remaining[lot]
    return remaining, across, problems[:10]


def _combine_lots(
    shape: Shape, runs: list[dict[str, Any]], outcomes: list[contention.Outcome], workers: int
) -> dict[str, Any]:
    combined = contention._combine(runs, outcomes, workers)
    attempted = combined["debits_attempted"]
    reads = sum(r["account_reads"] for r in runs)
    return {
        **combined,
        "shape": shape.name,
        "label": shape.label,
        "lots": shape.lots,
        "runs_out": shape.runs_out,
        "reads_per_debit": round(reads / attempted, 3) if attempted else None,
        "refused_updates": sum(r["refused_updates"] for r in runs),
        "lots_emptied_per_run": round(sum(r["lots_emptied"] for r in runs) / len(runs), 1),
        "debits_across_lots_per_run": round(
            sum(r["debits_across_lots"] for r in runs) / len(runs), 1
        ),
    }


def rates(
    env: Environment, concurrency: tuple[int, ...], debits: int, repeats: int
) -> dict[str, Any]:
    """Debits/s on one account with each lots shape, beside the single-lot debit and the
    Powertools baseline, at each worker count, `repeats` runs each in rotating order."""
    started = time.perf_counter()
    size = max(concurrency)
    pool: list[LotWorker] = []
    for _ in range(size):
        store = env.store()
        pool.append(
            LotWorker(
                store,
                contention.AccountUpdates(store.client, env.table),
                AccountReads(store.client, env.table),
            )
        )
    baseline_pool = contention.baseline_pool(env, size)
    env.drain()
    setup = round(time.perf_counter() - started, 2)
    by_name = {shape.name: shape for shape in SHAPES}
    names = (DESIGN, BASELINE, *by_name)
    rows: list[dict[str, Any]] = []
    for workers in concurrency:
        collected: dict[str, tuple[list[dict[str, Any]], list[contention.Outcome]]] = {
            name: ([], []) for name in names
        }
        for repeat in range(repeats):
            shift = (repeat + workers) % len(names)
            for name in names[shift:] + names[:shift]:
                if name == DESIGN:
                    design_workers: list[contention.DesignWorker] = list(pool[:workers])
                    run, outcome = contention.run_design(env, design_workers, debits)
                elif name == BASELINE:
                    run, outcome = contention.run_baseline(env, baseline_pool[:workers], debits)
                else:
                    run, outcome = run_lots(env, pool[:workers], by_name[name], debits)
                collected[name][0].append(run)
                collected[name][1].append(outcome)
        design = contention._combine(*collected[DESIGN], workers)
        baseline = contention._combine(*collected[BASELINE], workers)
        configs = []
        for name, shape in by_name.items():
            config = _combine_lots(shape, *collected[name], workers)
            config["vs_single_lot"] = ratio(
                config["debits_per_second"], design["debits_per_second"]
            )
            config["vs_baseline"] = ratio(
                config["debits_per_second"], baseline["debits_per_second"]
            )
            configs.append(config)
            say(
                f"  {workers:>2} workers, {shape.label}: {config['debits_per_second']} debits/s "
                f"(x{config['vs_single_lot']} single lot, x{config['vs_baseline']} baseline; "
                f"p50/p99 {config['latency'].get('p50_ms')}/{config['latency'].get('p99_ms')} "
                f"ms; {config['attempts_per_debit']} updates/debit, "
                f"{config['lots_emptied_per_run']} lots emptied, exact={config['correct']})"
            )
        say(
            f"  {workers:>2} workers: single lot {design['debits_per_second']} debits/s "
            f"({design['attempts_per_debit']} updates/debit), baseline "
            f"{baseline['debits_per_second']}/s"
        )
        rows.append({"workers": workers, DESIGN: design, BASELINE: baseline, "configs": configs})
    return {
        "one_account": rows,
        "debits_per_run": debits,
        "debit_credits": str(DEBIT_CREDITS),
        "funded_debits_when_run_out": contention.plan(debits),
        "repeats": repeats,
        "setup_seconds": setup,
    }


def _with_write_units(rate: dict[str, Any], sizes: dict[str, Any]) -> None:
    """Each configuration's write units per successful debit, from the size levels: the
    function's units of a debit at that many lots, plus one account write per refused
    update (billed like a write of the item)."""
    levels = {
        row["lots"]: row["debit"] for row in sizes.get("levels") or [] if not row["open_holds"]
    }
    for row in rate.get("one_account") or []:
        for config in row["configs"]:
            debit = levels.get(config["lots"])
            per_success = config.get("updates_per_success")
            if debit is None or per_success is None:
                continue
            account_units = debit["account_write_units"]
            config["account_write_units_per_debit"] = round(per_success * account_units, 2)
            config["write_units_per_debit"] = round(
                debit["write_units"] + (per_success - 1) * account_units, 2
            )


# ---------------------------------------------------------------- the section
def lots(
    env: Environment, concurrency: tuple[int, ...], debits: int, repeats: int
) -> dict[str, Any]:
    part = Parts()
    with part("sizes", "account item size and write units per change"):
        sizes = item_sizes(env)
    with part("sweep", "expiry sweep"):
        sweep = sweep_costs(env)
    with part("rate", "rate on one account"):
        rate = rates(env, concurrency, debits, repeats)
    _with_write_units(rate, sizes)
    return {"sizes": sizes, "sweep": sweep, "rate": rate, "seconds": part.seconds}


def failures(section: dict[str, Any]) -> list[str]:
    """The accounting checks of the rate runs (the size and sweep checks raise)."""
    problems: list[str] = []
    for row in (section.get("rate") or {}).get("one_account") or []:
        for name in (DESIGN, BASELINE):
            if not row[name]["correct"]:
                problems.append(f"lots {name} x{row['workers']}: {row[name]['problems']}")
        for config in row["configs"]:
            if not config["correct"]:
                problems.append(f"lots {config['shape']} x{row['workers']}: {config['problems']}")
    return problems
