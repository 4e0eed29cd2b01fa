"""A hypothesis state machine of holds on DynamoDB Local: random reserves, captures (all,
part, or more than held), releases, expiries (one hold, or a sweep after the clock moved),
debits, top-ups and suspensions, checked against a plain Python model of the balance, the
open holds and what became of each closed one. Each answer is checked as it comes, typed
refusals exactly where the model refuses; after each step the account item's balance,
reserved, available and open holds equal the model's; once the stream is materialized,
the ledger's rules of holds (`audit.check_holds`) and each hold's fate agree with it.

Every machine runs on a clock of its own, a day earlier than the previous machine's (it
moves at most a few hours: steps x the longest advance, and holds last ten minutes): the
expiry index is shared by the whole table, and a sweep must never find another machine's
holds due.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import (
    AccountSuspended,
    CreditsError,
    HoldNotFound,
    HoldNotOpen,
    InsufficientCredits,
    TooManyOpenHolds,
    ValidationFailed,
)
from serverless_credits.domain.holds import MAX_OPEN_HOLDS, epoch
from serverless_credits.domain.models import (
    AccountStatus,
    EntryType,
    HoldStatus,
    OperationResult,
    utc_now,
)
from serverless_credits.domain.money import QUANTUM
from serverless_credits.ledger.holds import SweepReport
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit
from tests.support import Clock

pytestmark = pytest.mark.integration

_machines = itertools.count()
START = utc_now()
NEVER_HELD = "hold_0000000000000000"  # a well-formed id no account ever had
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(25), places=2) | st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal(1), places=6
)
picks = st.integers(min_value=0, max_value=100)


@dataclass
class ModelHold:
    amount: Decimal
    expires: int  # epoch seconds
    status: HoldStatus = HoldStatus.OPEN
    captured: Decimal = Decimal(0)


@dataclass
class Model:
    balance: Decimal
    overdraft: Decimal
    used: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    requests: int = 0
    active: bool = True
    holds: dict[str, ModelHold] = field(default_factory=dict)
    applied: int = 0  # ledger entries written by the machine's steps

    def open(self) -> dict[str, ModelHold]:
        return {h: held for h, held in self.holds.items() if held.status is HoldStatus.OPEN}

    @property
    def reserved(self) -> Decimal:
        return sum((held.amount for held in self.open().values()), Decimal(0))

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    def spendable(self, amount: Decimal) -> bool:
        return self.available + self.overdraft >= amount


@dataclass(frozen=True)
class Table:
    """What every machine of one test works on (hypothesis builds the machines)."""

    store: CreditsStore
    audit: LedgerAudit
    materialize: Callable[[], int]


class HoldsMachine(RuleBasedStateMachine):
    table: ClassVar[Table]

    def __init__(self) -> None:
        super().__init__()
        number = next(_machines)
        self.account_id = f"acct_holds_model_{number}"
        self.clock = Clock(START - timedelta(days=number + 1))
        self.fresh = itertools.count()
        store = self.table.store
        # Two function instances on one clock, taking turns.
        self.ledgers = [
            wiring.build_ledger(
                CreditsStore(store.client, store.table_name),
                PriceCatalog(store.catalog, 60),
                get_settings(),
                clock=self.clock,
            )
            for _ in range(2)
        ]
        self.turn = itertools.cycle(self.ledgers)
        self.model = Model(balance=Decimal(0), overdraft=Decimal(0))
        self.done: list[tuple[Callable[[Ledger], OperationResult], OperationResult]] = []

    @initialize(
        opening=st.decimals(min_value=Decimal(0), max_value=Decimal(40), places=2),
        overdraft=st.sampled_from([Decimal(0), Decimal(0), Decimal("7.5")]),
        first_holds=st.lists(amounts, max_size=3),
    )
    def open_account(
        self, opening: Decimal, overdraft: Decimal, first_holds: list[Decimal]
    ) -> None:
        """A new account, and a few holds to start with (so that the steps find some)."""
        self.ledgers[0].create_account(
            CreateAccountCommand(
                account_id=self.account_id, opening_balance=opening, overdraft_limit=overdraft
            )
        )
        self.model = Model(balance=opening, overdraft=overdraft, total=opening)
        for amount in first_holds:
            self.reserve(amount, 60)

    # ------------------------------------------------------------ helpers
    def key(self) -> str:
        return f"k{next(self.fresh)}"

    @property
    def now(self) -> int:
        return epoch(self.clock.now)

    def pick(self, pick: int) -> str:
        """Mostly an open hold; else any of the machine's holds, or now and then one never
        held."""
        open_ = sorted(self.model.open())
        known = sorted(self.model.holds)
        if pick % 10 == 0:
            return NEVER_HELD
        if pick % 3 and open_:
            return open_[pick % len(open_)]
        return known[pick % len(known)]

    def refused(
        self, expected: type[CreditsError], call: Callable[[Ledger], Any], **details: Any
    ) -> CreditsError:
        event(f"refused: {expected.__name__}")
        with pytest.raises(CreditsError) as refused:
            call(next(self.turn))
        assert type(refused.value) is expected, refused.value
        for name, value in details.items():
            assert (refused.value.details or {})[name] == value, refused.value.details
        return refused.value

    def applied(self, what: str, call: Callable[[Ledger], OperationResult]) -> OperationResult:
        event(f"applied: {what}")
        result = call(next(self.turn))
        assert result.replayed is False
        self.done.append((call, result))
        self.model.applied += 1
        return result

    def closing_refusal(self, hold_id: str, call: Callable[[Ledger], Any]) -> bool:
        """Refuse a capture or release of a hold that is not open (True when it was)."""
        held = self.model.holds.get(hold_id)
        if held is None:
            self.refused(HoldNotFound, call)
            return True
        if held.status is not HoldStatus.OPEN:
            self.refused(HoldNotOpen, call, status=held.status.value)
            return True
        return False

    # ------------------------------------------------------------ rules
    @rule(amount=amounts, seconds=st.sampled_from([5, 60, 600]))
    def reserve(self, amount: Decimal, seconds: int) -> None:
        model = self.model
        command = ReserveCommand(
            account_id=self.account_id,
            idempotency_key=self.key(),
            amount=amount,
            expires_in=seconds,
        )

        def call(ledger: Ledger) -> OperationResult:
            return ledger.holds.reserve(command)

        if len(model.open()) >= MAX_OPEN_HOLDS:
            self.refused(TooManyOpenHolds, call)
        elif not model.active:
            self.refused(AccountSuspended, call)
        elif not model.spendable(amount):
            refusal = self.refused(InsufficientCredits, call)
            assert isinstance(refusal, InsufficientCredits)
            assert refusal.available == model.available
        else:
            result = self.applied("reserve", call)
            expires = self.clock.now.replace(microsecond=0) + timedelta(seconds=seconds)
            assert result.hold_id is not None
            assert result.hold_id not in model.holds
            assert (result.amount, result.expires_at) == (amount, expires)
            model.holds[result.hold_id] = ModelHold(amount, epoch(expires))
            assert result.available == model.available
            assert result.balance_after == model.balance

    @precondition(lambda self: self.model.holds)
    @rule(pick=picks, percent=st.none() | st.integers(min_value=1, max_value=120))
    def capture(self, pick: int, percent: int | None) -> None:
        model, hold_id = self.model, self.pick(pick)
        held = model.holds.get(hold_id)
        amount = None
        if percent is not None and held is not None:
            share = (held.amount * percent / 100).quantize(QUANTUM, rounding=ROUND_DOWN)
            amount = max(share, QUANTUM)
        command = CaptureCommand(
            account_id=self.account_id,
            idempotency_key=self.key(),
            hold_id=hold_id,
            amount=amount,
        )

        def call(ledger: Ledger) -> OperationResult:
            return ledger.holds.capture(command)

        self.table.materialize()  # a closed hold is known from its HOLD item
        if self.closing_refusal(hold_id, call):
            return
        assert held is not None
        if held.expires <= self.now:
            self.refused(HoldNotOpen, call, status=HoldStatus.EXPIRED.value)
            return
        taken = held.amount if amount is None else amount
        if taken > held.amount:
            self.refused(ValidationFailed, call)
            return
        result = self.applied("capture", call)
        model.balance -= taken
        model.used += taken
        model.requests += 1
        held.status, held.captured = HoldStatus.CAPTURED, taken
        assert (result.hold_id, result.amount, result.released) == (
            hold_id,
            taken,
            held.amount - taken,
        )
        assert (result.balance_after, result.available) == (model.balance, model.available)

    @precondition(lambda self: self.model.holds)
    @rule(pick=picks)
    def release(self, pick: int) -> None:
        """A release gives an open hold back even past its expiry (not swept yet)."""
        model, hold_id = self.model, self.pick(pick)
        command = ReleaseCommand(
            account_id=self.account_id, idempotency_key=self.key(), hold_id=hold_id
        )

        def call(ledger: Ledger) -> OperationResult:
            return ledger.holds.release(command)

        self.table.materialize()
        if self.closing_refusal(hold_id, call):
            return
        held = model.holds[hold_id]
        result = self.applied("release", call)
        held.status = HoldStatus.RELEASED
        assert (result.hold_id, result.amount, result.released) == (
            hold_id,
            held.amount,
            held.amount,
        )
        assert (result.balance_after, result.available) == (model.balance, model.available)

    @precondition(lambda self: self.model.holds)
    @rule(pick=picks)
    def expire(self, pick: int) -> None:
        """One hold's expiry (the reconciler's): nothing for a hold not open, refused for
        one not due."""
        hold_id = self.pick(pick)
        held = self.model.holds.get(hold_id)
        if held is None or held.status is not HoldStatus.OPEN:
            event("expire: nothing")
            assert next(self.turn).holds.expire(self.account_id, hold_id) is None
        elif held.expires > self.now:
            self.refused(
                HoldNotOpen,
                lambda ledger: ledger.holds.expire(self.account_id, hold_id),
                status=HoldStatus.OPEN.value,
            )
        else:
            event("applied: expire")
            result = next(self.turn).holds.expire(self.account_id, hold_id)
            assert result is not None
            assert result.replayed is False
            self.model.applied += 1
            held.status = HoldStatus.EXPIRED
            assert (result.amount, result.released) == (held.amount, held.amount)
            assert result.available == self.model.available

    @rule(seconds=st.sampled_from([1, 4, 30, 61, 400, 700]), then_sweep=st.booleans())
    def advance(self, seconds: int, then_sweep: bool) -> None:
        """Time passes; perhaps the ExpirerFunction runs (or a capture or release comes
        first to a hold past its expiry)."""
        self.clock.now += timedelta(seconds=seconds)
        if then_sweep:
            self.sweep()

    @rule()
    def sweep(self) -> None:
        """The ExpirerFunction: every open hold past its expiry, and no other."""
        self.table.materialize()  # the index follows the stream
        due = [held for held in self.model.open().values() if held.expires <= self.now]
        report = next(self.turn).holds.sweep()
        assert report == SweepReport(due=len(due), expired=len(due), already_closed=0, failed=0)
        event(f"sweep: {'some' if due else 'none'} expired")
        for held in due:
            held.status = HoldStatus.EXPIRED
        self.model.applied += len(due)

    @rule(amount=amounts)
    def debit(self, amount: Decimal) -> None:
        model = self.model
        command = DebitCommand(
            account_id=self.account_id, idempotency_key=self.key(), amount=amount
        )

        def call(ledger: Ledger) -> OperationResult:
            return ledger.debit(command)

        if not model.active:
            self.refused(AccountSuspended, call)
        elif not model.spendable(amount):
            refusal = self.refused(InsufficientCredits, call)
            assert isinstance(refusal, InsufficientCredits)
            assert refusal.available == model.available
        else:
            result = self.applied("debit", call)
            model.balance -= amount
            model.used += amount
            model.requests += 1
            assert (result.balance_after, result.available) == (model.balance, model.available)

    @rule(amount=amounts)
    def top_up(self, amount: Decimal) -> None:
        command = CreditCommand(
            account_id=self.account_id, idempotency_key=self.key(), amount=amount
        )
        result = self.applied("top-up", lambda ledger: ledger.top_up(command))
        self.model.balance += amount
        self.model.total += amount
        assert (result.balance_after, result.available) == (
            self.model.balance,
            self.model.available,
        )

    @rule()
    def suspend_or_reactivate(self) -> None:
        """Reserves and debits need an active account; captures and releases do not."""
        self.model.active = not self.model.active
        status = AccountStatus.ACTIVE if self.model.active else AccountStatus.SUSPENDED
        self.table.store.accounts.update_settings(self.account_id, {"status": status})

    @precondition(lambda self: self.done)
    @rule(pick=picks)
    def retry(self, pick: int) -> None:
        """The very same request again (a client retrying), whatever happened since: the
        answer it was given, and nothing moves."""
        call, result = self.done[pick % len(self.done)]
        event("replayed")
        assert call(next(self.turn)) == result.model_copy(update={"replayed": True})

    # ------------------------------------------------------------ the account agrees
    @invariant()
    def the_account_item_is_the_model(self) -> None:
        account = self.table.store.accounts.get(self.account_id, consistent=True)
        if account is None:  # before `open_account`
            return
        model = self.model
        assert (account.balance, account.reserved, account.available) == (
            model.balance,
            model.reserved,
            model.available,
        )
        assert {h: held.amount for h, held in (account.holds or {}).items()} == {
            h: held.amount for h, held in model.open().items()
        }
        assert {h: held.expires_at for h, held in (account.holds or {}).items()} == {
            h: held.expires for h, held in model.open().items()
        }
        assert (account.used, account.total, account.lifetime_requests) == (
            model.used,
            model.total,
            model.requests,
        )

    # ------------------------------------------------------------ the ledger agrees
    def teardown(self) -> None:
        model = self.model
        ledger_holds = self.table.audit.check_holds(self.account_id)
        snapshot = ledger_holds.snapshot
        others = [e for e in snapshot.entries if e.idempotency_key != "opening-balance"]
        assert len(others) == model.applied
        assert set(ledger_holds.opened) == set(model.holds)
        for hold_id, held in model.holds.items():
            assert ledger_holds.status(hold_id) is held.status, hold_id
            assert ledger_holds.opened[hold_id].held == held.amount
            closing = ledger_holds.closed.get(hold_id)
            if closing is not None:
                assert -closing.amount == held.captured
        assert sum(-e.amount for e in snapshot.of_type(EntryType.CAPTURE)) == sum(
            held.captured for held in model.holds.values()
        )


def test_random_hold_steps_match_the_model(
    local_store: CreditsStore, audit: LedgerAudit, local_materialize: Callable[[], int]
) -> None:
    HoldsMachine.table = Table(local_store, audit, local_materialize)
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        HoldsMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
