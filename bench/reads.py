"""Read operations through the HTTP handlers, called in-process with API Gateway REST (v1)
proxy events (events/*.json with the key id and query replaced).

- cost: requests, items read and capacity of balance, transactions (first page, the next
  page by cursor, and a page filtered by a type no entry has: `type=refund`, the worst case
  of a sparse filter, bounded to `queries.MAX_SCANNED` entries examined), stats over
  7/30/90 days and the account summary, on an account with a ledger of `scale_entries[0]`
  entries spread over 90 days;
- overhead: median handler time / median time of the bare DynamoDB call(s) it issued
  (replayed with the same parameters on the same table, interleaved call by call);
- scale: the same reads on an account with 100x (10x in quick mode) the ledger entries.

Accounts are seeded fast in the layout the materializer writes (`seed_account`): ledger
items by `BatchWriteItem`, daily usage items (with their sequence range) and the ledger
head through the store, and the account item at the version those entries imply.
"""

from __future__ import annotations

import copy
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from bench import PROJECT_ROOT
from bench.capacity import Probe
from bench.env import Environment, Handler, quiet, say, unique
from bench.sizes import Sizes
from bench.stats import latency, overhead, ratio
from devtools import dynamodb_local
from devtools.api_events import LambdaContextStub, api_event
from serverless_credits import wiring
from serverless_credits.domain.models import (
    Account,
    EntryType,
    LastOp,
    LedgerEntry,
    UsageIncrement,
    utc_now,
)
from serverless_credits.domain.operations import transaction_id
from serverless_credits.domain.outcomes import Counted, LedgerHead
from serverless_credits.ledger.operations import OPENING_BALANCE_KEY
from serverless_credits.storage import keys
from serverless_credits.storage.items import to_item

EVENTS_DIR = PROJECT_ROOT / "events"
SEED_DAYS = 90
SEED_THREADS = 4


@dataclass(frozen=True)
class ReadOp:
    name: str
    function: str  # template logical id
    path: str
    event_file: str
    query: dict[str, str] | None = None
    next_page: bool = False  # follow the first page's nextCursor


READ_OPS = (
    ReadOp("balance", "BalanceFunction", "/v1/credits/balance", "balance.json"),
    ReadOp(
        "transactions_page",
        "TransactionsFunction",
        "/v1/credits/transactions",
        "transactions.json",
        {"limit": "50"},
    ),
    ReadOp(
        "transactions_next_page",
        "TransactionsFunction",
        "/v1/credits/transactions",
        "transactions.json",
        {"limit": "50"},
        next_page=True,
    ),
    ReadOp(
        "transactions_filtered",
        "TransactionsFunction",
        "/v1/credits/transactions",
        "transactions.json",
        {"limit": "50", "type": "refund"},  # the seeded ledger has none: a full bounded scan
    ),
    ReadOp("stats_7d", "StatsFunction", "/v1/credits/stats", "stats.json", {"days": "7"}),
    ReadOp("stats_30d", "StatsFunction", "/v1/credits/stats", "stats.json", {"days": "30"}),
    ReadOp("stats_90d", "StatsFunction", "/v1/credits/stats", "stats.json", {"days": "90"}),
    ReadOp("summary", "AccountSummaryFunction", "/v1/account/summary", "account-summary.json"),
)
OVERHEAD_OPS = ("balance", "transactions_page")
SCALE_OPS = (
    "balance",
    "transactions_page",
    "transactions_next_page",
    "transactions_filtered",
    "stats_90d",
)


# ---------------------------------------------------------------- events
def _template_event(op: ReadOp) -> dict[str, Any]:
    path = EVENTS_DIR / op.event_file
    if path.is_file():
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded
    return api_event(op.path, api_key_id=None)


def rest_event(op: ReadOp, api_key_id: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event for `op`, as the key `api_key_id` would send it."""
    event = copy.deepcopy(_template_event(op))
    query = {**(op.query or {}), **(extra or {})} or None
    event.update(
        resource=op.path,
        path=op.path,
        httpMethod="GET",
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
    )
    context = event.setdefault("requestContext", {})
    context.update(resourcePath=op.path, httpMethod="GET", requestId=str(uuid.uuid4()))
    context.setdefault("identity", {})["apiKeyId"] = api_key_id
    return event


def call(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    with quiet():
        response = handler(event, LambdaContextStub())
    if response.get("statusCode") != 200:
        raise RuntimeError(f"{event['path']}: HTTP {response.get('statusCode')}: {response}")
    body: dict[str, Any] = json.loads(response["body"])
    return body


# ---------------------------------------------------------------- seeding
@dataclass(frozen=True)
class SeededAccount:
    account_id: str
    api_key_id: str
    entries: int
    seconds: float


def seed_account(env: Environment, entries: int) -> SeededAccount:
    """An account whose ledger holds `entries` entries over the last 90 days, in the layout
    the materializer writes: an opening grant, then debits of one credit, as
    `LEDGER#<id>/SEQ#<sequence>` items (BatchWriteItem of the store's `to_item`), one usage
    item per day with its counters and its `firstSeq`/`lastSeq` range (through the usage
    store's own idempotent count), the ledger's `HEAD`, and the account item at the
    matching version, figures and last operation."""
    started = time.perf_counter()
    store = env.store()
    account_id = unique(f"scale{entries}")
    now = utc_now()
    # From the start of the UTC day 89 days ago: every day of a 90-day window has entries.
    first = datetime.combine(now.date() - timedelta(days=SEED_DAYS - 1), dt_time(0, 1), UTC)
    step = (now - first) / entries
    grant = Decimal(entries * 2)
    days: dict[date, list[int]] = {}  # day -> its sequences
    items: list[dict[str, Any]] = []
    balance = Decimal(0)
    moment = first
    entry: LedgerEntry | None = None
    for sequence in range(1, entries + 1):
        moment = first + step * (sequence - 1)
        is_grant = sequence == 1
        amount = grant if is_grant else Decimal(-1)
        balance += amount
        entry = LedgerEntry(
            account_id=account_id,
            transaction_id=transaction_id(sequence, uuid.uuid4().hex),
            sequence=sequence,
            type=EntryType.GRANT if is_grant else EntryType.DEBIT,
            amount=amount,
            balance_after=balance,
            available_after=balance,
            description="Opening balance" if is_grant else "seeded call",
            action=None if is_grant else "api_call",
            endpoint=None if is_grant else "/v1/echo",
            idempotency_key=OPENING_BALANCE_KEY if is_grant else f"seed-{sequence}",
            created_at=moment,
        )
        items.append(to_item(entry, pk=keys.ledger_pk(account_id), sk=keys.entry_sk(sequence)))
        days.setdefault(moment.date(), []).append(sequence)
    assert entry is not None
    _batch_write(env, items)
    for day, sequences in days.items():
        calls = sum(1 for s in sequences if s != 1)
        credits = Decimal(calls)
        usage = UsageIncrement(
            day=day,
            calls=calls,
            credits_used=credits,
            by_type={"api_call": credits},
            by_endpoint={"/v1/echo": calls},
            by_endpoint_credits={"/v1/echo": credits},
        )
        # The day's first and last sequences index it; the day's usage rides on the last.
        counted = [Counted(sequences[-1], usage if calls else None)]
        if len(sequences) > 1:
            counted.insert(0, Counted(sequences[0], None))
        store.usage.count(account_id, day, counted)
    store.entries.advance_head(account_id, LedgerHead(entries, moment))
    account = Account(
        account_id=account_id,
        balance=balance,
        available=balance,
        used=Decimal(entries - 1),
        total=grant,
        lifetime_requests=entries - 1,
        version=entries,
        last_op=LastOp(
            id=uuid.uuid4().hex,
            key=entry.idempotency_key or "",
            type=entry.type,
            amount=entry.amount,
            at=moment,
        ),
        created_at=first,
        updated_at=now,
    )
    env.admin.put_item(
        TableName=env.table,
        Item=to_item(account, pk=keys.account_pk(account_id), sk=keys.ACCOUNT_SK),
    )
    api_key_id = unique("key")
    env.map_api_key(store, api_key_id, account_id)
    return SeededAccount(account_id, api_key_id, entries, time.perf_counter() - started)


def _batch_write(env: Environment, items: list[dict[str, Any]]) -> None:
    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
    local = threading.local()

    def write(chunk: list[dict[str, Any]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = dynamodb_local.client_for(env.endpoint)
        pending: dict[str, Any] = {env.table: [{"PutRequest": {"Item": i}} for i in chunk]}
        for attempt in range(20):
            response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(0.01 * (attempt + 1))
        raise RuntimeError("BatchWriteItem left items unprocessed")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, chunks))


# ---------------------------------------------------------------- measurements
class ReadBench:
    def __init__(self, env: Environment, sizes: Sizes) -> None:
        self.env = env
        self.sizes = sizes
        self.handlers: dict[str, Handler] = {}
        self.missing = [op.function for op in READ_OPS if not env.has_function_code(op.function)]

    def _event(self, op: ReadOp, account: SeededAccount, handler: Handler) -> dict[str, Any]:
        extra: dict[str, str] = {}
        if op.next_page:
            first = call(handler, rest_event(op, account.api_key_id))
            if not first.get("nextCursor"):
                raise RuntimeError(f"{op.name}: the first page has no nextCursor")
            extra["cursor"] = first["nextCursor"]
        return rest_event(op, account.api_key_id, extra)

    def _each_op(
        self, names: tuple[str, ...] | None, body: Callable[[ReadOp, Handler], None]
    ) -> None:
        for op in READ_OPS:
            if names is not None and op.name not in names:
                continue
            with self.env.in_function(op.function):
                body(op, self.env.handler(op.function))

    def costs(self, account: SeededAccount) -> dict[str, Any]:
        """Requests and capacity per read, on a warm function (and the first, cold call)."""
        results: dict[str, Any] = {}

        def measure(op: ReadOp, handler: Handler) -> None:
            probe = Probe(wiring.store().client, side_client=self.env.admin, capacity=True)
            event = self._event(op, account, handler)
            with probe.recording() as cold:
                call(handler, event)
            for _ in range(2):
                call(handler, self._event(op, account, handler))
            event = self._event(op, account, handler)
            with probe.recording() as warm:
                call(handler, event)
            probe.close()
            times: list[float] = []
            for _ in range(self.sizes.op_samples):
                fresh = copy.deepcopy(event)
                fresh["requestContext"]["requestId"] = str(uuid.uuid4())
                started = time.perf_counter()
                call(handler, fresh)
                times.append(time.perf_counter() - started)
            results[op.name] = {
                **warm.summary(),
                "cold_requests": cold.requests,
                "latency": latency(times),
                "entry_point": f"{op.function} (GET {op.path})",
            }

        self._each_op(None, measure)
        return results

    def overhead(self, account: SeededAccount) -> dict[str, Any]:
        """Median handler time / median bare call time, for balance and a transactions page."""
        results: dict[str, Any] = {}

        def measure(op: ReadOp, handler: Handler) -> None:
            store = wiring.store()
            bare = self.env.store().client
            probe = Probe(store.client, capture=True)
            event = self._event(op, account, handler)
            handler_times: list[float] = []
            bare_times: list[float] = []
            operations: list[str] = []
            for index in range(self.sizes.warmup + self.sizes.samples):
                fresh = copy.deepcopy(event)
                fresh["requestContext"]["requestId"] = str(uuid.uuid4())
                with probe.recording():
                    started = time.perf_counter()
                    call(handler, fresh)
                    handler_elapsed = time.perf_counter() - started
                captured = [(name, copy.deepcopy(params)) for name, params in probe.captured]
                started = time.perf_counter()
                for name, params in captured:
                    getattr(bare, _snake(name))(**params)
                bare_elapsed = time.perf_counter() - started
                if index >= self.sizes.warmup:
                    handler_times.append(handler_elapsed)
                    bare_times.append(bare_elapsed)
                    operations = [name for name, _ in captured]
            probe.close()
            results[op.name] = overhead(handler_times, bare_times, " + ".join(operations))
            say(
                f"  {op.name} overhead: handler p50 {results[op.name]['handler']['p50_ms']} ms, "
                f"bare {results[op.name]['bare_call']} p50 {results[op.name]['bare']['p50_ms']} "
                f"ms, ratio {results[op.name]['ratio_p50']}"
            )

        self._each_op(OVERHEAD_OPS, measure)
        return results

    def scale(self, small: SeededAccount, large: SeededAccount) -> dict[str, Any]:
        """The same reads on a small and a large ledger: requests, items read, time."""
        results: dict[str, Any] = {}

        def measure(op: ReadOp, handler: Handler) -> None:
            probe = Probe(wiring.store().client)
            row: dict[str, Any] = {}
            events = {
                label: self._event(op, account, handler)
                for label, account in (("small", small), ("large", large))
            }
            times: dict[str, list[float]] = {label: [] for label in events}
            tallies: dict[str, Any] = {}
            pages: dict[str, dict[str, Any]] = {}
            for index in range(self.sizes.warmup + self.sizes.samples):
                for label, event in events.items():
                    fresh = copy.deepcopy(event)
                    with probe.recording() as tally:
                        started = time.perf_counter()
                        body = call(handler, fresh)
                        elapsed = time.perf_counter() - started
                    if index >= self.sizes.warmup:
                        times[label].append(elapsed)
                        tallies[label] = tally
                        pages[label] = body
            probe.close()
            for label, account in (("small", small), ("large", large)):
                summary = tallies[label].summary()
                row[label] = {
                    "ledger_entries": account.entries,
                    "requests": summary["requests"],
                    "by_operation": summary["by_operation"],
                    "items_read": summary["items_scanned"],
                    "latency": latency(times[label]),
                }
                if "data" in pages[label]:  # a transactions page: what it returned
                    row[label]["page"] = {
                        "entries": len(pages[label]["data"]),
                        "has_more": pages[label].get("hasMore"),
                        "partial": pages[label].get("partial"),
                    }
            row["time_ratio_large_over_small"] = ratio(
                statistics.median(times["large"]), statistics.median(times["small"])
            )
            results[op.name] = row
            say(
                f"  {op.name}: {small.entries} entries -> {row['small']['requests']} req, "
                f"{row['small']['items_read']} items, p50 {row['small']['latency']['p50_ms']} ms;"
                f" {large.entries} -> {row['large']['requests']} req, "
                f"{row['large']['items_read']} items, p50 {row['large']['latency']['p50_ms']} ms"
            )

        self._each_op(SCALE_OPS, measure)
        return results


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def reads(env: Environment, sizes: Sizes) -> dict[str, Any]:
    bench = ReadBench(env, sizes)
    if bench.missing:
        return {"skipped": True, "reason": f"handler code missing for {sorted(set(bench.missing))}"}
    small_entries, large_entries = sizes.scale_entries
    say(f"  seeding accounts with {small_entries:,} and {large_entries:,} ledger entries ...")
    small = seed_account(env, small_entries)
    large = seed_account(env, large_entries)
    say(f"  seeded in {small.seconds:.1f} s and {large.seconds:.1f} s")
    return {
        "seed_seconds": {"small": round(small.seconds, 1), "large": round(large.seconds, 1)},
        "costs": bench.costs(small),
        "overhead": bench.overhead(small),
        "scale": bench.scale(small, large),
        "seeded_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
