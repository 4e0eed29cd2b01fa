"""Operators and credit lots on moto: `lots.list` (an account's lots in burn order, with
what each was granted as, summing to its balance), `lots.expire` (expired lots taken out of
the balance now), and the lot a top-up or grant names in its result. Through
`transport.admin_api` with a clock the test moves (`credits-admin` is in test_admin_cli.py,
the listing's rules alone at the end of this file)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

import pytest

from serverless_credits.domain.commands import (
    CreateAccountCommand,
    DebitCommand,
    ReserveCommand,
)
from serverless_credits.domain.lots import OVERDRAFT_LOT, new_lot_id, rank_of
from serverless_credits.domain.models import Account, EntryType, Lot, OpenHold
from serverless_credits.ledger.admin import Administration
from serverless_credits.ledger.operations import Ledger
from serverless_credits.reads.lot_listing import LotStatus, lot_views
from serverless_credits.storage.api_keys import ApiKeyStore
from serverless_credits.storage.directory import AccountDirectory
from serverless_credits.storage.items import Table
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import admin_api
from tests.support import Clock, materializing_ledger

ACTOR = "ops@example"
ACCOUNT = "acct_oplots"
START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

Call = Callable[..., dict[str, Any]]


def _unused() -> NoReturn:
    raise AssertionError("lots need neither API Gateway nor the reconciler")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int], clock: Clock) -> Ledger:
    ledger = materializing_ledger(moto_store, materialize, clock)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT))
    return ledger


@pytest.fixture
def call(ledger: Ledger, moto_store: CreditsStore, clock: Clock) -> Call:
    table = Table(moto_store.client, moto_store.table_name)
    admin = Administration(
        ledger=ledger,
        accounts=moto_store.accounts,
        directory=AccountDirectory(table),
        keys=ApiKeyStore(table),
        issuer=_unused,
        entries=moto_store.entries,
        reconciler=_unused,
        clock=clock,
    )

    def run(operation: str, **fields: Any) -> dict[str, Any]:
        return admin_api.handle({"operation": operation, "actor": ACTOR, **fields}, admin)

    return run


def credit(call: Call, amount: int, key: str, *, topup: bool = False, **lot: Any) -> str:
    """A grant (or top-up) through the AdminFunction; the lot its result names."""
    operation = "credits.topup" if topup else "credits.grant"
    done = call(operation, accountId=ACCOUNT, amount=amount, idempotencyKey=key, **lot)
    assert "error" not in done, done
    assert done["lots"] == {done["lotId"]: amount}
    return str(done["lotId"])


def listed(call: Call) -> dict[str, Any]:
    found = call("lots.list", accountId=ACCOUNT)
    assert "error" not in found, found
    assert sum((Decimal(str(lot["remaining"])) for lot in found["lots"]), Decimal(0)) == Decimal(
        str(found["balance"])
    )
    return found


def debit(ledger: Ledger, amount: int, key: str) -> dict[str, Decimal]:
    done = ledger.debit(
        DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount))
    )
    return dict(done.lots or {})


# ---------------------------------------------------------------- lots.list
def test_lots_are_listed_in_burn_order_with_what_each_was_granted_as(
    call: Call, ledger: Ledger, clock: Clock, materialize: Callable[[], int]
) -> None:
    base = credit(call, 100, "base", description="Welcome")
    clock.now += timedelta(seconds=1)
    promo = credit(call, 20, "promo")  # same priority as base (a grant's 60), younger
    order = credit(
        call,
        50,
        "po-1",
        topup=True,
        reference="po_1",
        priority=80,
        expiresAt=(START + timedelta(days=30)).isoformat(),
    )
    first = credit(call, 7, "goodwill", priority=90, expiresAt=(START + 10 * MINUTE).isoformat())

    unrecorded = listed(call)  # before the stream wrote the LOT items
    materialize()
    recorded = listed(call)

    ids = [first, order, base, promo]
    assert [lot["lotId"] for lot in unrecorded["lots"]] == ids
    assert [lot["lotId"] for lot in recorded["lots"]] == ids
    assert (recorded["accountId"], recorded["balance"], recorded["available"]) == (
        ACCOUNT,
        177,
        177,
    )
    assert [lot["status"] for lot in recorded["lots"]] == ["active"] * 4
    # What the id says is there at once; what was granted, once the stream recorded it.
    assert [(lot["priority"], lot["initialAmount"]) for lot in unrecorded["lots"]] == [
        (90, None),
        (80, None),
        (60, None),
        (60, None),
    ]
    assert unrecorded["lots"][1]["expiresAt"] == "2025-03-31T12:00:00Z"
    topup = recorded["lots"][1]
    assert topup == {
        "lotId": order,
        "status": "active",
        "remaining": 50,
        "initialAmount": 50,
        "units": "credits",
        "priority": 80,
        "expiresAt": "2025-03-31T12:00:00Z",
        "grantedAt": topup["grantedAt"],
        "reference": "po_1",
        "source": "topup",
        "description": "",
        "grantedBy": topup["grantedBy"],
    }
    granted = datetime.fromisoformat(topup["grantedAt"]) - (START + timedelta(seconds=1))
    assert timedelta(0) <= granted < timedelta(milliseconds=1)  # the grant entry's time
    assert topup["grantedBy"].startswith("txn_3_")
    assert (recorded["lots"][2]["source"], recorded["lots"][2]["description"]) == (
        "grant",
        "Welcome",
    )

    assert debit(ledger, 60, "d-1") == {first: -7, order: -50, base: -3}
    after = listed(call)
    assert [(lot["lotId"], lot["remaining"]) for lot in after["lots"]] == [(base, 97), (promo, 20)]


def test_an_expired_lot_is_listed_as_expired_until_lots_expire_takes_it(
    call: Call,
    ledger: Ledger,
    clock: Clock,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
) -> None:
    base = credit(call, 100, "base")
    promo = credit(call, 7, "promo", priority=90, expiresAt=(START + 10 * MINUTE).isoformat())
    clock.now += 11 * MINUTE
    assert debit(ledger, 10, "d-1") == {base: -10}  # never the expired lot

    before = listed(call)
    expired = call("lots.expire", accountId=ACCOUNT)
    after = listed(call)
    again = call("lots.expire", accountId=ACCOUNT)

    assert [(lot["lotId"], lot["status"]) for lot in before["lots"]] == [
        (promo, "expired"),
        (base, "active"),
    ]
    assert before["balance"] == 97
    (step,) = expired["expiries"]
    assert (step["lotId"], step["remaining"], step["expired"]) == (promo, 7, 7)
    assert (expired["balance"], expired["available"]) == (90, 90)
    assert [lot["lotId"] for lot in after["lots"]] == [base]
    assert again["expiries"] == []
    assert again["balance"] == 90
    materialize()
    entries, _ = moto_store.entries.page(ACCOUNT, limit=10)
    assert (entries[0].type, entries[0].amount, entries[0].lot_id) == (
        EntryType.EXPIRY,
        Decimal(-7),
        promo,
    )
    assert entries[0].transaction_id == step["transactionId"]
    assert entries[0].actor == ACTOR  # the operator who expired it now


def test_an_expired_lot_that_open_holds_reserve_is_pinned_and_not_expired(
    call: Call, ledger: Ledger, clock: Clock
) -> None:
    promo = credit(call, 10, "promo", expiresAt=(START + 10 * MINUTE).isoformat())
    ledger.holds.reserve(
        ReserveCommand(
            account_id=ACCOUNT, idempotency_key="r-1", amount=Decimal(10), expires_in=3600
        )
    )
    clock.now += 11 * MINUTE

    found = listed(call)
    expired = call("lots.expire", accountId=ACCOUNT)

    assert [(lot["lotId"], lot["status"]) for lot in found["lots"]] == [(promo, "pinned")]
    assert (found["reserved"], found["available"]) == (10, 0)
    assert expired["expiries"] == [
        {"lotId": promo, "remaining": 10, "expired": None, "transactionId": None}
    ]
    assert expired["balance"] == 10


def test_an_overdraft_is_listed_last_and_a_credit_that_only_repays_it_opens_no_lot(
    call: Call, ledger: Ledger
) -> None:
    limit = call("accounts.set", accountId=ACCOUNT, overdraftLimit=20)
    assert "error" not in limit, limit
    credit(call, 5, "g-1")
    debit(ledger, 15, "d-1")

    in_debt = listed(call)
    repaid = call("credits.grant", accountId=ACCOUNT, amount=4, idempotencyKey="g-2")
    opened = call("credits.topup", accountId=ACCOUNT, amount=30, idempotencyKey="t-1")

    assert in_debt["balance"] == -10
    assert in_debt["lots"] == [
        {
            "lotId": OVERDRAFT_LOT,
            "status": "overdraft",
            "remaining": -10,
            "initialAmount": None,
            "units": "credits",
            "priority": None,
            "expiresAt": None,
            "grantedAt": None,
            "reference": None,
            "source": None,
            "description": "",
            "grantedBy": None,
        }
    ]
    assert repaid["lots"] == {OVERDRAFT_LOT: 4}
    assert "lotId" not in repaid
    assert opened["lots"] == {OVERDRAFT_LOT: 6, opened["lotId"]: 24}
    assert [lot["lotId"] for lot in listed(call)["lots"]] == [opened["lotId"]]


def test_lots_of_an_unknown_account_or_with_a_misspelt_field(call: Call) -> None:
    for operation in ("lots.list", "lots.expire"):
        unknown = call(operation, accountId="acct_nope")
        misspelt = call(operation, accountId=ACCOUNT, acountId=ACCOUNT)

        assert unknown["error"]["code"] == "ACCOUNT_NOT_FOUND"
        assert misspelt["error"]["code"] == "VALIDATION_ERROR"
        assert misspelt["error"]["details"]["fields"][0]["field"] == "acountId"


def test_a_grant_replayed_names_the_same_lot(call: Call) -> None:
    lot = {"amount": 3, "idempotencyKey": "g", "expiresAt": (START + timedelta(days=2)).isoformat()}
    first = call("credits.grant", accountId=ACCOUNT, priority=5, **lot)
    again = call("credits.grant", accountId=ACCOUNT, priority=5, **lot)
    other_priority = call("credits.grant", accountId=ACCOUNT, priority=6, **lot)

    assert again == {**first, "replayed": True}
    assert first["lotId"] == again["lotId"]
    assert other_priority["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert [lot["lotId"] for lot in listed(call)["lots"]] == [first["lotId"]]


# ---------------------------------------------------------------- the listing's rules
def account_with(lots: dict[str, Decimal] | None, **fields: Any) -> Account:
    balance = sum((lots or {}).values(), Decimal(0))
    return Account.model_validate(
        {
            "account_id": ACCOUNT,
            "balance": balance,
            "available": balance,
            "lots": lots,
            "created_at": START - timedelta(days=100),
            "updated_at": START,
            **fields,
        }
    )


def test_an_account_from_before_lots_lists_its_balance_as_its_opening_lot() -> None:
    legacy = account_with(None, balance=Decimal(40), available=Decimal(40))

    (view,) = lot_views(legacy, {}, START)

    assert rank_of(view.lot_id) is not None
    assert (view.status, view.remaining, view.priority, view.expires_at, view.source) == (
        LotStatus.ACTIVE,
        Decimal(40),
        50,
        None,
        "opening",
    )
    assert view.granted_at == START - timedelta(days=100)


def test_status_is_judged_at_now_to_the_second() -> None:
    expiry = START + MINUTE
    lot = new_lot_id(50, expiry, START - MINUTE)
    held = account_with(
        {lot: Decimal(5)},
        reserved=Decimal(5),
        available=Decimal(0),
        holds={"hold_x": OpenHold(a=Decimal(5), x=int((START + 3 * MINUTE).timestamp()), c=0)},
    )
    free = account_with({lot: Decimal(5)})
    described = {
        lot: Lot(
            account_id=ACCOUNT,
            lot_id=lot,
            source=EntryType.TOPUP,
            initial_amount=Decimal(8),
            priority=50,
            expires_at=expiry,
            granted_at=START - MINUTE,
            reference="po_2",
        )
    }

    def status(account: Account, now: datetime) -> LotStatus:
        (view,) = lot_views(account, described, now)
        assert (view.initial_amount, view.reference, view.source) == (Decimal(8), "po_2", "topup")
        return view.status

    assert status(free, expiry - timedelta(seconds=1)) is LotStatus.ACTIVE
    assert status(free, expiry) is LotStatus.EXPIRED
    assert status(held, expiry - timedelta(seconds=1)) is LotStatus.ACTIVE
    assert status(held, expiry) is LotStatus.PINNED
