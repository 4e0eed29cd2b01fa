"""Holds on moto (ledger.holds): reserve, capture, release and expiry through the write path,
what each step writes (the account item's figures and `holds` map, the ledger entry, the
HOLD item), what it refuses, and the ledger invariants with holds in the chain.

As in test_ledger.py, a change lands on the account item at once and its ledger entry,
usage and HOLD item come from the table's stream: helpers that read them drain it first
(the `materialize` fixture), and the ledger under test drains it while it waits (a capture
of a hold the account item no longer has waits for the HOLD item that says how it closed).
The ledger's clock is a `tests.support.Clock`, so a hold expires when a test moves it.
Races between steps (capture against expiry, crashes between the steps of one) are proven
on DynamoDB Local (tests/integration).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from moto.dynamodb.comparisons import FuncSize

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import (
    AccountSuspended,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientCredits,
    ServiceBusy,
    TooManyOpenHolds,
    ValidationFailed,
)
from serverless_credits.domain.holds import HOLD_ID_PATTERN, MAX_OPEN_HOLDS, epoch
from serverless_credits.domain.models import (
    Account,
    DailyUsage,
    EntryType,
    Hold,
    HoldStatus,
    LedgerEntry,
    OpenHold,
    OperationResult,
    ReleaseReason,
)
from serverless_credits.ledger import holds as ledger_holds
from serverless_credits.ledger.holds import EXPIRED_DESCRIPTION, SweepReport, expiry_key
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.items import from_item
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, materializing_ledger

ACCOUNT = "acct_holds"
OTHER_ACCOUNT = "acct_other"
START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
UNKNOWN_HOLD = "hold_0000000000000000"


# ---------------------------------------------------------------- helpers
def _materialize() -> int:  # replaced per test by the `materialize` fixture
    raise AssertionError("no stream to materialize")


@pytest.fixture(autouse=True)
def _reads_are_materialized(
    materialize: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_materialize", materialize)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int], clock: Clock) -> Ledger:
    """The process's ledger on the test's clock, except that waiting runs the materializer."""
    return materializing_ledger(moto_store, materialize, clock)


@pytest.fixture
def account(ledger: Ledger) -> str:
    """An active account opened with 100 credits."""
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return ACCOUNT


def reserve(
    ledger: Ledger,
    amount: str | int | None = None,
    key: str = "hold-1",
    account_id: str = ACCOUNT,
    **fields: Any,
) -> OperationResult:
    return ledger.holds.reserve(
        ReserveCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount) if amount is not None else None,
            **fields,
        )
    )


def capture(
    ledger: Ledger,
    hold_id: str | None,
    key: str = "capture-1",
    amount: str | int | None = None,
    account_id: str = ACCOUNT,
) -> OperationResult:
    assert hold_id is not None
    return ledger.holds.capture(
        CaptureCommand(
            account_id=account_id,
            idempotency_key=key,
            hold_id=hold_id,
            amount=Decimal(amount) if amount is not None else None,
        )
    )


def release(
    ledger: Ledger, hold_id: str | None, key: str = "release-1", account_id: str = ACCOUNT
) -> OperationResult:
    assert hold_id is not None
    return ledger.holds.release(
        ReleaseCommand(account_id=account_id, idempotency_key=key, hold_id=hold_id)
    )


def stored_account(store: CreditsStore, account_id: str = ACCOUNT) -> Account:
    account = store.accounts.get(account_id, consistent=True)
    assert account is not None
    return account


def entries(store: CreditsStore, account_id: str = ACCOUNT) -> list[LedgerEntry]:
    """The account's whole ledger, oldest first (once the stream is materialized)."""
    _materialize()
    found, more = store.entries.page(account_id, limit=1000, newest_first=False)
    assert more is None
    return found


def hold_item(store: CreditsStore, hold_id: str | None, account_id: str = ACCOUNT) -> Hold:
    """The HOLD item (once the stream is materialized)."""
    assert hold_id is not None
    _materialize()
    found = store.holds.get(account_id, hold_id)
    assert found is not None
    return found


def raw_hold_item(store: CreditsStore, hold_id: str, account_id: str = ACCOUNT) -> dict[str, Any]:
    """The HOLD item as stored, index keys included (the stream is not drained)."""
    response = store.client.get_item(
        TableName=store.table_name,
        Key={"pk": {"S": keys.holds_pk(account_id)}, "sk": {"S": hold_id}},
        ConsistentRead=True,
    )
    return from_item(response.get("Item", {}))


def usage(store: CreditsStore, account_id: str = ACCOUNT) -> DailyUsage:
    """The account's usage of the clock's day (once the stream is materialized)."""
    _materialize()
    rows = store.usage.daily(account_id, date(2000, 1, 1), date(2100, 1, 1))
    by_type: Counter[str] = Counter()
    by_endpoint: Counter[str] = Counter()
    for row in rows:
        by_type.update(row.by_type)
        by_endpoint.update(row.by_endpoint)
    return DailyUsage(
        day=START.date(),
        calls=sum(row.calls for row in rows),
        failed=sum(row.failed for row in rows),
        credits_used=sum((row.credits_used for row in rows), Decimal(0)),
        by_type=dict(by_type),
        by_endpoint=dict(by_endpoint),
    )


def assert_ledger_invariants(store: CreditsStore, account_id: str = ACCOUNT) -> None:
    """balance == sum(amounts), reserved == sum(held), available == balance - reserved, on
    the account and after every entry; a gapless sequence; total - used + adjusted ==
    balance."""
    account = stored_account(store, account_id)
    lines = entries(store, account_id)
    assert [line.sequence for line in lines] == list(range(1, len(lines) + 1))
    balance = reserved = Decimal(0)
    for line in lines:
        balance += line.amount
        reserved += line.held or 0
        assert line.balance_after == balance
        assert line.available_after == balance - reserved
    assert account.balance == balance
    assert account.reserved == reserved
    assert account.available == account.balance - account.reserved
    assert reserved == sum((held.amount for held in (account.holds or {}).values()), Decimal(0))
    assert account.version == len(lines)
    assert account.total - account.used + account.adjusted == account.balance
    assert account.available >= -account.overdraft_limit


def unchanged(before: Account, store: CreditsStore, account_id: str = ACCOUNT) -> bool:
    return stored_account(store, account_id) == before


# ---------------------------------------------------------------- reserve
def test_a_reserve_by_amount_sets_credits_aside(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = reserve(
        ledger,
        30,
        key="call-1",
        description="Outbound call",
        endpoint="/v1/calls",
        metadata={"callId": "c-1"},
    )

    assert result.hold_id is not None
    assert re.fullmatch(HOLD_ID_PATTERN, result.hold_id)
    assert result.amount == 30
    assert result.expires_at == START + timedelta(seconds=300)  # the default
    assert (result.balance_after, result.available, result.replayed) == (
        Decimal(100),
        Decimal(70),
        False,
    )
    assert result.released is None
    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal(100),
        Decimal(30),
        Decimal(70),
    )
    assert (stored.used, stored.lifetime_requests) == (Decimal(0), 0)
    assert stored.holds == {
        result.hold_id: OpenHold(a=Decimal(30), x=epoch(START) + 300, c=epoch(START))
    }
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.transaction_id, entry.idempotency_key) == (
        EntryType.HOLD,
        result.transaction_id,
        "call-1",
    )
    assert (entry.amount, entry.held, entry.balance_after, entry.available_after) == (
        Decimal(0),
        Decimal(30),
        Decimal(100),
        Decimal(70),
    )
    assert (entry.hold_id, entry.expires_at) == (result.hold_id, result.expires_at)
    assert (entry.description, entry.endpoint) == ("Outbound call", "/v1/calls")
    item = hold_item(moto_store, result.hold_id)
    assert (item.status, item.amount, item.opened_by) == (
        HoldStatus.OPEN,
        Decimal(30),
        result.transaction_id,
    )
    assert (item.created_at, item.expires_at) == (entry.created_at, result.expires_at)
    assert (item.description, item.metadata) == ("Outbound call", {"callId": "c-1"})
    assert (item.captured, item.released, item.closed_by) == (None, None, None)
    # A hold is not usage: the call counts when it is captured.
    assert usage(moto_store).calls == 0
    assert_ledger_invariants(moto_store)


def test_a_reserve_by_action_and_quantity_holds_their_price(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    result = reserve(
        ledger, action="voice_call_minute", quantity=Decimal("2.5"), expires_in=60
    )  # 3 credits a minute

    assert result.amount == Decimal("7.5")
    assert result.expires_at == START + timedelta(seconds=60)
    assert result.available == Decimal("92.5")
    entry = entries(moto_store)[-1]
    assert (entry.action, entry.quantity, entry.held) == (
        "voice_call_minute",
        Decimal("2.5"),
        Decimal("7.5"),
    )
    # Given no description, the hold is described by its action.
    assert entry.description == "voice_call_minute x 2.5"
    held = hold_item(moto_store, result.hold_id)
    assert (held.action, held.description) == ("voice_call_minute", "voice_call_minute x 2.5")
    assert_ledger_invariants(moto_store)


def test_a_reserve_without_the_funds_is_refused_with_what_is_available(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    reserve(ledger, 60, key="first")
    before = stored_account(moto_store)

    with pytest.raises(InsufficientCredits) as refused:
        reserve(ledger, "40.000001", key="second")

    assert refused.value.details == {"available": Decimal(40), "requested": Decimal("40.000001")}
    assert unchanged(before, moto_store)
    # The declined call is a (failed) call, as a declined debit is.
    assert (usage(moto_store).calls, usage(moto_store).failed) == (1, 1)
    reserve(ledger, 40, key="third")  # exactly what is available
    assert stored_account(moto_store).available == 0
    assert_ledger_invariants(moto_store)


def test_a_suspended_account_cannot_reserve(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})
    before = stored_account(moto_store)

    with pytest.raises(AccountSuspended) as refused:
        reserve(ledger, 1)

    assert refused.value.details == {"accountId": ACCOUNT, "status": "suspended"}
    assert unchanged(before, moto_store)
    assert [e.type for e in entries(moto_store)] == [EntryType.GRANT]


# ---------------------------------------------------------------- replays and conflicts
def test_each_step_replayed_with_its_key_returns_the_same_result(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    held = reserve(ledger, 20, key="r")
    held_again = reserve(ledger, 20, key="r")
    second = reserve(ledger, 10, key="r2")
    captured = capture(ledger, held.hold_id, key="c", amount=5)
    captured_again = capture(ledger, held.hold_id, key="c", amount=5)
    released = release(ledger, second.hold_id, key="x")
    released_again = release(ledger, second.hold_id, key="x")

    assert held_again == held.model_copy(update={"replayed": True})
    assert held_again.hold_id == held.hold_id
    assert captured_again == captured.model_copy(update={"replayed": True})
    assert released_again == released.model_copy(update={"replayed": True})
    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal(95),
        Decimal(0),
        Decimal(95),
    )
    assert [e.type for e in entries(moto_store)] == [
        EntryType.GRANT,
        EntryType.HOLD,
        EntryType.HOLD,
        EntryType.CAPTURE,
        EntryType.RELEASE,
    ]
    assert_ledger_invariants(moto_store)


def test_a_key_reused_with_other_parameters_is_a_conflict_and_changes_nothing(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    first = reserve(ledger, 20, key="r")
    second = reserve(ledger, 10, key="r2")
    capture(ledger, first.hold_id, key="c", amount=5)
    before = stored_account(moto_store)

    with pytest.raises(IdempotencyConflict) as reserved_again:
        reserve(ledger, 21, key="r")
    with pytest.raises(IdempotencyConflict):
        capture(ledger, first.hold_id, key="c", amount=6)  # the hold is closed meanwhile
    with pytest.raises(IdempotencyConflict):
        capture(ledger, second.hold_id, key="c")  # another hold, still open
    with pytest.raises(IdempotencyConflict):
        release(ledger, second.hold_id, key="r")  # a reserve's key

    assert reserved_again.value.details == {"idempotencyKey": "r"}
    assert unchanged(before, moto_store)
    assert_ledger_invariants(moto_store)


# ---------------------------------------------------------------- capture
def test_a_capture_of_all_of_the_hold_charges_it(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    held = reserve(ledger, 30, endpoint="/v1/calls")

    result = capture(ledger, held.hold_id)

    assert (result.amount, result.released, result.hold_id) == (
        Decimal(30),
        Decimal(0),
        held.hold_id,
    )
    assert (result.balance_after, result.available, result.replayed) == (
        Decimal(70),
        Decimal(70),
        False,
    )
    assert result.expires_at is None
    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available, stored.used) == (
        Decimal(70),
        Decimal(0),
        Decimal(70),
        Decimal(30),
    )
    assert stored.lifetime_requests == 1
    assert stored.holds == {}
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.transaction_id, entry.hold_id) == (
        EntryType.CAPTURE,
        result.transaction_id,
        held.hold_id,
    )
    assert (entry.amount, entry.held, entry.balance_after, entry.available_after) == (
        Decimal(-30),
        Decimal(-30),
        Decimal(70),
        Decimal(70),
    )
    assert entry.description == f"Capture of {held.hold_id}"
    item = hold_item(moto_store, held.hold_id)
    assert (item.status, item.amount, item.captured, item.released) == (
        HoldStatus.CAPTURED,
        Decimal(30),
        Decimal(30),
        Decimal(0),
    )
    assert (item.closed_by, item.closed_at, item.opened_by) == (
        result.transaction_id,
        entry.created_at,
        held.transaction_id,
    )
    assert (usage(moto_store).calls, usage(moto_store).credits_used) == (1, Decimal(30))
    assert_ledger_invariants(moto_store)


def test_a_capture_of_part_of_the_hold_releases_the_rest(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    held = reserve(ledger, 30)

    result = capture(ledger, held.hold_id, amount="12.5")

    assert (result.amount, result.released) == (Decimal("12.5"), Decimal("17.5"))
    assert (result.balance_after, result.available) == (Decimal("87.5"), Decimal("87.5"))
    stored = stored_account(moto_store)
    assert (stored.used, stored.lifetime_requests, stored.reserved) == (
        Decimal("12.5"),
        1,
        Decimal(0),
    )
    entry = entries(moto_store)[-1]
    assert (entry.amount, entry.held) == (Decimal("-12.5"), Decimal(-30))
    item = hold_item(moto_store, held.hold_id)
    assert (item.status, item.captured, item.released) == (
        HoldStatus.CAPTURED,
        Decimal("12.5"),
        Decimal("17.5"),
    )
    assert usage(moto_store).credits_used == Decimal("12.5")
    assert_ledger_invariants(moto_store)


def test_a_captured_call_counts_under_the_action_and_endpoint_of_its_hold(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    held = reserve(ledger, action="voice_call_minute", quantity=Decimal(5), endpoint="/v1/calls")
    _materialize()  # the HOLD item, which the capture reads them from

    capture(ledger, held.hold_id, amount=6)

    day = usage(moto_store)
    assert (day.calls, day.failed, day.credits_used) == (1, 0, Decimal(6))
    assert day.by_type == {"voice_call_minute": Decimal(6)}
    assert day.by_endpoint == {"/v1/calls": 1}
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.action, entry.endpoint) == (
        EntryType.CAPTURE,
        "voice_call_minute",
        "/v1/calls",
    )
    assert_ledger_invariants(moto_store)


def test_capturing_more_than_the_hold_holds_is_refused_and_changes_nothing(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    held = reserve(ledger, 30)
    before = stored_account(moto_store)

    with pytest.raises(ValidationFailed) as refused:
        capture(ledger, held.hold_id, amount="30.000001")

    assert refused.value.code == "VALIDATION_ERROR"
    assert refused.value.details == {"field": "amount", "holdId": held.hold_id, "held": 30}
    assert unchanged(before, moto_store)
    # Nothing was leased under the key: the corrected capture may use it.
    assert moto_store.idempotency.get(ACCOUNT, "capture-1") is None
    assert capture(ledger, held.hold_id, amount=30).balance_after == 70
    assert_ledger_invariants(moto_store)


# ---------------------------------------------------------------- holds that are not open
def test_another_accounts_hold_is_not_found(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    ledger.create_account(CreateAccountCommand(account_id=OTHER_ACCOUNT, opening_balance=10))
    theirs = reserve(ledger, 5, account_id=OTHER_ACCOUNT)
    mine, others = stored_account(moto_store), stored_account(moto_store, OTHER_ACCOUNT)

    with pytest.raises(HoldNotFound) as captured:
        capture(ledger, theirs.hold_id)
    with pytest.raises(HoldNotFound):
        release(ledger, theirs.hold_id)
    with pytest.raises(HoldNotFound):
        release(ledger, UNKNOWN_HOLD, key="release-2")

    assert captured.value.code == "HOLD_NOT_FOUND"
    assert captured.value.details == {"accountId": ACCOUNT, "holdId": theirs.hold_id}
    assert unchanged(mine, moto_store)
    assert unchanged(others, moto_store, OTHER_ACCOUNT)
    assert_ledger_invariants(moto_store)
    assert_ledger_invariants(moto_store, OTHER_ACCOUNT)


def test_a_closed_hold_the_ledger_has_not_caught_up_with_is_busy_not_unknown(
    moto_store: CreditsStore, account: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stream behind (nothing materializes here), a hold the account item no longer
    has may be one closed a moment ago: "retry" (503), never a wrong HOLD_NOT_FOUND."""
    monkeypatch.setattr(ledger_holds, "KNOWN_HOLD_WAIT_SECONDS", 0.05)
    behind = wiring.build_ledger(moto_store, wiring.prices(), clock=clock, sleep=lambda _: None)
    held = reserve(behind, 10, key="r-behind")
    release(behind, held.hold_id, key="rel-behind")

    with pytest.raises(ServiceBusy):
        capture(behind, held.hold_id, key="cap-behind")


def test_a_closed_hold_is_not_open_and_says_how_it_closed(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    released = reserve(ledger, 10, key="r1")
    captured = reserve(ledger, 10, key="r2")
    release(ledger, released.hold_id)
    capture(ledger, captured.hold_id)
    before = stored_account(moto_store)

    with pytest.raises(HoldNotOpen) as capture_after_release:
        capture(ledger, released.hold_id, key="late-capture")
    with pytest.raises(HoldNotOpen) as release_after_capture:
        release(ledger, captured.hold_id, key="late-release")
    with pytest.raises(HoldNotOpen) as capture_again:
        capture(ledger, captured.hold_id, key="another-capture")

    assert capture_after_release.value.code == "HOLD_NOT_OPEN"
    assert capture_after_release.value.details == {
        "holdId": released.hold_id,
        "status": "released",
    }
    assert release_after_capture.value.details == {
        "holdId": captured.hold_id,
        "status": "captured",
    }
    assert capture_again.value.details == {"holdId": captured.hold_id, "status": "captured"}
    assert unchanged(before, moto_store)
    assert_ledger_invariants(moto_store)


def test_a_capture_after_the_expiry_is_refused_before_any_sweep(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    due = reserve(ledger, 10, key="r1", expires_in=60)
    live = reserve(ledger, 10, key="r2", expires_in=61)
    clock.now = START + timedelta(seconds=60)  # exactly the first one's expiry
    before = stored_account(moto_store)

    with pytest.raises(HoldNotOpen) as refused:
        capture(ledger, due.hold_id)

    assert refused.value.details == {"holdId": due.hold_id, "status": "expired"}
    assert unchanged(before, moto_store)
    assert moto_store.idempotency.get(ACCOUNT, "capture-1") is None
    # A second before its expiry a hold is still captured.
    assert capture(ledger, live.hold_id, key="capture-2").amount == 10
    assert_ledger_invariants(moto_store)


def test_a_release_after_the_expiry_before_the_sweep_gives_the_credits_back(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    held = reserve(ledger, 10, expires_in=60)
    clock.now = START + timedelta(minutes=5)

    result = release(ledger, held.hold_id)

    assert (result.amount, result.released, result.available) == (
        Decimal(10),
        Decimal(10),
        Decimal(100),
    )
    assert stored_account(moto_store).reserved == 0
    item = hold_item(moto_store, held.hold_id)
    assert (item.status, item.released) == (HoldStatus.RELEASED, Decimal(10))
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.reason, entry.amount, entry.held) == (
        EntryType.RELEASE,
        ReleaseReason.RELEASED,
        Decimal(0),
        Decimal(-10),
    )
    # The sweep has nothing left to expire.
    assert ledger.holds.sweep() == SweepReport(due=0, expired=0, already_closed=0, failed=0)
    assert_ledger_invariants(moto_store)


# ---------------------------------------------------------------- the cap on open holds
def test_the_cap_on_open_holds_refuses_one_more_until_one_closes(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    holds = [reserve(ledger, 1, key=f"r{n}") for n in range(MAX_OPEN_HOLDS)]
    before = stored_account(moto_store)

    with pytest.raises(TooManyOpenHolds) as refused:
        reserve(ledger, 1, key="one-more")

    assert refused.value.code == "TOO_MANY_OPEN_HOLDS"
    assert refused.value.details == {"accountId": ACCOUNT, "limit": MAX_OPEN_HOLDS}
    assert unchanged(before, moto_store)
    assert len(before.holds or {}) == MAX_OPEN_HOLDS
    # The refused reserve left its key free: once a hold closes, it reserves.
    release(ledger, holds[0].hold_id)
    again = reserve(ledger, 1, key="one-more")
    assert (again.replayed, again.available) == (False, Decimal(50))
    assert len(stored_account(moto_store).holds or {}) == MAX_OPEN_HOLDS
    assert_ledger_invariants(moto_store)


def test_a_suspended_account_still_captures_and_releases_its_holds(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    captured = reserve(ledger, 10, key="r1")
    released = reserve(ledger, 10, key="r2")
    moto_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})

    assert capture(ledger, captured.hold_id, amount=4).released == 6
    assert release(ledger, released.hold_id).released == 10

    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal(96),
        Decimal(0),
        Decimal(96),
    )
    assert_ledger_invariants(moto_store)


# ---------------------------------------------------------------- expiry
def test_a_sweep_expires_due_holds_once_and_leaves_the_others(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    due = reserve(ledger, 10, key="r1", expires_in=60)
    later = reserve(ledger, 20, key="r2", expires_in=600)
    _materialize()  # the HOLD items that list them in the expiry index
    clock.now = START + timedelta(seconds=60)

    report = ledger.holds.sweep()

    assert report == SweepReport(due=1, expired=1, already_closed=0, failed=0)
    assert report.as_dict() == {"due": 1, "expired": 1, "alreadyClosed": 0, "failed": 0}
    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal(100),
        Decimal(20),
        Decimal(80),
    )
    assert set(stored.holds or {}) == {later.hold_id}
    assert stored.last_op is not None
    assert (stored.last_op.key, stored.last_op.reason) == (
        expiry_key(str(due.hold_id)),
        ReleaseReason.EXPIRED,
    )
    # Swept again before the expiry reached the HOLD item: the hold is not on the account
    # item any more, so nothing is expired twice.
    assert ledger.holds.sweep() == SweepReport(due=1, expired=0, already_closed=1, failed=0)
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.reason, entry.hold_id) == (
        EntryType.RELEASE,
        ReleaseReason.EXPIRED,
        due.hold_id,
    )
    assert (entry.amount, entry.held, entry.available_after) == (
        Decimal(0),
        Decimal(-10),
        Decimal(80),
    )
    assert (entry.description, entry.idempotency_key) == (
        EXPIRED_DESCRIPTION,
        f"expire:{due.hold_id}",
    )
    item = hold_item(moto_store, due.hold_id)
    assert (item.status, item.captured, item.released, item.closed_by) == (
        HoldStatus.EXPIRED,
        Decimal(0),
        Decimal(10),
        entry.transaction_id,
    )
    assert hold_item(moto_store, later.hold_id).status is HoldStatus.OPEN
    # Materialized, the expired hold is out of the index: the next sweep finds nothing due.
    assert ledger.holds.sweep() == SweepReport(due=0, expired=0, already_closed=0, failed=0)
    assert [e.type for e in entries(moto_store)].count(EntryType.RELEASE) == 1
    assert usage(moto_store).calls == 0
    assert_ledger_invariants(moto_store)


def test_a_hold_expires_at_its_expiry_not_a_second_before(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    held = reserve(ledger, 10, expires_in=60)
    _materialize()

    clock.now = START + timedelta(seconds=59)
    assert ledger.holds.sweep().due == 0
    with pytest.raises(HoldNotOpen) as early:
        ledger.holds.expire(ACCOUNT, str(held.hold_id))
    assert early.value.details == {"holdId": held.hold_id, "status": "open"}
    assert stored_account(moto_store).reserved == 10

    clock.now = START + timedelta(seconds=60)
    expired = ledger.holds.expire(ACCOUNT, str(held.hold_id))
    assert expired is not None
    assert (expired.amount, expired.released, expired.available) == (
        Decimal(10),
        Decimal(10),
        Decimal(100),
    )
    # Expiring it again finds no such hold on the account item: nothing is given back twice.
    assert ledger.holds.expire(ACCOUNT, str(held.hold_id)) is None
    assert stored_account(moto_store).available == 100
    assert_ledger_invariants(moto_store)


def test_a_sweep_unlists_a_due_hold_that_closed_while_its_close_is_on_its_way(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    held = reserve(ledger, 10, expires_in=60)
    _materialize()  # the HOLD item, open and in the expiry index
    result = release(ledger, held.hold_id)  # not materialized yet
    clock.now = START + timedelta(minutes=2)
    assert raw_hold_item(moto_store, str(held.hold_id))["status"] == "open"

    report = ledger.holds.sweep()

    assert report == SweepReport(due=1, expired=0, already_closed=1, failed=0)
    item = raw_hold_item(moto_store, str(held.hold_id))
    assert "expiryShard" not in item
    assert "expiryAt" not in item
    assert ledger.holds.sweep().due == 0
    assert stored_account(moto_store).available == 100
    closed = hold_item(moto_store, held.hold_id)
    assert (closed.status, closed.closed_by) == (HoldStatus.RELEASED, result.transaction_id)
    assert_ledger_invariants(moto_store)


def test_the_reconciler_expires_an_overdue_hold_whose_hold_item_was_never_written(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    """The sweep finds holds through their HOLD items; a hold whose stream record was lost
    is still on the account item, and the reconciler expires it (the clock of this test's
    ledger is in the past: the hold is long overdue for the reconciler's)."""
    held = reserve(ledger, 10, expires_in=60)
    kept = reserve(ledger, 5, key="hold-2", expires_in=60)
    _materialize()
    moto_store.client.delete_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.holds_pk(ACCOUNT)}, "sk": {"S": str(held.hold_id)}},
    )
    capture(ledger, kept.hold_id)
    _materialize()
    assert ledger.holds.sweep().due == 0  # the ledger's clock: not due yet, nor listed

    report = wiring.reconciler().account(ACCOUNT)

    assert report.expired_holds == [held.hold_id]
    assert report.as_dict()["expiredHolds"] == [held.hold_id]
    assert report.consistent
    stored = stored_account(moto_store)
    assert (stored.reserved, stored.available) == (Decimal(0), Decimal(95))
    assert stored.holds == {}
    entry = entries(moto_store)[-1]
    assert (entry.type, entry.reason, entry.hold_id) == (
        EntryType.RELEASE,
        ReleaseReason.EXPIRED,
        held.hold_id,
    )
    assert hold_item(moto_store, held.hold_id).status is HoldStatus.EXPIRED
    assert wiring.reconciler().account(ACCOUNT).expired_holds == []
    assert_ledger_invariants(moto_store)


# ---------------------------------------------------------------- items from before holds
@pytest.fixture
def size_of_a_missing_attribute_is_false(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5 raises ValueError for `size(x)` of a missing attribute in a condition, where
    DynamoDB (and DynamoDB Local) evaluate the comparison as false and refuse the update:
    the refusal the reserve of an item without a `holds` map relies on."""
    original = FuncSize.expr

    def size(self: FuncSize, item: Any) -> int | None:
        if self.attr.get_type(item) is None:
            return None  # every comparison with it is false, as in DynamoDB
        return original(self, item)

    monkeypatch.setattr(FuncSize, "expr", size)


@pytest.mark.usefixtures("size_of_a_missing_attribute_is_false")
def test_an_account_item_written_before_holds_gets_its_map_on_the_first_reserve(
    ledger: Ledger, moto_store: CreditsStore, account: str
) -> None:
    moto_store.client.update_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.account_pk(ACCOUNT)}, "sk": {"S": keys.ACCOUNT_SK}},
        UpdateExpression="REMOVE holds",
    )
    assert stored_account(moto_store).holds is None
    with pytest.raises(HoldNotFound):
        release(ledger, UNKNOWN_HOLD)  # no map: no hold

    held = reserve(ledger, 10)

    stored = stored_account(moto_store)
    assert stored.holds is not None
    assert set(stored.holds) == {held.hold_id}
    assert (stored.reserved, stored.available) == (Decimal(10), Decimal(90))
    assert capture(ledger, held.hold_id).balance_after == 90
    assert stored_account(moto_store).holds == {}
    assert_ledger_invariants(moto_store)


def test_mixed_hold_steps_keep_every_ledger_invariant(
    ledger: Ledger, moto_store: CreditsStore, account: str, clock: Clock
) -> None:
    first = reserve(ledger, "12.345678", key="r1")
    second = reserve(ledger, action="sms", quantity=Decimal(3), key="r2", expires_in=30)
    third = reserve(ledger, "0.000001", key="r3")
    capture(ledger, first.hold_id, amount="0.345678")
    _materialize()
    clock.now = START + timedelta(seconds=30)
    ledger.holds.sweep()
    release(ledger, third.hold_id)
    fourth = reserve(ledger, 50, key="r4")

    stored = stored_account(moto_store)
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal("99.654322"),
        Decimal(50),
        Decimal("49.654322"),
    )
    assert set(stored.holds or {}) == {fourth.hold_id}
    assert hold_item(moto_store, second.hold_id).status is HoldStatus.EXPIRED
    assert_ledger_invariants(moto_store)
