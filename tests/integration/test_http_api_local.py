"""The customer HTTP API on DynamoDB Local: stats agree with the ledger, and the read cost
of every route stays the same whether the ledger holds 100 entries or 5,000."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import api_event, invoke
from functions.account_summary.app import lambda_handler as summary_handler
from functions.balance.app import lambda_handler as balance_handler
from functions.stats.app import lambda_handler as stats_handler
from functions.transactions.app import lambda_handler as transactions_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.domain.models import Account, ApiKeyMapping, EntryType, Operation
from serverless_credits.domain.money import normalize
from serverless_credits.domain.operations import ledger_entry, usage_of
from serverless_credits.domain.outcomes import Counted, LedgerHead
from serverless_credits.ledger.operations import Ledger
from serverless_credits.reads.queries import MAX_QUERIES, MAX_SCANNED
from serverless_credits.storage import keys
from serverless_credits.storage.items import to_item
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock

pytestmark = pytest.mark.integration


def number(value: Any) -> Decimal:
    """A JSON number back to an exact decimal."""
    return normalize(Decimal(str(value)))


# ---------------------------------------------------------------- stats agree with the ledger
@dataclass
class Expected:
    calls: Counter[date] = field(default_factory=Counter)
    failed: Counter[date] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)


def simulate(
    ledger: Ledger, clock: Clock, rng: random.Random, materialize: Callable[[], int]
) -> Expected:
    """70 random steps: charged, declined and refunded calls, and top-ups. Returns what the
    ledger cannot tell: the calls attempted and which ones failed, per day. The stream is
    materialized before each refund (a refund names its debit's ledger entry)."""
    expected = Expected()
    debits: list[tuple[str, Decimal, date]] = []
    for step in range(70):
        clock.now += timedelta(hours=rng.uniform(0.1, 9))
        roll = rng.random()
        if roll < 0.6:
            endpoint = rng.choice(["/v1/sms", "/v1/calls", "/v1/lookup", None])
            charged = attempt_call(ledger, rng, f"d{step}", endpoint)
            if charged:
                debits.append((*charged, clock.now.date()))
            else:
                expected.failed[clock.now.date()] += 1
            expected.calls[clock.now.date()] += 1
            if endpoint:
                expected.by_endpoint[endpoint] += 1
        elif roll < 0.8 and debits:
            transaction_id, amount, day = debits.pop(rng.randrange(len(debits)))
            failed_call = rng.random() < 0.5
            part = (amount / 2).quantize(Decimal("0.000001"))
            materialize()
            ledger.refund(
                RefundCommand(
                    account_id="acct_sums",
                    idempotency_key=f"r{step}",
                    transaction_id=transaction_id,
                    amount=None if rng.random() < 0.5 or not part else part,
                    failed_call=failed_call,
                )
            )
            if failed_call:
                expected.failed[day] += 1  # counted on the day of the call it refunds
        else:
            ledger.top_up(
                CreditCommand(
                    account_id="acct_sums",
                    idempotency_key=f"t{step}",
                    amount=Decimal(rng.randint(5, 50)),
                )
            )
    return expected


def attempt_call(
    ledger: Ledger, rng: random.Random, key: str, endpoint: str | None
) -> tuple[str, Decimal] | None:
    """A billable call by action or by amount (sometimes too big): its id and amount, or None
    when it is declined."""
    fields: dict[str, Any]
    if rng.random() < 0.08:
        fields = {"amount": Decimal(100_000)}  # more than the balance: declined
    elif rng.random() < 0.6:
        fields = {
            "action": rng.choice(["sms", "voice_call_minute", "transcription_minute"]),
            "quantity": Decimal(rng.randint(1, 4)),
        }
    else:
        fields = {"amount": Decimal(rng.randint(1, 400_000)) / 100_000}
    try:
        result = ledger.debit(
            DebitCommand(account_id="acct_sums", idempotency_key=key, endpoint=endpoint, **fields)
        )
    except InsufficientCredits:
        return None
    return result.transaction_id, result.amount


def test_stats_totals_equal_the_ledgers_sums(
    local_store: CreditsStore, local_materialize: Callable[[], int]
) -> None:
    rng = random.Random(20250301)
    clock = Clock(datetime(2025, 3, 1, 6, 0, tzinfo=UTC))
    ledger = wiring.build_ledger(local_store, wiring.prices(), get_settings(), clock=clock)
    ledger.create_account(
        CreateAccountCommand(
            account_id="acct_sums", credit_price=Decimal("0.02"), opening_balance=Decimal(300)
        )
    )
    local_store.catalog.put_api_key_mapping(
        ApiKeyMapping(api_key_id="k-sums", account_id="acct_sums", plan="pro", created_at=clock.now)
    )
    expected = simulate(ledger, clock, rng, local_materialize)
    local_materialize()

    entries, more = local_store.entries.page("acct_sums", limit=1000, newest_first=False)
    assert more is None
    day_of = {entry.transaction_id: entry.day for entry in entries}
    used_by_day: dict[date, Decimal] = defaultdict(Decimal)
    by_type: dict[str, Decimal] = defaultdict(Decimal)
    by_endpoint_credits: dict[str, Decimal] = defaultdict(Decimal)
    for entry in entries:
        if entry.type not in (EntryType.DEBIT, EntryType.REFUND):
            continue
        day = day_of[entry.refund_of] if entry.refund_of else entry.day
        used_by_day[day] -= entry.amount
        by_type[entry.action or "debit"] -= entry.amount
        if entry.endpoint:
            by_endpoint_credits[entry.endpoint] -= entry.amount
    total_used = sum(used_by_day.values(), Decimal(0))
    assert total_used == -sum(
        (e.amount for e in entries if e.type in (EntryType.DEBIT, EntryType.REFUND)), Decimal(0)
    )
    first, last = entries[0].day, clock.now.date()

    response = invoke(
        stats_handler,
        api_event(
            "/v1/credits/stats",
            {"from": first.isoformat(), "to": last.isoformat()},
            api_key_id="k-sums",
        ),
    )

    assert response.status == 200, response.body
    body = response.body
    assert number(body["totalUsed"]) == normalize(total_used)
    assert body["totalCalls"] == sum(expected.calls.values())
    assert body["failedRequests"] == sum(expected.failed.values())
    assert body["successfulRequests"] == body["totalCalls"] - body["failedRequests"]
    assert body["byEndpoint"] == dict(sorted(expected.by_endpoint.items()))
    assert {k: number(v) for k, v in body["byType"].items() if number(v)} == {
        k: normalize(v) for k, v in by_type.items() if v
    }
    assert {k: number(v) for k, v in body["byEndpointCredits"].items()} == {
        k: normalize(v) for k, v in by_endpoint_credits.items()
    }
    rows = {row["date"]: row for row in body["usage"]}
    assert len(rows) == (last - first).days + 1
    for label, row in rows.items():
        day = date.fromisoformat(label)
        assert number(row["creditsUsed"]) == normalize(used_by_day.get(day, Decimal(0))), label
        assert row["calls"] == expected.calls[day], label
        assert row["failedRequests"] == expected.failed[day], label
    cost = (total_used * Decimal("0.02")).quantize(Decimal("0.01"))
    assert body["totalCost"] == f"${cost:,.2f}"

    monthly = invoke(
        stats_handler,
        api_event(
            "/v1/credits/stats",
            {"startDate": first.isoformat(), "endDate": last.isoformat(), "period": "monthly"},
            api_key_id="k-sums",
        ),
    ).body
    assert sum(number(row["creditsUsed"]) for row in monthly["usage"]) == normalize(total_used)
    assert sum(row["calls"] for row in monthly["usage"]) == body["totalCalls"]


# ---------------------------------------------------------------- read cost
@dataclass
class RequestLog:
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        items = len(parsed.get("Items", [])) + (1 if parsed.get("Item") else 0)
        self.calls.append((model.name, items))


def seed_ledger(store: CreditsStore, account_id: str, entries: int, now: datetime) -> None:
    """An account whose ledger holds `entries` entries (a grant, then 1-credit debits) spread
    over the last 30 days, written in bulk but by the library's own pieces: each entry is
    built by `domain.operations.ledger_entry` from its operation and account image, stored
    in the storage item format under its `SEQ#` key, the daily usage counted by
    `UsageStore.count` (the materializer's counting: totals and each day's sequence range)
    and the ledger head moved as the materializer moves it."""
    start = now - timedelta(days=30)
    step = timedelta(days=30) / entries
    grant = Decimal(entries)
    account = Account(account_id=account_id, created_at=start, updated_at=start)
    items: list[dict[str, Any]] = []
    counted: dict[date, list[Counted]] = defaultdict(list)
    balance = Decimal(0)
    created = start
    for sequence in range(1, entries + 1):
        created = start + step * (sequence - 1)
        amount = grant if sequence == 1 else Decimal(-1)
        balance += amount
        operation = Operation(
            type=EntryType.GRANT if sequence == 1 else EntryType.DEBIT,
            amount=amount,
            description="bulk",
            action=None if sequence == 1 else "sms",
            quantity=None if sequence == 1 else Decimal(1),
            endpoint=None if sequence == 1 else "/v1/sms",
        )
        entry = ledger_entry(
            account_id=account_id,
            op_id=uuid.uuid4().hex,
            idempotency_key=f"bulk-{sequence}",
            operation=operation,
            after=account.model_copy(
                update={"version": sequence, "balance": balance, "available": balance}
            ),
            created_at=created,
        )
        items.append(
            {
                "PutRequest": {
                    "Item": to_item(
                        entry, pk=keys.ledger_pk(account_id), sk=keys.entry_sk(sequence)
                    )
                }
            }
        )
        counted[entry.day].append(Counted(sequence, usage_of(entry, operation)))
    store.accounts.create(
        account.model_copy(
            update={
                "balance": balance,
                "available": balance,
                "total": grant,
                "used": Decimal(entries - 1),
                "version": entries,
                "lifetime_requests": entries - 1,
                "updated_at": created,
            }
        )
    )

    def write(batch: list[dict[str, Any]]) -> None:
        request = {store.table_name: batch}
        while request:
            response = store.client.batch_write_item(RequestItems=request)  # type: ignore[arg-type]
            request = response.get("UnprocessedItems") or {}  # type: ignore[assignment]

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))
    for day, versions in sorted(counted.items()):
        store.usage.count(account_id, day, versions)
    store.entries.advance_head(account_id, LedgerHead(entries, created))
    store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id=f"key-{account_id}", account_id=account_id, plan="pro", created_at=start
        )
    )


@pytest.fixture
def ledgers(local_store: CreditsStore) -> Iterator[tuple[CreditsStore, RequestLog]]:
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    seed_ledger(local_store, "acct_small", 100, now)
    seed_ledger(local_store, "acct_big", 5_000, now)
    log = RequestLog()
    local_store.client.meta.events.register("after-call.dynamodb.*", log)
    yield local_store, log
    local_store.client.meta.events.unregister("after-call.dynamodb.*", log)


def route_costs(account_id: str, log: RequestLog) -> dict[str, list[tuple[str, int]]]:
    """The DynamoDB requests (and items returned) of one call to each route."""
    key = f"key-{account_id}"
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    calls: list[tuple[str, Any, str, dict[str, str]]] = [
        ("balance", balance_handler, "/v1/credits/balance", {}),
        ("balances", balance_handler, "/v1/credits/balances", {}),
        ("balances-history", balance_handler, "/v1/credits/balances", {"status": "all"}),
        ("transactions", transactions_handler, "/v1/credits/transactions", {"limit": "20"}),
        ("transactions-page-2", transactions_handler, "/v1/credits/transactions", {"limit": "20"}),
        (
            "transactions-filtered",
            transactions_handler,
            "/v1/credits/transactions",
            {"limit": "20", "type": "debit", "from": week_ago},
        ),
        ("stats-30-days", stats_handler, "/v1/credits/stats", {"days": "30"}),
        ("stats-monthly", stats_handler, "/v1/credits/stats", {"days": "30", "period": "monthly"}),
        ("summary", summary_handler, "/v1/account/summary", {}),
    ]
    invoke(balance_handler, api_event("/v1/credits/balance", api_key_id=key))  # warm the key cache
    costs: dict[str, list[tuple[str, int]]] = {}
    cursor = ""
    for name, handler, path, parameters in calls:
        query = {**parameters, "cursor": cursor} if name == "transactions-page-2" else parameters
        log.calls.clear()
        response = invoke(handler, api_event(path, query, api_key_id=key))
        assert response.status == 200, (name, response.body)
        if name == "transactions":
            cursor = response.body["nextCursor"]
            assert len(response.body["data"]) == 20
        costs[name] = list(log.calls)
    return costs


def test_read_cost_does_not_grow_with_the_ledger(ledgers: tuple[CreditsStore, RequestLog]) -> None:
    _, log = ledgers
    small = route_costs("acct_small", log)
    big = route_costs("acct_big", log)

    assert small == big
    assert big["balance"] == [("GetItem", 1)]
    # The account's lots (here its one grant, whose LOT item the bulk load does not write),
    # then their LOT items in one batch; the history: the account, then one page Query.
    assert big["balances"] == [("GetItem", 1), ("BatchGetItem", 0)]
    assert big["balances-history"] == [("GetItem", 1), ("Query", 0)]
    for page in ("transactions", "transactions-page-2"):
        assert big[page] == [("Query", 21)]  # one Query: the page and one more to prove hasMore
    # A time filter first reads the range's first and last daily item (one Query from each
    # end: the first sequence of a week ago, the last of today, however long the range),
    # then the one page Query within that sequence range.
    assert big["transactions-filtered"] == [("Query", 1), ("Query", 1), ("Query", 21)]
    for name in ("stats-30-days", "stats-monthly", "summary"):
        operations = sorted(operation for operation, _ in big[name])
        assert operations == ["GetItem", "Query"]
        assert sum(items for _, items in big[name]) <= 1 + 31  # the account and <= 31 daily rows


def test_a_sparse_filter_reads_the_same_bounded_page_on_any_ledger(
    ledgers: tuple[CreditsStore, RequestLog],
) -> None:
    """Issue 15: a type filter used to read the whole ledger for one entry. On DynamoDB
    Local (which applies `Limit` before the filter, as DynamoDB does), a page examines at
    most `MAX_SCANNED` entries in at most `MAX_QUERIES` Queries, and a walk by cursor finds
    the one matching entry (the opening grant, the oldest) exactly once."""
    store, _ = ledgers
    scanned: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        scanned.append(int(parsed.get("ScannedCount", 0)))

    store.client.meta.events.register("after-call.dynamodb.Query", count)

    def page(account_id: str, **query: str) -> dict[str, Any]:
        scanned.clear()
        response = invoke(
            transactions_handler,
            api_event("/v1/credits/transactions", query, api_key_id=f"key-{account_id}"),
        )
        assert response.status == 200, response.body
        assert len(scanned) <= MAX_QUERIES
        assert sum(scanned) <= MAX_SCANNED
        body: dict[str, Any] = response.body
        return body

    small = page("acct_small", type="refund", limit="50")
    assert (small["data"], small["hasMore"], small["partial"]) == ([], False, False)
    assert sum(scanned) == 100  # the whole small ledger fits in one page's budget
    big = page("acct_big", type="refund", limit="50")
    assert (big["data"], big["hasMore"], big["partial"]) == ([], True, True)
    assert sum(scanned) == MAX_SCANNED  # not 5,000

    found: list[int] = []
    total = pages = 0
    cursor: str | None = None
    while True:
        body = page("acct_big", type="grant", limit="1", **({"cursor": cursor} if cursor else {}))
        found += [entry["sequence"] for entry in body["data"]]
        total += sum(scanned)
        pages += 1
        if not body["hasMore"]:
            break
        cursor = body["nextCursor"]
    store.client.meta.events.unregister("after-call.dynamodb.Query", count)
    assert found == [1]
    assert pages == 5  # 5,000 entries, 1,000 a page
    assert total <= 5_000 + pages  # each entry examined about once over the walk


def test_cursor_walks_the_whole_ledger_in_order(local_store: CreditsStore) -> None:
    seed_ledger(local_store, "acct_small", 100, datetime.now(UTC))
    log = RequestLog()
    local_store.client.meta.events.register("after-call.dynamodb.*", log)
    sequences: list[int] = []
    cursor: str | None = None
    queries = 0
    while True:
        query = {"limit": "30"} | ({"cursor": cursor} if cursor else {})
        log.calls.clear()
        body = invoke(
            transactions_handler,
            api_event("/v1/credits/transactions", query, api_key_id="key-acct_small"),
        ).body
        queries += sum(1 for operation, _ in log.calls if operation == "Query")
        sequences += [entry["sequence"] for entry in body["data"]]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            break
    assert sequences == list(range(100, 0, -1))
    assert queries == 4
