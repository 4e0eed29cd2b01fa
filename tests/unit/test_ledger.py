"""Every ledger operation on moto: what it writes, what it refuses, and the invariants.

A change lands on the account item at once; its ledger entry and usage are written from
the table's stream by the materializer, so every helper that reads entries or usage drains
the stream first (the `materialize` fixture), and the ledger under test drains it while it
waits for an entry (a refund waits for its debit's), as the Materializer function would
have written it meanwhile. moto runs requests one at a time, which is all these tests need;
concurrency and faults are proven on DynamoDB Local (tests/integration); the write path's
own outcomes (leases, replays, recovery) in test_write_path.py.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import (
    AccountAlreadyExists,
    AccountNotFound,
    AccountSuspended,
    IdempotencyConflict,
    InsufficientCredits,
    RefundNotAllowed,
    TransactionNotFound,
    UnknownAction,
    ValidationFailed,
)
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    DailyUsage,
    EntryType,
    LedgerEntry,
    OperationResult,
    PriceList,
    utc_now,
)
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock

ACCOUNT = "acct_unit"


# ---------------------------------------------------------------- helpers
def _materialize() -> int:  # replaced per test by the `materialize` fixture
    raise AssertionError("no stream to materialize")


@pytest.fixture(autouse=True)
def _reads_are_materialized(
    materialize: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_materialize", materialize)


def entries(store: CreditsStore, account_id: str = ACCOUNT) -> list[LedgerEntry]:
    """The account's whole ledger, oldest first (once the stream is materialized)."""
    _materialize()
    found, more = store.entries.page(account_id, limit=1000, newest_first=False)
    assert more is None
    return found


def stored_account(store: CreditsStore, account_id: str = ACCOUNT) -> Account:
    account = store.accounts.get(account_id, consistent=True)
    assert account is not None
    return account


def assert_ledger_invariants(store: CreditsStore, account_id: str = ACCOUNT) -> None:
    """balance == sum(amounts), the balanceAfter chain, a gapless sequence, and
    balance == total - used + adjusted (the lifetime figures, `domain.posting`)."""
    account = stored_account(store, account_id)
    lines = entries(store, account_id)
    assert [line.sequence for line in lines] == list(range(1, len(lines) + 1))
    running = Decimal(0)
    for line in lines:
        running += line.amount
        assert line.balance_after == running
    assert account.balance == running
    assert account.version == len(lines)
    assert account.total - account.used + account.adjusted == account.balance
    assert account.balance >= -account.overdraft_limit


def usage_rows(store: CreditsStore, account_id: str = ACCOUNT) -> list[DailyUsage]:
    """Every day of the account's usage (once the stream is materialized)."""
    _materialize()
    return store.usage.daily(account_id, date(2000, 1, 1), date(2100, 1, 1))


def record_calls(store: CreditsStore) -> list[tuple[str, str]]:
    """(operation, partition key) of every DynamoDB request from now on."""
    calls: list[tuple[str, str]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        item = params.get("Key") or params.get("Item") or {}
        calls.append((model.name, item.get("pk", {}).get("S", "")))

    store.client.meta.events.register("before-parameter-build.dynamodb", record)
    return calls


def usage_today(store: CreditsStore, account_id: str = ACCOUNT) -> DailyUsage:
    """The account's usage rows of yesterday and today, added up (a test may cross midnight)."""
    _materialize()
    today = utc_now().date()
    rows = store.usage.daily(account_id, today - timedelta(days=1), today)
    assert rows

    def added(field: str) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for row in rows:
            total.update(getattr(row, field))
        return dict(total)

    return DailyUsage(
        day=today,
        calls=sum(row.calls for row in rows),
        failed=sum(row.failed for row in rows),
        credits_used=sum((row.credits_used for row in rows), Decimal(0)),
        by_type=added("by_type"),
        by_endpoint=added("by_endpoint"),
        by_endpoint_credits=added("by_endpoint_credits"),
    )


def debit(
    ledger: Ledger,
    amount: str | int | None = None,
    key: str = "debit-1",
    account_id: str = ACCOUNT,
    **fields: Any,
) -> OperationResult:
    return ledger.debit(
        DebitCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount) if amount is not None else None,
            **fields,
        )
    )


def credit(amount: str | int, key: str, **fields: Any) -> CreditCommand:
    return CreditCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), **fields)


def refund(transaction_id: str, key: str = "refund-1", **fields: Any) -> RefundCommand:
    return RefundCommand(
        account_id=ACCOUNT, idempotency_key=key, transaction_id=transaction_id, **fields
    )


def adjustment(
    amount: str | int, key: str = "adj-1", reason: str = "correction"
) -> AdjustmentCommand:
    return AdjustmentCommand(
        account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), reason=reason
    )


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int]) -> Ledger:
    """The process's ledger, except that waiting runs the materializer."""

    def materialize_meanwhile(_: float) -> None:
        materialize()

    return wiring.build_ledger(moto_store, wiring.prices(), sleep=materialize_meanwhile)


@pytest.fixture
def account(ledger: Ledger) -> str:
    """An active account opened with 100 credits."""
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return ACCOUNT


# ---------------------------------------------------------------- accounts
def test_create_account_without_opening_balance_writes_no_entry(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    created = ledger.create_account(
        CreateAccountCommand(
            account_id=ACCOUNT, currency="EUR", credit_price=Decimal("0.02"), plan="pro"
        )
    )

    stored = stored_account(moto_store)
    assert stored == created
    assert (stored.balance, stored.total, stored.used) == (Decimal(0), Decimal(0), Decimal(0))
    assert stored.version == 0
    assert (stored.currency, stored.credit_price, stored.plan) == ("EUR", Decimal("0.02"), "pro")
    assert stored.status is AccountStatus.ACTIVE
    assert entries(moto_store) == []


def test_create_account_with_opening_balance_writes_one_grant_entry(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    ledger.create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal("100.5"))
    )

    stored = stored_account(moto_store)
    assert (stored.balance, stored.total, stored.used) == (
        Decimal("100.5"),
        Decimal("100.5"),
        Decimal(0),
    )
    assert stored.version == 1
    [opening] = entries(moto_store)
    assert opening.type is EntryType.GRANT
    assert (opening.amount, opening.balance_after, opening.sequence) == (
        Decimal("100.5"),
        Decimal("100.5"),
        1,
    )
    assert opening.description == "Opening balance"
    assert opening.idempotency_key == "opening-balance"
    # The account names the operation of its latest version; the entry is built from it.
    assert stored.last_op is not None
    assert (stored.last_op.key, stored.last_op.type, stored.last_op.amount) == (
        "opening-balance",
        EntryType.GRANT,
        Decimal("100.5"),
    )
    assert opening.transaction_id == f"txn_1_{stored.last_op.id[:12]}"
    assert stored.last_op.at == opening.created_at
    assert stored.available == stored.balance
    assert_ledger_invariants(moto_store)


def test_create_account_with_a_taken_id_is_refused_and_changes_nothing(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    with pytest.raises(AccountAlreadyExists) as refused:
        ledger.create_account(CreateAccountCommand(account_id=account, opening_balance=Decimal(5)))

    assert refused.value.details == {"accountId": account}
    assert stored_account(moto_store).balance == 100
    assert len(entries(moto_store)) == 1


def test_account_reads_the_stored_account_or_raises_not_found(ledger: Ledger, account: str) -> None:
    assert ledger.account(account).balance == 100
    with pytest.raises(AccountNotFound):
        ledger.account("acct_missing")


# ---------------------------------------------------------------- debits
def test_debit_by_amount_writes_balance_entry_and_usage(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = debit(
        ledger,
        "12.345678",
        key="call-1",
        description="One API call",
        endpoint="/v1/search",
        metadata={"requestId": "r-1", "retries": 2, "cached": False},
    )

    assert result.amount == Decimal("12.345678")
    assert result.balance_after == Decimal("87.654322")
    assert result.available == Decimal("87.654322")
    assert result.replayed is False
    stored = stored_account(moto_store)
    assert (stored.balance, stored.used, stored.total) == (
        Decimal("87.654322"),
        Decimal("12.345678"),
        Decimal(100),
    )
    assert stored.lifetime_requests == 1
    entry = entries(moto_store)[-1]
    assert entry.transaction_id == result.transaction_id
    assert entry.transaction_id.startswith("txn_")
    assert entry.type is EntryType.DEBIT
    assert (entry.amount, entry.balance_after, entry.sequence) == (
        Decimal("-12.345678"),
        Decimal("87.654322"),
        2,
    )
    assert (entry.description, entry.endpoint, entry.idempotency_key) == (
        "One API call",
        "/v1/search",
        "call-1",
    )
    assert entry.metadata == {"requestId": "r-1", "retries": 2, "cached": False}
    assert entry.action is None
    usage = usage_today(moto_store)
    assert (usage.calls, usage.failed, usage.credits_used) == (1, 0, Decimal("12.345678"))
    assert usage.by_type == {"debit": Decimal("12.345678")}
    assert usage.by_endpoint == {"/v1/search": 1}
    assert usage.by_endpoint_credits == {"/v1/search": Decimal("12.345678")}
    assert_ledger_invariants(moto_store)


def test_debits_are_exact_decimals(ledger: Ledger, moto_store: CreditsStore) -> None:
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal("0.3")))
    for number in range(3):
        debit(ledger, "0.1", key=f"tenth-{number}")

    assert stored_account(moto_store).balance == 0
    assert [e.balance_after for e in entries(moto_store)] == [
        Decimal("0.3"),
        Decimal("0.2"),
        Decimal("0.1"),
        Decimal(0),
    ]
    with pytest.raises(InsufficientCredits):
        debit(ledger, "0.000001", key="one-more")
    assert_ledger_invariants(moto_store)


def test_debit_of_the_whole_balance_leaves_zero(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    assert debit(ledger, 100).balance_after == 0
    assert_ledger_invariants(moto_store)


def test_debit_by_action_uses_the_default_price_list(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = debit(
        ledger,
        key="call-7",
        action="voice_call_minute",
        quantity=Decimal("2.5"),
        endpoint="/v1/call",
    )

    assert result.amount == Decimal("7.5")  # 3 credits per minute
    entry = entries(moto_store)[-1]
    assert (entry.action, entry.quantity, entry.amount) == (
        "voice_call_minute",
        Decimal("2.5"),
        Decimal("-7.5"),
    )
    usage = usage_today(moto_store)
    assert usage.by_type == {"voice_call_minute": Decimal("7.5")}
    assert usage.by_endpoint_credits == {"/v1/call": Decimal("7.5")}


def test_debit_by_action_without_quantity_charges_one_unit(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    assert debit(ledger, action="sms").amount == 1
    assert entries(moto_store)[-1].quantity == 1


def test_debit_by_action_uses_the_published_price_list_rounded_to_six_places(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    wiring.prices().publish(PriceList(prices={"sms": Decimal("0.333333")}))

    result = debit(ledger, action="sms", quantity=Decimal("0.5"))

    assert result.amount == Decimal("0.166666")  # 0.1666665 rounded half-even
    assert stored_account(moto_store).balance == Decimal("99.833334")


def test_debit_of_an_unknown_action_is_a_validation_error_and_writes_nothing(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    with pytest.raises(UnknownAction) as refused:
        debit(ledger, action="teleport", quantity=Decimal(1))

    assert isinstance(refused.value, ValidationFailed)
    assert refused.value.details == {"field": "action"}
    assert stored_account(moto_store).version == 1
    assert [(day.calls, day.failed) for day in usage_rows(moto_store)] == [(0, 0)]


@pytest.mark.parametrize(
    ("price", "quantity"),
    [(Decimal(1_000_000_000), Decimal(2)), (Decimal("0.000001"), Decimal("0.1"))],
)
def test_debit_by_action_out_of_range_is_a_validation_error(
    ledger: Ledger, moto_store: CreditsStore, account: str, price: Decimal, quantity: Decimal
) -> None:
    wiring.prices().publish(PriceList(prices={"bulk": price}))

    with pytest.raises(ValidationFailed) as refused:
        debit(ledger, action="bulk", quantity=quantity)

    assert refused.value.details == {"field": "quantity"}
    assert stored_account(moto_store).version == 1


def test_insufficient_credits_reports_available_and_changes_no_balance(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, "60", key="first")

    with pytest.raises(InsufficientCredits) as refused:
        debit(ledger, "40.000001", key="second", endpoint="/v1/search")

    assert refused.value.available == 40
    assert refused.value.details == {"available": 40, "requested": Decimal("40.000001")}
    assert stored_account(moto_store).balance == 40
    assert len(entries(moto_store)) == 2
    # The declined call still counts as a (failed) call, with no credits.
    usage = usage_today(moto_store)
    assert (usage.calls, usage.failed, usage.credits_used) == (2, 1, Decimal(60))
    assert usage.by_endpoint == {"/v1/search": 1}
    assert_ledger_invariants(moto_store)


def test_a_fresh_ledger_refuses_insufficient_credits_from_the_stored_state(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    fresh = wiring.build_ledger(moto_store, PriceCatalog(moto_store.catalog, 60), get_settings())

    with pytest.raises(InsufficientCredits) as refused:
        debit(fresh, "100.5")

    assert refused.value.available == 100


def test_overdraft_lets_a_debit_go_below_zero_down_to_the_limit(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    ledger.create_account(
        CreateAccountCommand(
            account_id=ACCOUNT, opening_balance=Decimal(5), overdraft_limit=Decimal(10)
        )
    )

    assert debit(ledger, 15, key="to-the-limit").balance_after == -10
    with pytest.raises(InsufficientCredits) as refused:
        debit(ledger, "0.000001", key="past-the-limit")

    assert refused.value.available == -10
    assert_ledger_invariants(moto_store)


def test_lowering_the_overdraft_applies_to_a_ledger_that_cached_the_account(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    ledger.create_account(
        CreateAccountCommand(
            account_id=ACCOUNT, opening_balance=Decimal(5), overdraft_limit=Decimal(50)
        )
    )
    debit(ledger, 1, key="warm-the-cache")
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(0)})

    with pytest.raises(InsufficientCredits) as refused:
        debit(ledger, 10, key="into-a-withdrawn-overdraft")

    assert refused.value.available == 4
    assert stored_account(moto_store).balance == 4
    assert_ledger_invariants(moto_store)


def test_raising_the_overdraft_applies_to_a_ledger_that_cached_the_account(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, 1, key="warm-the-cache")  # cached with no overdraft
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(20)})

    assert debit(ledger, 110, key="into-the-new-overdraft").balance_after == -11
    assert_ledger_invariants(moto_store)


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_a_suspended_or_closed_account_cannot_be_debited(
    ledger: Ledger, moto_store: CreditsStore, account: str, status: str
) -> None:
    debit(ledger, 1, key="while-active")  # the ledger now holds the account as active
    moto_store.accounts.update_settings(account, {"status": status})

    with pytest.raises(AccountSuspended) as refused:
        debit(ledger, 1, key="while-suspended")

    assert refused.value.details == {"accountId": account, "status": status}
    assert stored_account(moto_store).balance == 99
    assert usage_today(moto_store).failed == 1

    moto_store.accounts.update_settings(account, {"status": "active"})
    assert debit(ledger, 1, key="reactivated").balance_after == 98
    assert_ledger_invariants(moto_store)


def test_a_fresh_ledger_refuses_a_suspended_account(
    moto_store: CreditsStore, ledger: Ledger, account: str
) -> None:
    moto_store.accounts.update_settings(account, {"status": "suspended"})
    fresh = wiring.build_ledger(moto_store, PriceCatalog(moto_store.catalog, 60), get_settings())

    with pytest.raises(AccountSuspended):
        debit(fresh, 1)


def test_operations_on_a_missing_account_raise_account_not_found(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    missing = "acct_missing"
    operations: list[Callable[[], object]] = [
        lambda: debit(ledger, 1, account_id=missing),
        lambda: ledger.top_up(
            CreditCommand(account_id=missing, idempotency_key="k", amount=Decimal(1))
        ),
        lambda: ledger.grant(
            CreditCommand(account_id=missing, idempotency_key="k", amount=Decimal(1))
        ),
        lambda: ledger.adjust(
            AdjustmentCommand(
                account_id=missing, idempotency_key="k", amount=Decimal(1), reason="r"
            )
        ),
    ]
    for operation in operations:
        with pytest.raises(AccountNotFound) as refused:
            operation()
        assert refused.value.details == {"accountId": missing}
    assert moto_store.client.scan(TableName=moto_store.table_name)["Count"] == 0


def test_an_account_that_vanished_under_a_warm_ledger_is_not_found(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, 1, key="warm")  # the ledger now holds the account
    moto_store.client.delete_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.account_pk(account)}, "sk": {"S": keys.ACCOUNT_SK}},
    )

    for attempt in range(2):  # no cached state to trust: the update's refusal says it
        with pytest.raises(AccountNotFound):
            debit(ledger, 1, key=f"after-{attempt}")
    # Each refused lease was released: no pending record is left behind.
    assert moto_store.idempotency.get(account, "after-0") is None
    assert moto_store.idempotency.get(account, "after-1") is None


# ---------------------------------------------------------------- credits
def test_top_up_adds_credits_with_its_reference(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = ledger.top_up(
        credit(
            "250.25", "po-1", reference="PO-2024-001", description="Purchase", metadata={"a": "b"}
        )
    )

    assert (result.amount, result.balance_after) == (Decimal("250.25"), Decimal("350.25"))
    entry = entries(moto_store)[-1]
    assert entry.type is EntryType.TOPUP
    assert (entry.amount, entry.reference, entry.description) == (
        Decimal("250.25"),
        "PO-2024-001",
        "Purchase",
    )
    assert entry.metadata == {"a": "b"}
    stored = stored_account(moto_store)
    assert (stored.total, stored.used) == (Decimal("350.25"), Decimal(0))
    assert stored.lifetime_requests == 0
    # Funding is not usage: the day only indexes the entry (its sequence range).
    [day] = usage_rows(moto_store)
    assert (day.calls, day.failed, day.credits_used) == (0, 0, Decimal(0))
    assert (day.by_type, day.by_endpoint, day.by_endpoint_credits) == ({}, {}, {})
    [item] = moto_store.usage.days(ACCOUNT, date(2000, 1, 1), date(2100, 1, 1))
    assert (item["firstSeq"], item["lastSeq"]) == (1, 2)
    assert_ledger_invariants(moto_store)


def test_grant_adds_promotional_credits(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = ledger.grant(credit(20, "promo-1", description="Welcome bonus"))

    assert result.balance_after == 120
    assert entries(moto_store)[-1].type is EntryType.GRANT
    assert_ledger_invariants(moto_store)


def test_credits_can_fund_a_suspended_account(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    moto_store.accounts.update_settings(account, {"status": "suspended"})
    assert ledger.top_up(credit(5, "po-2")).balance_after == 105


# ---------------------------------------------------------------- adjustments
def test_a_debit_by_action_is_described_by_its_action_unless_the_caller_says(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    # A blank description on an entry charged by action said nothing about the charge.
    debit(ledger, key="by-action", action="voice_call_minute", quantity=Decimal(2))
    debit(ledger, key="one-sms", action="sms")
    debit(ledger, key="said", action="sms", description="Welcome text")
    debit(ledger, 1, key="by-amount")

    assert [entry.description for entry in entries(moto_store)[1:]] == [
        "voice_call_minute x 2",
        "sms x 1",
        "Welcome text",
        "",
    ]


def test_positive_adjustment_adds_to_adjusted_with_its_reason(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = ledger.adjust(adjustment("7.5", reason="Goodwill for outage #12"))

    assert result.balance_after == Decimal("107.5")
    entry = entries(moto_store)[-1]
    assert entry.type is EntryType.ADJUSTMENT
    assert (entry.amount, entry.description) == (Decimal("7.5"), "Goodwill for outage #12")
    # An adjustment is neither a credit bought or granted (`total`) nor use (`used`).
    stored = stored_account(moto_store)
    assert (stored.total, stored.used, stored.adjusted) == (
        Decimal(100),
        Decimal(0),
        Decimal("7.5"),
    )
    assert_ledger_invariants(moto_store)


def test_negative_adjustment_removes_credits_but_is_not_use(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = ledger.adjust(adjustment("-30", reason="Reverse a duplicate top-up"))

    assert (result.amount, result.balance_after) == (Decimal(30), Decimal(70))
    assert entries(moto_store)[-1].amount == -30
    stored = stored_account(moto_store)
    assert (stored.used, stored.total, stored.adjusted) == (Decimal(0), Decimal(100), Decimal(-30))
    assert_ledger_invariants(moto_store)


def test_negative_adjustment_is_checked_against_the_funds(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    with pytest.raises(InsufficientCredits) as refused:
        ledger.adjust(adjustment("-100.000001"))

    assert refused.value.available == 100
    assert stored_account(moto_store).balance == 100
    assert ledger.adjust(adjustment("-100", key="adj-2")).balance_after == 0
    assert_ledger_invariants(moto_store)


def test_a_suspended_account_can_be_adjusted(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    moto_store.accounts.update_settings(account, {"status": "suspended"})
    assert ledger.adjust(adjustment("-10")).balance_after == 90


# ---------------------------------------------------------------- refunds
def test_whole_refund_gives_back_the_debit_and_nets_usage(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, "12.5", key="call-1", action=None, endpoint="/v1/search")

    result = ledger.refund(refund(charged.transaction_id, failed_call=True))

    assert (result.amount, result.balance_after) == (Decimal("12.5"), Decimal(100))
    entry = entries(moto_store)[-1]
    assert entry.type is EntryType.REFUND
    assert entry.amount == Decimal("12.5")
    assert entry.refund_of == entry.reference == charged.transaction_id
    assert entry.description == f"Refund of {charged.transaction_id}"
    assert entry.endpoint == "/v1/search"
    stored = stored_account(moto_store)
    assert (stored.used, stored.total, stored.balance) == (Decimal(0), Decimal(100), Decimal(100))
    usage = usage_today(moto_store)
    assert (usage.calls, usage.failed, usage.credits_used) == (1, 1, Decimal(0))
    assert usage.by_type == {"debit": 0}
    assert usage.by_endpoint_credits == {"/v1/search": 0}
    assert_ledger_invariants(moto_store)


def test_refund_of_an_action_debit_nets_the_actions_usage(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, action="voice_call_minute", quantity=Decimal(4))

    ledger.refund(refund(charged.transaction_id, amount=Decimal(3), reason="Dropped call"))

    entry = entries(moto_store)[-1]
    assert (entry.action, entry.description) == ("voice_call_minute", "Dropped call")
    usage = usage_today(moto_store)
    assert usage.by_type == {"voice_call_minute": 9}
    assert (usage.credits_used, usage.failed) == (Decimal(9), 0)


def test_partial_refunds_up_to_the_original_then_refused(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, 10)

    ledger.refund(refund(charged.transaction_id, "r-1", amount=Decimal(4)))
    ledger.refund(refund(charged.transaction_id, "r-2", amount=Decimal("5.5")))
    with pytest.raises(RefundNotAllowed) as over:
        ledger.refund(refund(charged.transaction_id, "r-3", amount=Decimal("0.500001")))
    remaining = ledger.refund(refund(charged.transaction_id, "r-4"))
    with pytest.raises(RefundNotAllowed) as nothing_left:
        ledger.refund(refund(charged.transaction_id, "r-5"))

    assert over.value.details == {
        "transactionId": charged.transaction_id,
        "refundable": Decimal("0.5"),
    }
    assert remaining.amount == Decimal("0.5")
    assert nothing_left.value.details == {"transactionId": charged.transaction_id, "refundable": 0}
    assert stored_account(moto_store).balance == 100
    assert [e.type for e in entries(moto_store)].count(EntryType.REFUND) == 3
    assert_ledger_invariants(moto_store)


def test_refund_larger_than_the_debit_is_refused(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, 10)

    with pytest.raises(RefundNotAllowed):
        ledger.refund(refund(charged.transaction_id, amount=Decimal("10.000001")))

    assert stored_account(moto_store).balance == 90


def test_only_debits_can_be_refunded(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    topped_up = ledger.top_up(credit(5, "po-1"))
    opening = entries(moto_store)[0]

    for transaction_id in (topped_up.transaction_id, opening.transaction_id):
        with pytest.raises(RefundNotAllowed) as refused:
            ledger.refund(refund(transaction_id))
        assert refused.value.details == {"transactionId": transaction_id}

    charged = debit(ledger, 1)
    refunded = ledger.refund(refund(charged.transaction_id, "r-ok"))
    with pytest.raises(RefundNotAllowed):
        ledger.refund(refund(refunded.transaction_id, "r-of-refund"))


@pytest.mark.parametrize(
    "transaction_id",
    [
        "txn_20240101T000000000000Z",
        "txn_not-a-time",
        "unknown",
        "TXN_1",
        "txn_0_0123456789ab",
        "txn_99_0123456789ab",
    ],
)
def test_refund_of_an_unknown_transaction_raises_not_found(
    ledger: Ledger, account: str, transaction_id: str
) -> None:
    with pytest.raises(TransactionNotFound) as refused:
        ledger.refund(refund(transaction_id))
    assert refused.value.details == {"transactionId": transaction_id}


def test_refund_of_another_accounts_debit_is_not_found(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    ledger.create_account(CreateAccountCommand(account_id="acct_other", opening_balance=Decimal(9)))
    theirs = debit(ledger, 1, account_id="acct_other")

    with pytest.raises(TransactionNotFound):
        ledger.refund(refund(theirs.transaction_id))


# ---------------------------------------------------------------- idempotency
def test_a_repeated_debit_returns_the_original_result_and_charges_once(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = debit(ledger, 10, key="same", description="d", metadata={"m": 1})
    ledger.top_up(credit(50, "po-1"))  # the balance moves on in between

    again = debit(ledger, 10, key="same", description="d", metadata={"m": 1})

    assert again.replayed is True
    assert again.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})
    assert stored_account(moto_store).balance == 140
    assert [e.type for e in entries(moto_store)].count(EntryType.DEBIT) == 1
    assert usage_today(moto_store).calls == 1
    assert_ledger_invariants(moto_store)


def test_a_replay_is_recognised_by_another_ledger_with_no_cached_state(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = debit(ledger, 10, key="same")
    other = wiring.build_ledger(moto_store, PriceCatalog(moto_store.catalog, 60), get_settings())

    again = debit(other, 10, key="same")

    assert (again.transaction_id, again.replayed) == (first.transaction_id, True)
    assert stored_account(moto_store).balance == 90


def test_a_replay_succeeds_even_when_the_balance_no_longer_covers_it(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = debit(ledger, 60, key="big")
    debit(ledger, 40, key="drain")

    assert debit(ledger, 60, key="big").transaction_id == first.transaction_id


def test_a_replay_after_suspension_returns_the_original_result(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = debit(ledger, 5, key="before-suspension")
    moto_store.accounts.update_settings(account, {"status": "suspended"})

    again = debit(ledger, 5, key="before-suspension")

    assert (again.transaction_id, again.replayed) == (first.transaction_id, True)


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "11"},
        {"description": "other"},
        {"endpoint": "/v1/other"},
        {"metadata": {"m": 2}},
        {"amount": None, "action": "sms"},
    ],
)
def test_the_same_key_with_different_parameters_is_a_conflict(
    ledger: Ledger, moto_store: CreditsStore, account: str, changes: dict[str, Any]
) -> None:
    debit(ledger, 10, key="same", description="d", metadata={"m": 1})
    fields: dict[str, Any] = {"amount": "10", "description": "d", "metadata": {"m": 1}, **changes}

    with pytest.raises(IdempotencyConflict) as refused:
        debit(ledger, key="same", **fields)

    assert refused.value.details == {"idempotencyKey": "same"}
    assert stored_account(moto_store).balance == 90


def test_equal_amounts_written_differently_are_the_same_request(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, "10", key="same")
    assert debit(ledger, "10.000", key="same").replayed is True


def test_the_same_key_for_another_operation_is_a_conflict(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, 10, key="shared-key")

    with pytest.raises(IdempotencyConflict):
        ledger.top_up(credit(10, "shared-key"))
    with pytest.raises(IdempotencyConflict):
        ledger.adjust(adjustment(10, key="shared-key"))


def test_idempotency_keys_are_scoped_to_the_account(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    ledger.create_account(
        CreateAccountCommand(account_id="acct_other", opening_balance=Decimal(50))
    )

    mine = debit(ledger, 10, key="k")
    theirs = debit(ledger, 10, key="k", account_id="acct_other")

    assert (
        mine.transaction_id != theirs.transaction_id or mine.balance_after != theirs.balance_after
    )
    assert not theirs.replayed
    assert stored_account(moto_store).balance == 90
    assert stored_account(moto_store, "acct_other").balance == 40


@pytest.mark.parametrize(
    "operation",
    ["top_up", "grant", "adjust"],
)
def test_repeated_credits_and_adjustments_apply_once(
    ledger: Ledger, moto_store: CreditsStore, account: str, operation: str
) -> None:
    def run() -> OperationResult:
        if operation == "adjust":
            return ledger.adjust(adjustment(5, key="once"))
        command = credit(5, "once", reference="PO-1")
        return ledger.top_up(command) if operation == "top_up" else ledger.grant(command)

    first, second = run(), run()

    assert (first.replayed, second.replayed) == (False, True)
    assert first.transaction_id == second.transaction_id
    assert stored_account(moto_store).balance == 105


def test_a_repeated_partial_refund_returns_the_original_result(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, 10)
    first = ledger.refund(refund(charged.transaction_id, "r-1", amount=Decimal(6)))

    again = ledger.refund(refund(charged.transaction_id, "r-1", amount=Decimal(6)))

    assert (again.transaction_id, again.replayed) == (first.transaction_id, True)
    assert stored_account(moto_store).balance == 96
    # Reused with other parameters: within what remains, and beyond it.
    for other_amount in (Decimal(3), Decimal(5)):
        with pytest.raises(IdempotencyConflict):
            ledger.refund(refund(charged.transaction_id, "r-1", amount=other_amount))
    with pytest.raises(IdempotencyConflict):
        ledger.refund(refund(charged.transaction_id, "r-1"))
    assert stored_account(moto_store).balance == 96
    assert_ledger_invariants(moto_store)


def test_a_repeated_whole_refund_returns_the_original_result(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, 10)
    first = ledger.refund(refund(charged.transaction_id, "r-all"))

    again = ledger.refund(refund(charged.transaction_id, "r-all"))

    assert (again.transaction_id, again.amount, again.replayed) == (
        first.transaction_id,
        Decimal(10),
        True,
    )
    assert stored_account(moto_store).balance == 100
    assert_ledger_invariants(moto_store)


def test_an_idempotency_key_can_be_reused_after_its_retention(
    ledger: Ledger, moto_store: CreditsStore, account: str, materialize: Callable[[], int]
) -> None:
    first = debit(ledger, 10, key="old-key")
    materialize()  # the entry exists: the record's retention starts
    retention = timedelta(hours=get_settings().idempotency_retention_hours, minutes=1)
    later = wiring.build_ledger(
        moto_store,
        PriceCatalog(moto_store.catalog, 60),
        get_settings(),
        clock=lambda: utc_now() + retention,
    )

    again = debit(later, 10, key="old-key")

    assert again.replayed is False
    assert again.transaction_id != first.transaction_id
    assert stored_account(moto_store).balance == 80
    assert_ledger_invariants(moto_store)


def test_a_record_whose_entry_is_not_written_yet_never_expires(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = debit(ledger, 10, key="old-key")
    record = moto_store.idempotency.get(ACCOUNT, "old-key")
    assert record is not None
    assert record.expires_at is None  # no TTL until the materializer wrote the entry
    much_later = timedelta(days=400)
    later = wiring.build_ledger(
        moto_store,
        PriceCatalog(moto_store.catalog, 60),
        get_settings(),
        clock=lambda: utc_now() + much_later,
    )

    again = debit(later, 10, key="old-key")

    assert (again.transaction_id, again.replayed) == (first.transaction_id, True)
    assert stored_account(moto_store).balance == 90


# ---------------------------------------------------------------- the write path
def test_a_debit_is_one_update_of_the_account_item_without_a_read(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, 1, key="warm")
    other = wiring.build_ledger(moto_store, PriceCatalog(moto_store.catalog, 60), get_settings())
    debit(other, 1, key="elsewhere")  # version 3, written by another ledger
    calls = record_calls(moto_store)

    result = debit(ledger, 1, key="after-another-writer")

    # No read, no version to pin, no retry on contention: one conditional update of the
    # account, between the lease (PutItem) and the completion of the record (UpdateItem).
    assert calls == [
        ("PutItem", keys.idempotency_pk(ACCOUNT, "after-another-writer")),
        ("UpdateItem", keys.account_pk(ACCOUNT)),
        ("UpdateItem", keys.idempotency_pk(ACCOUNT, "after-another-writer")),
    ]
    assert (result.balance_after, result.available) == (Decimal(97), Decimal(97))
    assert result.transaction_id.startswith("txn_4_")
    assert entries(moto_store)[-1].sequence == 4
    assert_ledger_invariants(moto_store)


def test_a_stale_overdraft_costs_one_read_never_a_wrong_refusal(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    debit(ledger, 1, key="warm")  # the ledger remembers no overdraft
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(20)})
    calls = record_calls(moto_store)

    result = debit(ledger, 110, key="into-the-new-overdraft")

    # The ledger's image of the account says no: a cached image proves no refusal, so it
    # reads the account once (the new limit), plans again and the update lands.
    account_updates = [call for call in calls if call == ("UpdateItem", keys.account_pk(ACCOUNT))]
    assert len(account_updates) == 1
    assert [call for call in calls if call[0] in {"GetItem", "Query"}] == [
        ("GetItem", keys.account_pk(ACCOUNT))
    ]
    assert result.balance_after == -11
    calls.clear()
    debit(ledger, 1, key="with-the-known-overdraft")
    assert [call for call in calls if call == ("UpdateItem", keys.account_pk(ACCOUNT))] == [
        ("UpdateItem", keys.account_pk(ACCOUNT))
    ]
    assert_ledger_invariants(moto_store)


def test_ledger_timestamps_strictly_increase_even_when_the_clock_stands_still(
    moto_store: CreditsStore,
) -> None:
    frozen = Clock(datetime(2024, 5, 1, 12, 0, 0, tzinfo=utc_now().tzinfo))
    ledger = wiring.build_ledger(
        moto_store, PriceCatalog(moto_store.catalog, 60), get_settings(), clock=frozen
    )
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(10)))

    ids = [debit(ledger, 1, key=f"k{n}").transaction_id for n in range(3)]

    stamps = [e.created_at for e in entries(moto_store)]
    assert stamps == sorted(set(stamps))
    assert stamps[0] == frozen.now
    assert stamps[-1] - stamps[0] == timedelta(microseconds=3)
    assert [e.transaction_id for e in entries(moto_store)][1:] == ids
    assert len(set(ids)) == 3
    assert_ledger_invariants(moto_store)


def test_entry_times_follow_the_sequence_even_when_a_writers_clock_runs_behind(
    moto_store: CreditsStore,
) -> None:
    clock = Clock(datetime(2024, 5, 1, 12, 0, 0, tzinfo=utc_now().tzinfo))
    ledger = wiring.build_ledger(
        moto_store, PriceCatalog(moto_store.catalog, 60), get_settings(), clock=clock
    )
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(10)))
    debit(ledger, 1, key="on-time")
    clock.now -= timedelta(seconds=5)  # another writer's clock, behind

    debit(ledger, 1, key="late-clock")

    *_, on_time, late = entries(moto_store)
    assert late.sequence == on_time.sequence + 1
    assert late.created_at == on_time.created_at + timedelta(microseconds=1)
    assert_ledger_invariants(moto_store)


def test_mixed_operations_keep_every_ledger_invariant(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, "3.25", key="d1")
    ledger.top_up(credit("10.5", "t1"))
    debit(ledger, key="d2", action="sms", quantity=Decimal(3))
    ledger.grant(credit(1, "g1"))
    ledger.adjust(adjustment("-2.000001", key="a1"))
    ledger.refund(refund(charged.transaction_id, "r1", amount=Decimal("1.25")))
    ledger.adjust(adjustment("0.000001", key="a2"))

    stored = stored_account(moto_store)
    assert stored.balance == stored.available == Decimal("104.5")
    assert_ledger_invariants(moto_store)
    assert [e.available_after for e in entries(moto_store)] == [
        e.balance_after for e in entries(moto_store)
    ]


def test_an_entry_is_found_by_its_transaction_id_once_materialized(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    charged = debit(ledger, 2, key="find-me")

    found = ledger.entry(ACCOUNT, charged.transaction_id)  # waits: the stream is drained

    assert (found.transaction_id, found.amount, found.sequence) == (
        charged.transaction_id,
        Decimal(-2),
        2,
    )
    sequence = charged.transaction_id.split("_")[1]
    for other in (f"txn_{sequence}_000000000000", "txn_3_0123456789ab"):
        with pytest.raises(TransactionNotFound):
            ledger.entry(ACCOUNT, other)
    with pytest.raises(TransactionNotFound):
        ledger.entry("acct_other", charged.transaction_id)
