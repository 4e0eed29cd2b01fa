"""The burn order of credit lots on DynamoDB Local (hypothesis): random lots (priority 0-100,
optional expiry, ages) and random debits, clock advances that expire lots mid-sequence and
sweeps, each step checked against a plain model of the lots (`conftest.burn_model`): every
debit takes from the lots exactly in order, across lots when one is not enough, to the
smallest unit; expired lots never pay; the lots sum to the balance after every step."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, CreditCommand, DebitCommand
from serverless_credits.domain.errors import InsufficientCredits, TooManyActiveLots
from serverless_credits.domain.lots import MAX_ACTIVE_LOTS
from serverless_credits.domain.models import EntryType
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import (
    LedgerAudit,
    LotReplay,
    LotTerms,
    assert_lots_sum_to_the_balance,
    burn_model,
)
from tests.support import Clock

pytestmark = pytest.mark.integration

_examples = itertools.count()
# Each example runs on a clock that starts a year before the previous one's: a sweep (it
# reads the whole table's expiry index) never finds an earlier example's lots due.
LATEST_START = datetime(2030, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=366)
TICK = timedelta(milliseconds=1)  # between operations: no two lots granted the same ms

amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(50), places=6)


@dataclass(frozen=True)
class Grant:
    amount: Decimal
    priority: int
    expires_in: timedelta | None
    topup: bool


@dataclass(frozen=True)
class Debit:
    amount: Decimal


@dataclass(frozen=True)
class Advance:
    by: timedelta


@dataclass(frozen=True)
class Sweep:
    pass


Step = Grant | Debit | Advance | Sweep

grants = st.builds(
    Grant,
    amount=amounts,
    # Mostly a few common priorities: ties are where expiry and age decide.
    priority=st.sampled_from([50, 60, 60, 100]) | st.integers(min_value=0, max_value=100),
    # At least MIN_LOT_LIFETIME (5 min) ahead; a few common values make ties likely.
    expires_in=st.none()
    | st.sampled_from([timedelta(minutes=6), timedelta(minutes=7), timedelta(hours=1)])
    | st.integers(min_value=6 * 60, max_value=3 * 86_400).map(lambda s: timedelta(seconds=s)),
    topup=st.booleans(),
)
debits = st.builds(
    Debit,
    amount=amounts | st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(3), places=6),
)
steps = st.one_of(
    grants,
    debits,
    debits,  # weighted: the burn order is what is tested
    st.builds(
        Advance,
        by=st.sampled_from([timedelta(seconds=1), timedelta(minutes=6), timedelta(hours=2)])
        | st.integers(min_value=1, max_value=2 * 86_400).map(lambda s: timedelta(seconds=s)),
    ),
    st.just(Sweep()),
)


@dataclass
class LotsModel:
    """The account's lots as they should be."""

    clock: Clock
    terms: dict[str, LotTerms] = field(default_factory=dict)
    lots: dict[str, Decimal] = field(default_factory=dict)

    def live(self) -> Decimal:
        now = self.clock.now
        return sum(
            (left for lot, left in self.lots.items() if not self.terms[lot].expired(now)),
            Decimal(0),
        )

    def expired(self) -> dict[str, Decimal]:
        return {
            lot: left for lot, left in self.lots.items() if self.terms[lot].expired(self.clock.now)
        }

    def take(self, allocation: dict[str, Decimal]) -> None:
        for lot, moved in allocation.items():
            self.lots[lot] += moved
        self.lots = {lot: left for lot, left in self.lots.items() if left}


class Runner:
    def __init__(
        self, ledger: Ledger, store: CreditsStore, audit: LedgerAudit, account_id: str
    ) -> None:
        self.ledger, self.store, self.audit, self.account_id = ledger, store, audit, account_id
        self.clock: Clock = ledger.lots._clock  # type: ignore[assignment]
        self.model = LotsModel(self.clock)
        self.keys = itertools.count()
        self.expired_entries = 0

    def run(self, step: Step) -> None:
        if isinstance(step, Grant):
            self.grant(step)
        elif isinstance(step, Debit):
            self.debit(step)
        elif isinstance(step, Advance):
            self.clock.now += step.by
        else:
            self.sweep()
        self.clock.now += TICK
        account = self.store.accounts.get(self.account_id, consistent=True)
        assert account is not None
        assert_lots_sum_to_the_balance(account)
        assert (account.lots or {}) == self.model.lots

    def grant(self, step: Grant) -> None:
        now = self.clock.now
        expires_at = (
            None if step.expires_in is None else (now + step.expires_in).replace(microsecond=0)
        )
        if expires_at is not None and expires_at < now + timedelta(minutes=5):
            expires_at += timedelta(seconds=1)
        command = CreditCommand(
            account_id=self.account_id,
            idempotency_key=f"k{next(self.keys)}",
            amount=step.amount,
            priority=step.priority,
            expires_at=expires_at,
        )
        if len(self.model.lots) >= MAX_ACTIVE_LOTS:  # pragma: no cover - long sequences only
            with pytest.raises(TooManyActiveLots):
                self.ledger.grant(command)
            return
        result = self.ledger.top_up(command) if step.topup else self.ledger.grant(command)
        assert result.lots is not None
        [(lot, amount)] = result.lots.items()
        assert amount == step.amount
        self.model.terms[lot] = LotTerms(step.priority, expires_at, now)
        self.model.lots[lot] = step.amount
        event("grant")

    def debit(self, step: Debit) -> None:
        command = DebitCommand(
            account_id=self.account_id, idempotency_key=f"k{next(self.keys)}", amount=step.amount
        )
        if step.amount > self.model.live():
            with pytest.raises(InsufficientCredits):
                self.ledger.debit(command)
            event("debit refused")
            return
        expected = burn_model(self.model.lots, step.amount, self.model.terms, self.clock.now)
        result = self.ledger.debit(command)
        assert result.lots == expected
        assert sum(expected.values(), Decimal(0)) == -step.amount
        self.model.take(expected)
        event(f"debit across {len(expected)} lot(s)")
        if self.model.expired():
            event("debit with expired credit on the item")

    def sweep(self) -> None:
        expired = self.model.expired()
        if expired:  # their LOT items (in the expiry index) come from the stream
            self.audit.materialize()
        report = self.ledger.lots.sweep()
        assert (report.expired, report.failed, report.pinned) == (len(expired), 0, 0), report
        for lot in expired:
            del self.model.lots[lot]
        self.expired_entries += len(expired)
        event(f"sweep of {len(expired)} lot(s)")


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    opening=st.lists(grants, min_size=1, max_size=8),
    sequence=st.lists(steps, min_size=4, max_size=22),
)
def test_debits_burn_lots_in_order_and_never_spend_expired_credit(
    local_store: CreditsStore, audit: LedgerAudit, opening: list[Grant], sequence: list[Step]
) -> None:
    number = next(_examples)
    account_id = f"acct_burn_{number}"
    clock = Clock(LATEST_START - number * YEAR)
    ledger = wiring.build_ledger(local_store, wiring.prices(), clock=clock)
    ledger.create_account(CreateAccountCommand(account_id=account_id))
    runner = Runner(ledger, local_store, audit, account_id)

    for step in [*opening, *sequence]:
        runner.run(step)

    # The ledger says the same: each debit's entry, replayed in sequence order.
    snapshot = audit.check(account_id)
    replay = LotReplay(runner.model.terms).run(snapshot.entries)
    assert replay.violations == []
    assert replay.lots == runner.model.lots
    expiries = snapshot.of_type(EntryType.EXPIRY)
    assert len(expiries) == runner.expired_entries
    assert all(e.lots == {e.lot_id: e.amount} for e in expiries)
