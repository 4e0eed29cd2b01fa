"""A hypothesis state machine on DynamoDB Local: random debits, top-ups, grants, adjustments
and refunds, with idempotency keys drawn from a small pool so that they repeat (with the
same parameters: a replay; with others: a conflict), checked against a plain Python model of
balance, used, total, adjusted and what each debit can still refund. Every answer is checked as it
comes; once the stream is materialized, the ledger rules (`audit.check`), the account's
figures, the entries and the daily usage must all agree with the model."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import (
    CreditsError,
    IdempotencyConflict,
    InsufficientCredits,
    RefundNotAllowed,
)
from serverless_credits.domain.models import EntryType, OperationResult
from serverless_credits.domain.money import QUANTUM
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit

pytestmark = pytest.mark.integration

_accounts = itertools.count()
KEYS = [f"k{n}" for n in range(4)]  # a small pool: keys repeat often
keys = st.none() | st.sampled_from(KEYS)  # None: a fresh key
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(25), places=2) | st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal(1), places=6
)


@dataclass
class Model:
    balance: Decimal
    overdraft: Decimal
    # One definition of use: debits net of refunds, the same in the account's `used` and
    # in the daily usage's credits; adjustments are `adjusted`, never use.
    used: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    adjusted: Decimal = Decimal(0)
    refundable: dict[str, Decimal] = field(default_factory=dict)  # debit id -> what remains
    by_key: dict[str, tuple[Any, OperationResult]] = field(default_factory=dict)
    applied: list[OperationResult] = field(default_factory=list)
    calls: int = 0  # debits attempted (charged or declined): the usage's calls
    declined: int = 0

    def can_spend(self, amount: Decimal) -> bool:
        return self.balance + self.overdraft >= amount


@dataclass(frozen=True)
class Table:
    """What every machine of one test works on (hypothesis builds the machines)."""

    store: CreditsStore
    audit: LedgerAudit
    materialize: Callable[[], int]


class LedgerMachine(RuleBasedStateMachine):
    table: ClassVar[Table]

    def __init__(self) -> None:
        super().__init__()
        self.account_id = f"acct_model_{next(_accounts)}"
        self.fresh = itertools.count()
        store = self.table.store
        self.ledgers = [
            wiring.ledger(),
            wiring.build_ledger(store, PriceCatalog(store.catalog, 60)),
        ]
        self.turn = itertools.cycle(self.ledgers)  # requests alternate between two instances
        self.model = Model(balance=Decimal(0), overdraft=Decimal(0))
        self.opening = Decimal(0)
        self.repeats: dict[str, tuple[Any, Callable[[Ledger], OperationResult]]] = {}

    @initialize(
        opening=st.decimals(min_value=Decimal(0), max_value=Decimal(40), places=2),
        overdraft=st.sampled_from([Decimal(0), Decimal(0), Decimal("7.5")]),
    )
    def open_account(self, opening: Decimal, overdraft: Decimal) -> None:
        self.ledgers[0].create_account(
            CreateAccountCommand(
                account_id=self.account_id, opening_balance=opening, overdraft_limit=overdraft
            )
        )
        self.model = Model(balance=opening, overdraft=overdraft, total=opening)
        self.opening = opening

    # ------------------------------------------------------------ one request
    def key(self, drawn: str | None) -> str:
        return drawn if drawn is not None else f"fresh-{next(self.fresh)}"

    def request(
        self,
        key: str,
        signature: Any,
        call: Callable[[Ledger], OperationResult],
        decide: Callable[[], tuple[Decimal, Callable[[], None]] | type[CreditsError]],
    ) -> OperationResult | None:
        """Send a request and check its answer. `signature` is what the request asks (a
        repeat of a used key with the same signature is a replay, with another a conflict);
        `decide` gives the model's verdict for a new key: the change and how the model moves,
        or the refusal."""
        ledger = next(self.turn)
        model = self.model
        if key in model.by_key:
            earlier_signature, earlier = model.by_key[key]
            if earlier_signature == signature:
                event("replay")
                assert call(ledger) == earlier.model_copy(update={"replayed": True})
            else:
                event("conflict")
                with pytest.raises(IdempotencyConflict):
                    call(ledger)
            return None
        verdict = decide()
        if isinstance(verdict, type):
            event(f"refused: {verdict.__name__}")
            with pytest.raises(verdict) as refused:
                call(ledger)
            if isinstance(refused.value, InsufficientCredits):
                assert refused.value.available == model.balance
            return None
        change, move = verdict
        event(f"applied: {signature[0]}")
        result = call(ledger)
        move()
        assert result.replayed is False
        assert result.amount == abs(change)
        assert result.balance_after == model.balance == result.available
        model.by_key[key] = (signature, result)
        self.repeats[key] = (signature, call)
        model.applied.append(result)
        return result

    @precondition(lambda self: self.repeats)
    @rule(pick=st.integers(min_value=0, max_value=100))
    def repeat(self, pick: int) -> None:
        """The very same request again (a client retrying): a replay, wherever it lands."""
        used = sorted(self.repeats)
        key = used[pick % len(used)]
        signature, call = self.repeats[key]
        self.request(key, signature, call, lambda: RefundNotAllowed)  # never decided

    # ------------------------------------------------------------ rules
    @rule(key=keys, amount=amounts)
    def debit(self, key: str | None, amount: Decimal) -> None:
        model, k = self.model, self.key(key)
        command = DebitCommand(account_id=self.account_id, idempotency_key=k, amount=amount)

        def decide() -> tuple[Decimal, Callable[[], None]] | type[CreditsError]:
            model.calls += 1
            if not model.can_spend(amount):
                model.declined += 1
                return InsufficientCredits

            def move() -> None:
                model.balance -= amount
                model.used += amount

            return -amount, move

        result = self.request(k, ("debit", amount), lambda ledger: ledger.debit(command), decide)
        if result is not None:
            model.refundable[result.transaction_id] = amount

    @rule(key=keys, amount=amounts, grant=st.booleans())
    def credit(self, key: str | None, amount: Decimal, grant: bool) -> None:
        model, k = self.model, self.key(key)
        command = CreditCommand(account_id=self.account_id, idempotency_key=k, amount=amount)

        def move() -> None:
            model.balance += amount
            model.total += amount

        self.request(
            k,
            ("grant" if grant else "topup", amount),
            lambda ledger: ledger.grant(command) if grant else ledger.top_up(command),
            lambda: (amount, move),
        )

    @rule(key=keys, amount=amounts, downward=st.booleans())
    def adjust(self, key: str | None, amount: Decimal, downward: bool) -> None:
        model, k = self.model, self.key(key)
        change = -amount if downward else amount
        command = AdjustmentCommand(
            account_id=self.account_id, idempotency_key=k, amount=change, reason="model"
        )

        def decide() -> tuple[Decimal, Callable[[], None]] | type[CreditsError]:
            if downward and not model.can_spend(amount):
                return InsufficientCredits

            def move() -> None:
                model.balance += change
                model.adjusted += change

            return change, move

        self.request(k, ("adjustment", change), lambda ledger: ledger.adjust(command), decide)

    @precondition(lambda self: self.model.refundable)
    @rule(
        key=keys,
        pick=st.integers(min_value=0, max_value=100),
        percent=st.none() | st.integers(min_value=1, max_value=150),
    )
    def refund(self, key: str | None, pick: int, percent: int | None) -> None:
        model, k = self.model, self.key(key)
        debits = sorted(model.refundable)
        transaction_id = debits[pick % len(debits)]
        remaining = model.refundable[transaction_id]
        amount = None
        if percent is not None:
            share = (remaining * percent / 100).quantize(QUANTUM, rounding=ROUND_DOWN)
            amount = max(share, QUANTUM)
        requested = remaining if amount is None else amount
        command = RefundCommand(
            account_id=self.account_id,
            idempotency_key=k,
            transaction_id=transaction_id,
            amount=amount,
        )

        def decide() -> tuple[Decimal, Callable[[], None]] | type[CreditsError]:
            if not 0 < requested <= remaining:
                return RefundNotAllowed

            def move() -> None:
                model.balance += requested
                model.used -= requested
                model.refundable[transaction_id] -= requested

            return requested, move

        self.table.materialize()  # a refund names its debit's ledger entry
        self.request(
            k, ("refund", transaction_id, amount), lambda ledger: ledger.refund(command), decide
        )

    # ------------------------------------------------------------ the ledger agrees
    def teardown(self) -> None:
        model = self.model
        snapshot = self.table.audit.check(self.account_id)  # materializes first
        account = snapshot.account
        assert (account.balance, account.used, account.total, account.adjusted) == (
            model.balance,
            model.used,
            model.total,
            model.adjusted,
        )
        assert account.available == model.balance
        opening = [e for e in snapshot.entries if e.idempotency_key == "opening-balance"]
        others = [e for e in snapshot.entries if e.idempotency_key != "opening-balance"]
        assert len(opening) == (1 if self.opening > 0 else 0)
        assert [e.transaction_id for e in others] == [r.transaction_id for r in model.applied]
        assert [e.balance_after for e in others] == [r.balance_after for r in model.applied]
        for entry in snapshot.of_type(EntryType.REFUND):
            assert entry.refund_of in model.refundable
        for debit_id, remaining in model.refundable.items():
            charged = -next(e.amount for e in snapshot.entries if e.transaction_id == debit_id)
            refunded = self.table.store.refunds.refunded(self.account_id, debit_id)
            assert charged - refunded == remaining
        usage = self.table.audit.usage(self.account_id)
        assert (usage.calls, usage.failed) == (model.calls, model.declined)
        assert usage.credits_used == model.used == account.used


def test_random_operations_with_repeated_keys_match_the_model(
    local_store: CreditsStore, audit: LedgerAudit, local_materialize: Callable[[], int]
) -> None:
    LedgerMachine.table = Table(local_store, audit, local_materialize)
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        LedgerMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
