"""GET /v1/credits/transactions costs a bounded number of DynamoDB requests and items,
whatever the ledger holds (issue 15: `type=hold&limit=1` on 20,000 entries once issued
10,001 Queries). A sparse filter gets a partial page and a cursor, never a ledger scan.

The ledger is written straight into the table (the layout the materializer writes), and the
page budget is scaled down tenfold (`MAX_SCANNED` 100 instead of 1,000: the reads layer
reads it per call) so that a ledger of a few budgets is quick to build on moto. Every
DynamoDB request the handler makes is counted through botocore's events, with the items
DynamoDB examined (`ScannedCount`: what a read costs, whether the filter keeps the item or
not). The benchmark (`bench/reads.py`) measures the real budget on 1k and 100k entries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import ApiResponse, api_event, invoke
from functions.transactions.app import lambda_handler
from serverless_credits.domain.models import (
    ApiKeyMapping,
    EntryType,
    LedgerEntry,
    UsageIncrement,
)
from serverless_credits.domain.operations import transaction_id
from serverless_credits.domain.outcomes import Counted
from serverless_credits.reads import queries
from serverless_credits.storage.ledger_entries import EntryRange
from serverless_credits.storage.store import CreditsStore
from tests.support import assert_invalid

PATH = "/v1/credits/transactions"
ACCOUNT = "acct_big"
KEY_ID = "big-key"
START = datetime(2025, 1, 1, tzinfo=UTC)
SCANNED = 100  # the page budget in these tests
ENTRIES = 260
REFUND_EVERY = 70  # refunds are rare: sequences 210, 140, 70
REFUNDS = [s for s in range(ENTRIES, 0, -1) if s % REFUND_EVERY == 0]
STEP = timedelta(minutes=10)  # 143 entries on the first day, the rest on the second


@pytest.fixture(autouse=True)
def _budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_SCANNED", SCANNED)


@dataclass
class Requests:
    """The DynamoDB requests a handler call made: operation, partition and items examined."""

    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def of(self, operation: str, pk_prefix: str = "") -> list[tuple[str, str, int]]:
        return [c for c in self.calls if c[0] == operation and c[1].startswith(pk_prefix)]

    def ledger_queries(self) -> int:
        return len(self.of("Query", "LEDGER#"))

    def ledger_items(self) -> int:
        return sum(c[2] for c in self.of("Query", "LEDGER#"))


@pytest.fixture
def requests(moto_store: CreditsStore) -> Iterator[Requests]:
    """Every DynamoDB request of the process's store from now on. `after-call` carries the
    response (ScannedCount) but not the request, so the request's parameters ride along in
    the request context from `provide-client-params`."""
    recorded = Requests()

    def after(model: Any, params: dict[str, Any], parsed: dict[str, Any], **_: Any) -> None:
        named = params.get("ExpressionAttributeValues", {})
        pk = (params.get("Key") or {}).get("pk", {}).get("S") or named.get(":pk", {}).get("S", "")
        recorded.calls.append((model.name, pk, int(parsed.get("ScannedCount", 1))))

    def remember(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["params"] = params

    def finished(http_response: Any, parsed: dict[str, Any], model: Any, **kw: Any) -> None:
        after(model, kw["context"].get("params", {}), parsed)

    events = moto_store.client.meta.events
    events.register("provide-client-params.dynamodb", remember)
    events.register("after-call.dynamodb", finished)
    yield recorded
    events.unregister("provide-client-params.dynamodb", remember)
    events.unregister("after-call.dynamodb", finished)


def entry(sequence: int, entry_type: EntryType, at: datetime) -> LedgerEntry:
    amount = Decimal(1) if entry_type is not EntryType.DEBIT else Decimal(-1)
    return LedgerEntry(
        account_id=ACCOUNT,
        transaction_id=transaction_id(sequence, f"{sequence:012x}"),
        sequence=sequence,
        type=entry_type,
        amount=amount,
        balance_after=Decimal(10_000),
        created_at=at,
    )


def type_of(sequence: int) -> EntryType:
    if sequence == 1:
        return EntryType.GRANT
    return EntryType.REFUND if sequence % REFUND_EVERY == 0 else EntryType.DEBIT


@pytest.fixture
def big(moto_store: CreditsStore) -> None:
    """An account whose ledger holds ENTRIES entries, one every STEP from START: a grant,
    debits, and a refund every REFUND_EVERY entries, with the daily items' sequence index."""
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(api_key_id=KEY_ID, account_id=ACCOUNT, plan="free", created_at=START)
    )
    days: dict[date, list[int]] = {}
    for sequence in range(1, ENTRIES + 1):
        at = START + STEP * sequence
        moto_store.entries.put(entry(sequence, type_of(sequence), at))
        days.setdefault(at.date(), []).append(sequence)
    for day, sequences in days.items():
        moto_store.usage.count(
            ACCOUNT, day, [Counted(sequences[0], None), Counted(sequences[-1], None)]
        )


def get(requests: Requests, **query: str) -> ApiResponse:
    requests.calls.clear()
    return invoke(lambda_handler, api_event(PATH, query, api_key_id=KEY_ID))


def walk(requests: Requests, **query: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Every sequence a query pages through by cursor, and (queries, items) of each page."""
    found: list[int] = []
    costs: list[tuple[int, int]] = []
    cursor: str | None = None
    while True:
        body = get(requests, **query, **({"cursor": cursor} if cursor else {})).body
        costs.append((requests.ledger_queries(), requests.ledger_items()))
        found += [e["sequence"] for e in body["data"]]
        assert body["hasMore"] is (body["nextCursor"] is not None)
        if not body["hasMore"]:
            assert body["partial"] is False
            return found, costs
        cursor = body["nextCursor"]
        assert len(costs) < ENTRIES, "the walk must end"


# ---------------------------------------------------------------- the reproduction
def test_a_sparse_filter_reads_a_bounded_page_not_the_ledger(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    # The request: no entry of the type at all, one entry asked for.
    response = get(requests, type="hold", limit="1")

    assert response.status == 200
    body = response.body
    # Partial: nothing matched among the entries a page may examine, and it says so.
    assert (body["data"], body["hasMore"], body["partial"]) == ([], True, True)
    assert body["nextCursor"]
    assert requests.ledger_queries() <= queries.MAX_QUERIES
    assert requests.ledger_items() == SCANNED
    # Apart from the ledger, at most the API key's mapping (cached after the first call).
    assert len(requests.calls) <= requests.ledger_queries() + 1


def test_paging_a_sparse_filter_finds_every_match_once_within_the_bound_per_page(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    found, costs = walk(requests, type="refund", limit="2")

    assert found == REFUNDS  # each exactly once, most recent first
    assert all(q <= queries.MAX_QUERIES and items <= SCANNED for q, items in costs)
    # The walk reads the ledger about once overall, not once per page.
    assert sum(items for _, items in costs) <= ENTRIES + len(costs)


def test_a_dense_filter_costs_about_the_page(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    # 260 down to 220 are debits: one Query of the page and the item proving a next page.
    body = get(requests, type="debit", limit="40").body
    assert (len(body["data"]), body["partial"]) == (40, False)
    assert (requests.ledger_queries(), requests.ledger_items()) == (1, 41)

    # Down to 210, the refund leaves the first Query one short: the second is sized on the
    # matches so far (a few items), not on the budget.
    body = get(requests, type="debit", limit="50").body
    assert (len(body["data"]), body["partial"]) == (50, False)
    assert requests.ledger_queries() == 2
    assert requests.ledger_items() <= 51 + 4


def test_an_unfiltered_page_is_one_query_of_the_page(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    body = get(requests, limit="100").body
    assert [e["sequence"] for e in body["data"]] == list(range(ENTRIES, ENTRIES - 100, -1))
    assert (requests.ledger_queries(), requests.ledger_items()) == (1, 101)


def test_a_partial_page_keeps_what_it_found(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    # 260 down to 161 is the first page's budget: one refund (210) in it.
    body = get(requests, type="refund", limit="5").body
    assert [e["sequence"] for e in body["data"]] == [210]
    assert (body["hasMore"], body["partial"]) == (True, True)
    following = get(requests, type="refund", limit="5", cursor=body["nextCursor"]).body
    assert [e["sequence"] for e in following["data"]] == [140, 70]


# ---------------------------------------------------------------- offset
def test_offset_counts_within_the_bound_and_beyond_it_is_refused(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    # Unfiltered, offset + limit entries: one Query, offset + limit + 1 items.
    body = get(requests, offset="100", limit="100").body
    assert [e["sequence"] for e in body["data"]] == list(range(ENTRIES - 100, ENTRIES - 200, -1))
    assert (body["hasMore"], body["partial"]) == (True, False)
    assert (requests.ledger_queries(), requests.ledger_items()) == (1, 201)

    # A filtered offset the budget reaches (the first 101 entries hold one refund): it
    # skips that refund, the page stops partial, and its cursor goes on from there.
    skipped = get(requests, type="refund", offset="1").body
    assert (skipped["data"], skipped["partial"]) == ([], True)
    assert requests.ledger_items() == 1 + SCANNED
    following = get(requests, type="refund", cursor=skipped["nextCursor"]).body
    assert [e["sequence"] for e in following["data"]] == [140, 70]

    # One it cannot reach (the first 102 entries hold one refund, not two) is refused,
    # naming the parameter, after a bounded read.
    response = get(requests, type="refund", offset="2", limit="1")
    assert_invalid(response, "offset", 400)
    assert requests.ledger_items() <= 2 + SCANNED
    assert requests.ledger_queries() <= queries.MAX_QUERIES


@pytest.mark.parametrize("offset", ["1001", "-1", "99999999999999999999"])
def test_offset_is_capped(
    moto_store: CreditsStore, big: None, requests: Requests, offset: str
) -> None:
    assert_invalid(get(requests, offset=offset), "offset", 422)
    assert requests.ledger_queries() == 0


# ---------------------------------------------------------------- time filters
def test_a_time_range_costs_a_few_small_reads_of_the_day_index(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    # From the first possible day: the day index is read from each end (one day item each
    # here), not day by day.
    body = get(requests, limit="3", **{"from": "1970-01-01", "to": "2025-01-01"}).body

    # The first day holds sequences 1..143 (one every 10 minutes from 00:10).
    assert [e["sequence"] for e in body["data"]] == [143, 142, 141]
    usage = requests.of("Query", "USAGE#")
    assert [items for *_, items in usage] == [1, 1]
    # The page starts at the last sequence of that day, not at the newest entry.
    assert (requests.ledger_queries(), requests.ledger_items()) == (1, 4)


def test_a_time_and_type_filter_walk_finds_every_match_once(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    window = {"from": "2025-01-01T11:00:00Z", "to": "2025-01-02T23:59:59Z"}
    first = START + timedelta(hours=11)
    last = START + timedelta(days=1, hours=23, minutes=59, seconds=59)
    expected = [s for s in REFUNDS if first <= START + STEP * s <= last]
    assert expected == [210, 140, 70]

    found, costs = walk(requests, type="refund", limit="1", **window)

    assert found == expected
    assert all(q <= queries.MAX_QUERIES and items <= SCANNED for q, items in costs)


def test_days_with_calls_but_no_entries_do_not_break_the_day_index(
    moto_store: CreditsStore, big: None, requests: Requests
) -> None:
    """Days of declined calls only have a usage item but no sequence range: the index reads
    past them (a second small Query), and past `SEQUENCE_LOOKUP_DAYS` of them it stops
    narrowing that side, which costs budget, never correctness."""
    for back in range(1, 21):
        moto_store.usage.add(
            ACCOUNT, UsageIncrement(day=START.date() - timedelta(days=back), calls=1, failed=1)
        )
    five_days_before = (START.date() - timedelta(days=5)).isoformat()
    body = get(requests, limit="3", **{"from": five_days_before, "to": "2025-01-01"}).body
    assert [e["sequence"] for e in body["data"]] == [143, 142, 141]
    usage = [items for *_, items in requests.of("Query", "USAGE#")]
    assert usage == [1, 5, 1]  # forward: 1 day, then 5 more; backward: today's at once

    # 20 days without entries before the ledger: the lower bound is unknown, the walk goes
    # through the whole first day, partial page by partial page, and still finds each once.
    twenty_days_before = (START.date() - timedelta(days=20)).isoformat()
    found, costs = walk(
        requests, limit="5", **{"from": twenty_days_before, "to": "2025-01-01T00:30:00Z"}
    )
    assert found == [3, 2, 1]
    assert all(items <= SCANNED for _, items in costs)


# ---------------------------------------------------------------- storage
def test_the_query_count_is_bounded_too(moto_store: CreditsStore, big: None) -> None:
    """Each Query reads at most 1 MB: large items could spend Queries before items, so the
    page stops after `max_queries` as well, with a cursor where it stopped."""
    found = moto_store.entries.read_page(
        ACCOUNT,
        limit=1,
        scope=EntryRange(entry_type=EntryType.REFUND),
        max_scanned=50,
        max_queries=1,
    )
    assert (found.entries, found.stopped_early, found.queries) == ([], True, 1)
    assert found.next_sequence == ENTRIES - found.scanned + 1
    assert found.scanned <= 50


def test_a_page_ending_on_the_first_entry_says_there_is_no_more(
    moto_store: CreditsStore, big: None
) -> None:
    """A budget spent exactly on the oldest entry is the end, not a partial page."""
    found = moto_store.entries.read_page(
        ACCOUNT,
        limit=1,
        after_sequence=11,
        scope=EntryRange(entry_type=EntryType.REFUND),
        max_scanned=10,
    )
    assert (found.entries, found.next_sequence, found.stopped_early) == ([], None, False)
    assert found.scanned == 10


def test_operators_pages_have_no_budget(moto_store: CreditsStore, big: None) -> None:
    entries, following = moto_store.entries.page(
        ACCOUNT, limit=ENTRIES, scope=EntryRange(entry_type=EntryType.DEBIT)
    )
    assert len(entries) == ENTRIES - 1 - len(REFUNDS)
    assert following is None
