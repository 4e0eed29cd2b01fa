"""GET /v1/credits/balances on moto (`reads.lots`): the active credit lots in burn order with
Deepgram's fields, summing to the balance (the overdraft lot included); expired lots still
pinned by holds; the opening lot of an account from before lots; the paged history."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import ApiResponse, api_event, invoke
from functions.balance.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    ReserveCommand,
)
from serverless_credits.domain.lots import MAX_ACTIVE_LOTS, OVERDRAFT_LOT, opening_lots, rank_of
from serverless_credits.domain.models import ApiKeyMapping
from serverless_credits.ledger.operations import Ledger
from serverless_credits.reads import lots as lot_reads
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.storage import keys
from serverless_credits.storage.items import key as item_key
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, assert_invalid, materializing_ledger

ACCOUNT = "acct_lots_api"
START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
READ_AT = START + 2 * DAY  # when the route judges expiry (its clock is patched)


def _materialize() -> int:  # replaced per test by the `materialize` fixture
    raise AssertionError("no stream to materialize")


@pytest.fixture(autouse=True)
def _reads_are_materialized(
    materialize: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_materialize", materialize)


@pytest.fixture(autouse=True)
def _route_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lot_reads, "utc_now", lambda: READ_AT)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int], clock: Clock) -> Ledger:
    ledger = materializing_ledger(moto_store, materialize, clock)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT))
    api_key(moto_store, ACCOUNT)
    return ledger


def api_key(store: CreditsStore, account_id: str) -> str:
    key_id = f"key-{account_id}"
    store.catalog.put_api_key_mapping(
        ApiKeyMapping(api_key_id=key_id, account_id=account_id, plan="pro", created_at=START)
    )
    return key_id


def grant(
    ledger: Ledger,
    amount: int | str,
    *,
    key: str,
    priority: int | None = None,
    expires_at: datetime | None = None,
    topup: bool = False,
    reference: str | None = None,
) -> str:
    """Credit `amount` and return the lot it opened."""
    command = CreditCommand(
        account_id=ACCOUNT,
        idempotency_key=key,
        amount=Decimal(amount),
        priority=priority,
        expires_at=expires_at,
        reference=reference,
    )
    result = ledger.top_up(command) if topup else ledger.grant(command)
    assert result.lots is not None
    (lot_id,) = [lot for lot, moved in result.lots.items() if moved > 0 and lot != OVERDRAFT_LOT]
    return lot_id


def debit(ledger: Ledger, amount: int | str, key: str) -> None:
    ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount)))


def get(path: str, account_id: str = ACCOUNT, **query: str) -> ApiResponse:
    return invoke(lambda_handler, api_event(path, query, api_key_id=f"key-{account_id}"))


def balances(account_id: str = ACCOUNT, **query: str) -> ApiResponse:
    return get("/v1/credits/balances", account_id, **query)


def listed(account_id: str = ACCOUNT, **query: str) -> list[dict[str, Any]]:
    response = balances(account_id, **query)
    assert response.status == 200, response.body
    found: list[dict[str, Any]] = response.body["balances"]
    return found


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_total_is_the_balance(account_id: str = ACCOUNT) -> None:
    """The route's invariant: its amounts add up to `total`, which is the balance route's
    `balance` (exact: money travels as exact JSON numbers)."""
    body = balances(account_id).body
    balance = get("/v1/credits/balance", account_id).body["balance"]
    assert sum(Decimal(str(lot["amount"])) for lot in body["balances"]) == Decimal(
        str(body["total"])
    )
    assert body["total"] == balance


# ---------------------------------------------------------------- active lots
def test_active_lots_are_listed_in_burn_order_with_deepgram_fields(
    ledger: Ledger, clock: Clock
) -> None:
    later = START + 30 * DAY
    plain = grant(ledger, 40, key="plain", topup=True, reference="pay_1")  # 50, never expires
    clock.now = START + timedelta(minutes=1)
    expiring = grant(ledger, 25, key="po", topup=True, expires_at=later, reference="PO-7")
    promo = grant(ledger, "12.5", key="promo", priority=90, expires_at=later)
    gift = grant(ledger, 10, key="gift")  # a grant: priority 60, never expires
    _materialize()

    lots = listed()

    assert [lot["balanceId"] for lot in lots] == [promo, gift, expiring, plain]
    assert lots[0] == {
        "balanceId": promo,
        "amount": 12.5,
        "units": "credits",
        "purchaseOrderId": None,
        "priority": 90,
        "expiresAt": iso(later),
        "grantedAt": iso(clock.now),
        "initialAmount": 12.5,
        "status": "active",
        "source": "grant",
    }
    assert lots[2]["purchaseOrderId"] == "PO-7"
    assert (lots[2]["priority"], lots[2]["source"]) == (50, "topup")
    assert (lots[3]["purchaseOrderId"], lots[3]["expiresAt"]) == ("pay_1", None)
    assert lots[3]["grantedAt"] == iso(START)
    assert balances().body["hasMore"] is False
    assert balances().body["nextCursor"] is None
    assert_total_is_the_balance()


def test_a_debit_across_lots_shows_in_their_amounts_and_a_spent_lot_leaves_the_list(
    ledger: Ledger,
) -> None:
    first = grant(ledger, 5, key="a", priority=80)
    second = grant(ledger, 10, key="b", priority=70)
    third = grant(ledger, 10, key="c", priority=60)
    _materialize()

    debit(ledger, "7.25", key="d")

    lots = listed()
    assert [(lot["balanceId"], lot["amount"]) for lot in lots] == [
        (second, 7.75),
        (third, 10),
    ]
    assert lots[0]["initialAmount"] == 10
    assert first not in {lot["balanceId"] for lot in lots}
    assert_total_is_the_balance()


def test_the_overdraft_lot_is_listed_last_and_the_amounts_still_sum_to_the_balance(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(10)})
    grant(ledger, 3, key="a")
    debit(ledger, "5.5", key="d")
    _materialize()

    lots = listed()

    assert lots == [
        {
            "balanceId": "overdraft",
            "amount": -2.5,
            "units": "credits",
            "purchaseOrderId": None,
            "priority": None,
            "expiresAt": None,
            "grantedAt": None,
            "initialAmount": None,
            "status": "overdraft",
            "source": None,
        }
    ]
    assert balances().body["total"] == -2.5
    assert_total_is_the_balance()
    # A credit repays the debt first: no lot opens until it is repaid.
    ledger.grant(CreditCommand(account_id=ACCOUNT, idempotency_key="b", amount=Decimal(1)))
    assert [(lot["balanceId"], lot["amount"]) for lot in listed()] == [("overdraft", -1.5)]
    assert_total_is_the_balance()
    repaid = grant(ledger, 4, key="c", topup=True)
    assert [(lot["balanceId"], lot["amount"]) for lot in listed()] == [(repaid, 2.5)]
    assert_total_is_the_balance()


def test_an_expired_lot_pinned_by_an_open_hold_is_listed_expired(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    promo = grant(ledger, 10, key="promo", expires_at=START + DAY)
    paid = grant(ledger, 4, key="paid", topup=True)
    ledger.holds.reserve(
        ReserveCommand(account_id=ACCOUNT, idempotency_key="r", amount=12, expires_in=7 * 86400)
    )
    clock.now = START + DAY
    _materialize()
    ledger.lots.sweep()  # 2 of the promo expire; the hold pins the other 8

    account = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert account is not None
    assert account.lots == {promo: Decimal(8), paid: Decimal(4)}
    lots = listed()

    assert [(lot["balanceId"], lot["amount"], lot["status"]) for lot in lots] == [
        (promo, 8, "expired"),
        (paid, 4, "active"),
    ]
    assert lots[0]["expiresAt"] == iso(START + DAY)
    assert lots[0]["initialAmount"] == 10
    assert_total_is_the_balance()


def test_a_lot_not_yet_recorded_is_listed_from_its_id_then_described(ledger: Ledger) -> None:
    lot = grant(ledger, 7, key="fresh", priority=55, expires_at=START + 10 * DAY, reference="x")
    rank = rank_of(lot)
    assert rank is not None

    (undescribed,) = listed()  # the stream has not written its LOT item yet

    assert undescribed == {
        "balanceId": lot,
        "amount": 7,
        "units": "credits",
        "purchaseOrderId": None,
        "priority": 55,
        "expiresAt": iso(START + 10 * DAY),
        "grantedAt": rank.granted.isoformat().replace("+00:00", "Z"),
        "initialAmount": None,
        "status": "active",
        "source": None,
    }
    _materialize()
    (described,) = listed()
    assert (described["initialAmount"], described["source"], described["purchaseOrderId"]) == (
        7,
        "grant",
        "x",
    )


def _as_before_lots(store: CreditsStore, account_id: str, balance: int) -> None:
    """The account item as it was written before lots: a balance, no `lots` map."""
    store.client.update_item(
        TableName=store.table_name,
        Key=item_key(keys.account_pk(account_id), keys.ACCOUNT_SK),
        UpdateExpression="SET balance = :b, available = :b, #total = :b REMOVE lots",
        ExpressionAttributeNames={"#total": "total"},
        ExpressionAttributeValues={":b": {"N": str(balance)}},
    )


def test_an_account_from_before_lots_lists_its_balance_as_the_opening_lot(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    _as_before_lots(moto_store, ACCOUNT, 42)
    account = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert account is not None
    assert account.lots is None
    (expected_id,) = opening_lots(Decimal(42), account.created_at)

    (opening,) = listed()

    assert opening["balanceId"] == expected_id
    assert (opening["amount"], opening["status"], opening["source"]) == (42, "active", "opening")
    assert (opening["priority"], opening["expiresAt"], opening["initialAmount"]) == (50, None, None)
    assert_total_is_the_balance()
    # The next write gives the item that very lot: its id does not change.
    debit(ledger, 2, key="after")
    (same,) = listed()
    assert (same["balanceId"], same["amount"], same["source"]) == (expected_id, 40, "opening")


def test_an_empty_account_has_no_lots_and_a_zero_total(ledger: Ledger) -> None:
    body = balances().body
    assert (body["balances"], body["total"], body["hasMore"]) == ([], 0, False)


# ---------------------------------------------------------------- history
def test_the_history_pages_every_lot_ever_granted_with_its_status(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    spent = grant(ledger, 3, key="spent", priority=95)
    gone = grant(ledger, 6, key="gone", priority=90, expires_at=START + DAY)
    live = grant(ledger, 8, key="live", priority=80)
    pinned = grant(ledger, 5, key="pinned", priority=70, expires_at=START + 2 * DAY)
    debit(ledger, 3, key="spend")  # exhausts `spent`
    ledger.holds.reserve(  # 13 of the 19 left: 6 available
        ReserveCommand(account_id=ACCOUNT, idempotency_key="r", amount=13, expires_in=7 * 86400)
    )
    _materialize()
    clock.now = START + DAY
    assert ledger.lots.sweep().expired == 1  # all of `gone`: nothing available is left
    clock.now = START + 2 * DAY
    assert ledger.lots.sweep().pinned == 1  # `pinned` expires, but the hold reserves it
    unrecorded = grant(ledger, 2, key="unrecorded", priority=10)  # no LOT item yet

    pages: list[dict[str, Any]] = []
    query = {"status": "all", "limit": "2"}
    while True:
        response = balances(**query)
        assert response.status == 200, response.body
        pages.append(response.body)
        if not response.body["hasMore"]:
            break
        query = {"status": "all", "limit": "2", "cursor": response.body["nextCursor"]}

    assert [len(page["balances"]) for page in pages] == [2, 2, 1]
    assert all(page["total"] is None for page in pages)
    assert pages[-1]["nextCursor"] is None
    history = [lot for page in pages for lot in page["balances"]]
    assert [lot["balanceId"] for lot in history] == [spent, gone, live, pinned, unrecorded]
    assert [(lot["status"], lot["amount"], lot["initialAmount"]) for lot in history] == [
        ("exhausted", 0, 3),
        ("expired", 0, 6),
        ("active", 8, 8),
        ("expired", 5, 5),  # still on the item: counted in the balance until captured
        ("active", 2, None),
    ]
    assert [lot["source"] for lot in history] == ["grant"] * 4 + [None]
    assert [lot["balanceId"] for lot in listed()] == [live, pinned, unrecorded]
    assert_total_is_the_balance()


def test_a_history_page_ending_on_the_last_lot_says_so_on_the_next_one(ledger: Ledger) -> None:
    lots = [grant(ledger, 1, key=f"g{n}", priority=50 + n) for n in range(3)]
    _materialize()

    first = balances(status="all", limit="3").body
    assert [lot["balanceId"] for lot in first["balances"]] == sorted(lots)
    if first["hasMore"]:  # DynamoDB may not know a full page was the last one
        rest = balances(status="all", limit="3", cursor=first["nextCursor"]).body
        assert (rest["balances"], rest["hasMore"], rest["nextCursor"]) == ([], False, None)


def test_the_history_of_an_account_from_before_lots_lists_its_opening_lot(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    _as_before_lots(moto_store, ACCOUNT, 42)

    (opening,) = listed(status="all")

    assert (opening["amount"], opening["status"], opening["source"]) == (42, "active", "opening")


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": "ACTIVE"}, "status"),
        ({"status": "all", "limit": "0"}, "limit"),
        ({"status": "all", "limit": "101"}, "limit"),
        ({"status": "all", "limit": "ten"}, "limit"),
        ({"status": "all", "cursor": ""}, "cursor"),
        ({"status": "all", "cursor": "x" * 513}, "cursor"),
    ],
)
def test_bad_parameters_are_a_422_naming_the_field(
    ledger: Ledger, query: dict[str, str], field: str
) -> None:
    assert_invalid(balances(**query), field, 422)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "10"}, "limit"),
        ({"status": "active", "cursor": "a.b"}, "cursor"),
        ({"status": "all", "cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_paging_the_active_lots_or_a_bad_cursor_is_a_400_naming_the_field(
    ledger: Ledger, query: dict[str, str], field: str
) -> None:
    assert_invalid(balances(**query), field, 400)


def test_a_cursor_only_continues_its_own_account_and_route(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    for n in range(3):
        grant(ledger, 1, key=f"g{n}", priority=60 + n)
    _materialize()
    ledger.create_account(CreateAccountCommand(account_id="acct_other"))
    api_key(moto_store, "acct_other")
    first = balances(status="all", limit="1").body
    cursor = first["nextCursor"]
    assert cursor
    signer = CursorSigner.from_settings(get_settings())
    (last,) = [lot["balanceId"] for lot in first["balances"]]
    holds_cursor = signer.sign(account_id=ACCOUNT, scope="holds", position=last)

    assert balances(status="all", limit="1", cursor=cursor).status == 200
    assert_invalid(balances("acct_other", status="all", limit="1", cursor=cursor), "cursor", 400)
    assert_invalid(balances(status="all", limit="1", cursor=holds_cursor), "cursor", 400)
    assert_invalid(get("/v1/credits/holds", cursor=cursor), "cursor", 400)


def test_the_active_lots_need_no_cursor_key(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default listing never asks for the signing key (in AWS: a secret read)."""
    grant(ledger, 1, key="g")

    def no_key() -> CursorSigner:
        raise AssertionError("the active lots asked for the cursor key")

    monkeypatch.setattr(wiring, "cursor_signer", no_key)

    assert balances().status == 200


# ---------------------------------------------------------------- cost
def test_each_listing_costs_a_fixed_number_of_requests_at_the_lot_cap(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    """Active lots: 1 GetItem + 1 BatchGetItem, however many lots (here the cap); a history
    page: 1 GetItem + 1 Query."""
    for n in range(MAX_ACTIVE_LOTS):
        grant(ledger, 1, key=f"g{n}", priority=n)
    _materialize()
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    balances()  # the API key's mapping, then cached
    moto_store.client.meta.events.register("before-call.dynamodb.*", record)
    try:
        active = listed()
        active_calls, calls[:] = list(calls), []
        page = balances(status="all", limit="10").body
        history_calls = list(calls)
    finally:
        moto_store.client.meta.events.unregister("before-call.dynamodb.*", record)

    assert len(active) == MAX_ACTIVE_LOTS
    assert active_calls == ["GetItem", "BatchGetItem"]
    assert (len(page["balances"]), page["hasMore"]) == (10, True)
    assert history_calls == ["GetItem", "Query"]
