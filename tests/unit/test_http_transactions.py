"""GET /v1/credits/transactions: most recent first, offset and signed cursors, filters."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import ApiAccount, ApiResponse, api_event, invoke, open_account
from functions.transactions.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.models import ApiKeyMapping
from serverless_credits.domain.operations import sequence_of
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, assert_invalid

PATH = "/v1/credits/transactions"
START = datetime(2025, 2, 1, 9, 0, tzinfo=UTC)


def _materialize() -> int:  # replaced per test by the `materialize` fixture
    raise AssertionError("no stream to materialize")


@pytest.fixture(autouse=True)
def _reads_are_materialized(
    materialize: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_materialize", materialize)


def get(account: ApiAccount, **query: str) -> ApiResponse:
    """A page, once the Materializer function has written every change so far (the ledger
    entries the API lists come from the stream)."""
    _materialize()
    return invoke(lambda_handler, api_event(PATH, query, api_key_id=account.api_key_id))


def debit(account_id: str, key: str, amount: str = "1") -> None:
    wiring.ledger().debit(
        DebitCommand(account_id=account_id, idempotency_key=key, amount=Decimal(amount))
    )


ENTRIES = 11


@pytest.fixture
def account(moto_store: CreditsStore) -> ApiAccount:
    """An account with an opening grant and 10 debits (11 entries)."""
    opened = open_account("acct_tx", opening_balance=1000)
    for number in range(ENTRIES - 1):
        debit("acct_tx", f"d{number}", str(number + 1))
    return opened


@pytest.fixture
def small(moto_store: CreditsStore) -> ApiAccount:
    """An account with an opening grant and 2 debits."""
    opened = open_account("acct_tx", opening_balance=1000)
    for number in range(2):
        debit("acct_tx", f"d{number}")
    return opened


@pytest.fixture
def dated(moto_store: CreditsStore) -> ApiAccount:
    """One entry per day from 2025-02-01 to 2025-02-05, of mixed types."""
    clock = Clock(START)
    ledger = wiring.build_ledger(moto_store, wiring.prices(), get_settings(), clock=clock)
    ledger.create_account(
        CreateAccountCommand(account_id="acct_dated", opening_balance=Decimal(100))
    )
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id="dated-key", account_id="acct_dated", plan="free", created_at=START
        )
    )
    operations: list[Callable[[], object]] = [
        lambda: ledger.top_up(
            CreditCommand(
                account_id="acct_dated", idempotency_key="t", amount=Decimal(50), reference="po_1"
            )
        ),
        lambda: ledger.debit(
            DebitCommand(
                account_id="acct_dated",
                idempotency_key="d",
                action="sms",
                endpoint="/v1/sms",
                metadata={"to": "+1", "segments": 2, "retry": False},
            )
        ),
        lambda: ledger.adjust(
            AdjustmentCommand(
                account_id="acct_dated", idempotency_key="a", amount=Decimal(-3), reason="fix"
            )
        ),
        lambda: ledger.debit(
            DebitCommand(account_id="acct_dated", idempotency_key="d2", amount=Decimal("2.5"))
        ),
    ]
    for day, operation in enumerate(operations, start=1):
        clock.now = START + timedelta(days=day)
        operation()
    return ApiAccount("acct_dated", "dated-key")


# ---------------------------------------------------------------- happy path
def test_a_page_is_most_recent_first_with_every_field(
    moto_store: CreditsStore, dated: ApiAccount
) -> None:
    response = get(dated)

    assert response.status == 200
    body = response.body
    assert set(body) == {"data", "hasMore", "nextCursor", "partial", "limit", "offset"}
    assert (
        body["hasMore"],
        body["nextCursor"],
        body["partial"],
        body["limit"],
        body["offset"],
    ) == (False, None, False, 50, 0)
    assert [entry["type"] for entry in body["data"]] == [
        "debit",
        "adjustment",
        "debit",
        "topup",
        "grant",
    ]
    assert [entry["sequence"] for entry in body["data"]] == [5, 4, 3, 2, 1]
    sms = body["data"][2]
    assert sms["amount"] == -1
    assert sms["balanceAfter"] == sms["availableAfter"] == 149
    assert sms["actor"] is None
    assert sms["action"] == "sms"
    assert sms["quantity"] == 1
    assert sms["endpoint"] == "/v1/sms"
    assert sms["metadata"] == {"to": "+1", "segments": 2, "retry": False}
    assert sms["id"].startswith("txn_3_")  # names its sequence
    assert sms["createdAt"] == "2025-02-03T09:00:00Z"
    assert set(sms) == {
        "id",
        "type",
        "amount",
        "balanceAfter",
        "availableAfter",
        "sequence",
        "description",
        "reference",
        "metadata",
        "action",
        "quantity",
        "endpoint",
        "refundOf",
        "actor",
        "holdId",
        "held",
        "expiresAt",
        "reason",
        "lots",
        "lotId",
        "priority",
        "createdAt",
    }
    assert (sms["holdId"], sms["held"], sms["expiresAt"], sms["reason"]) == (None,) * 4
    # The sms was paid by the grant's lot; the top-up opened its own lot (priority 50).
    grant, topup = body["data"][4], body["data"][3]
    assert sms["lots"] == {grant["lotId"]: -1}
    assert (sms["lotId"], sms["priority"]) == (None, None)
    assert topup["lots"] == {topup["lotId"]: topup["amount"]}
    assert topup["priority"] == 50
    assert body["data"][3]["reference"] == "po_1"
    assert body["data"][0]["amount"] == -2.5


def test_refunds_name_the_debit_they_refund(moto_store: CreditsStore) -> None:
    owner = open_account("acct_r", opening_balance=10)
    charged = wiring.ledger().debit(
        DebitCommand(account_id="acct_r", idempotency_key="d", amount=Decimal(4))
    )
    _materialize()  # the refund reads the debit's ledger entry
    wiring.ledger().refund(
        RefundCommand(
            account_id="acct_r", idempotency_key="r", transaction_id=charged.transaction_id
        )
    )
    latest = get(owner).body["data"][0]
    assert (latest["type"], latest["amount"], latest["refundOf"]) == (
        "refund",
        4,
        charged.transaction_id,
    )


def test_empty_account(moto_store: CreditsStore) -> None:
    empty = open_account("acct_none")
    assert get(empty).body == {
        "data": [],
        "hasMore": False,
        "nextCursor": None,
        "partial": False,
        "limit": 50,
        "offset": 0,
    }
    assert get(empty, offset="10").body["data"] == []
    assert get(empty, type="debit", **{"from": "2025-01-01", "to": "2025-01-02"}).body["data"] == []


# ---------------------------------------------------------------- filters
def test_type_filter(moto_store: CreditsStore, dated: ApiAccount) -> None:
    body = get(dated, type="debit").body
    assert [entry["type"] for entry in body["data"]] == ["debit", "debit"]
    assert get(dated, type="refund").body["data"] == []


def test_type_filter_pages_fill_up(moto_store: CreditsStore, dated: ApiAccount) -> None:
    first = get(dated, type="debit", limit="1").body
    assert first["hasMore"] is True
    second = get(dated, type="debit", limit="1", cursor=first["nextCursor"]).body
    assert (second["hasMore"], second["nextCursor"]) == (False, None)
    assert [e["amount"] for e in first["data"] + second["data"]] == [-2.5, -1]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"from": "2025-02-03"}, [5, 4, 3]),
        ({"to": "2025-02-02"}, [2, 1]),
        ({"from": "2025-02-02", "to": "2025-02-03"}, [3, 2]),
        ({"from": "2025-02-03T09:00:00Z", "to": "2025-02-03T09:00:00Z"}, [3]),
        ({"from": "2025-02-03T09:00:00.000001Z"}, [5, 4]),
        ({"from": "2025-02-03T10:00:00+01:00", "to": "2025-02-04T09:59:59+01:00"}, [3]),
        ({"from": "2025-02-03T09:00:00"}, [5, 4, 3]),  # no offset: UTC
        ({"from": "2025-02-04", "to": "2025-02-04"}, [4]),
        ({"from": "2030-01-01"}, []),
    ],
)
def test_time_filters(
    moto_store: CreditsStore, dated: ApiAccount, window: dict[str, str], expected: list[int]
) -> None:
    body = get(dated, **window).body
    assert [entry["sequence"] for entry in body["data"]] == expected


def test_filters_combine_with_cursor_pages(moto_store: CreditsStore, dated: ApiAccount) -> None:
    window = {"from": "2025-02-02", "to": "2025-02-05"}
    first = get(dated, limit="2", **window).body
    second = get(dated, limit="2", cursor=first["nextCursor"], **window).body
    assert [e["sequence"] for e in first["data"] + second["data"]] == [5, 4, 3, 2]
    assert second["hasMore"] is False


# ---------------------------------------------------------------- pagination
def collect_by_cursor(account: ApiAccount, limit: int, between_pages: Any = None) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        body = get(account, **query).body
        ids += [entry["id"] for entry in body["data"]]
        pages += 1
        if not body["hasMore"]:
            assert body["nextCursor"] is None
            return ids
        cursor = body["nextCursor"]
        if between_pages:
            between_pages(pages)


def test_offset_and_cursor_give_the_same_entries(
    moto_store: CreditsStore, account: ApiAccount
) -> None:
    by_offset: list[str] = []
    for offset in range(0, ENTRIES + 3, 3):
        body = get(account, limit="3", offset=str(offset)).body
        by_offset += [entry["id"] for entry in body["data"]]
        assert body["hasMore"] is (offset + 3 < ENTRIES)
        assert body["offset"] == offset
    by_cursor = collect_by_cursor(account, 3)

    everything = [entry["id"] for entry in get(account, limit="100").body["data"]]
    assert len(everything) == ENTRIES
    assert by_offset == by_cursor == everything
    # Most recent first: the sequences each transaction id names, from the newest down.
    assert [sequence_of(i) for i in everything] == list(range(ENTRIES, 0, -1))


def test_an_offset_page_continues_by_cursor(moto_store: CreditsStore, account: ApiAccount) -> None:
    offset_page = get(account, limit="3", offset="3").body
    next_by_cursor = get(account, limit="3", cursor=offset_page["nextCursor"]).body
    next_by_offset = get(account, limit="3", offset="6").body
    assert next_by_cursor["data"] == next_by_offset["data"]


def test_cursor_pages_have_no_gaps_or_repeats_while_new_debits_arrive(
    moto_store: CreditsStore, account: ApiAccount
) -> None:
    before = [entry["id"] for entry in get(account, limit="100").body["data"]]
    added = 0

    def more_debits(page: int) -> None:
        nonlocal added
        for number in range(2):
            debit("acct_tx", f"late-{page}-{number}")
            added += 1

    walked = collect_by_cursor(account, 4, between_pages=more_debits)

    assert added > 0
    assert walked == before  # the entries as of the first page, each exactly once
    assert len(set(walked)) == len(walked)
    newest = get(account, limit="100").body["data"]
    assert len(newest) == ENTRIES + added


def test_offset_pages_shift_when_debits_arrive_which_is_why_the_cursor_exists(
    moto_store: CreditsStore, small: ApiAccount
) -> None:
    first = get(small, limit="2").body["data"]
    debit("acct_tx", "late")
    second_by_offset = get(small, limit="2", offset="2").body["data"]
    assert second_by_offset[0]["id"] == first[-1]["id"]  # a repeat


def test_limit_bounds_are_inclusive(moto_store: CreditsStore, small: ApiAccount) -> None:
    assert len(get(small, limit="1").body["data"]) == 1
    body = get(small, limit="100").body
    assert len(body["data"]) == 3
    assert body["hasMore"] is False
    assert get(small, offset="1000").body["data"] == []


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "1001"}, "offset"),
        ({"type": "bogus"}, "type"),
        ({"type": "DEBIT"}, "type"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-02-30"}, "from"),
        ({"from": "2025-13-01"}, "from"),
        ({"to": "2025-01-01T25:00:00Z"}, "to"),
        ({"to": "1700000000"}, "to"),
        ({"to": "0001-01-01"}, "to"),
        ({"from": "9999-12-31T23:59:59-05:00"}, "from"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "x" * 513}, "cursor"),
    ],
)
def test_parameter_validation_names_the_field(
    moto_store: CreditsStore, small: ApiAccount, query: dict[str, str], field: str
) -> None:
    assert_invalid(get(small, **query), field, 422)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2025-02-03", "to": "2025-02-02"}, "from"),
        ({"from": "2025-02-03T10:00:00Z", "to": "2025-02-03T09:59:59Z"}, "from"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "a.b"}, "cursor"),
        ({"cursor": "eyJ2IjoxfQ.AAAA"}, "cursor"),
    ],
)
def test_rules_across_parameters_are_400s_naming_the_field(
    moto_store: CreditsStore, small: ApiAccount, query: dict[str, str], field: str
) -> None:
    assert_invalid(get(small, **query), field, 400)


def test_a_tampered_cursor_is_refused(moto_store: CreditsStore, small: ApiAccount) -> None:
    cursor = get(small, limit="1").body["nextCursor"]
    payload, signature = cursor.split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    assert_invalid(get(small, limit="5", cursor=forged), "cursor", 400)
    assert_invalid(get(small, limit="5", cursor=cursor[:-1]), "cursor", 400)


def test_a_cursor_only_continues_the_query_it_came_from(
    moto_store: CreditsStore, small: ApiAccount
) -> None:
    cursor = get(small, limit="1").body["nextCursor"]
    assert get(small, limit="9", cursor=cursor).status == 200  # the page size may change
    assert_invalid(get(small, limit="5", cursor=cursor, type="debit"), "cursor", 400)
    assert_invalid(get(small, limit="5", cursor=cursor, **{"from": "2020-01-01"}), "cursor", 400)


def test_cursor_and_offset_together_are_refused(
    moto_store: CreditsStore, small: ApiAccount
) -> None:
    cursor = get(small, limit="1").body["nextCursor"]
    assert_invalid(get(small, cursor=cursor, offset="5"), "offset", 400)


def test_without_a_signing_key_the_route_fails_closed(
    moto_store: CreditsStore, small: ApiAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURSOR_SIGNING_KEY")
    get_settings.cache_clear()
    response = get(small)
    assert response.status == 500
    assert response.body["error"] == {
        "code": "INTERNAL_ERROR",
        "message": "Internal error",
        "details": {},
    }
    get_settings.cache_clear()


# ---------------------------------------------------------------- tenants
def test_tenant_isolation(moto_store: CreditsStore, small: ApiAccount) -> None:
    other = open_account("acct_b", opening_balance=7)
    debit("acct_b", "b1")
    mine = {entry["id"] for entry in get(small, limit="100").body["data"]}
    theirs = get(other, limit="100", accountId="acct_tx", owner="acct_tx").body["data"]
    assert [entry["balanceAfter"] for entry in theirs] == [6, 7]
    # Ids are time-based and could coincide across accounts; the balances cannot.
    assert all(entry["balanceAfter"] in (6, 7) for entry in theirs)
    assert len(mine) == 3

    # Another account's cursor is useless: the signature binds the account.
    cursor_of_a = get(small, limit="1").body["nextCursor"]
    assert_invalid(get(other, limit="1", cursor=cursor_of_a), "cursor", 400)
