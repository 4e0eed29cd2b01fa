"""Random sequences of ledger operations on DynamoDB Local (hypothesis), checked against a
plain Python model of the account after every step, and against the ledger rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import CreditsError, InsufficientCredits, RefundNotAllowed
from serverless_credits.domain.models import OperationResult
from serverless_credits.domain.money import QUANTUM
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit

pytestmark = pytest.mark.integration

_accounts = itertools.count()

# Weighted: debits and refunds are where the rules bite.
KINDS = ["debit"] * 4 + ["refund"] * 3 + ["top_up", "grant", "adjust", "replay"]


@dataclass(frozen=True)
class Step:
    kind: str
    amount: Decimal  # debit, top-up, grant; its sign flips for a downward adjustment
    downward: bool  # adjustments only
    pick: int  # refunds: which earlier debit
    percent: int | None  # refunds: this share of what remains, or None for all of it


steps = st.builds(
    Step,
    kind=st.sampled_from(KINDS),
    amount=st.decimals(
        min_value=Decimal("0.000001"), max_value=Decimal(40), places=6, allow_nan=False
    ),
    downward=st.booleans(),
    pick=st.integers(min_value=0, max_value=1_000),
    percent=st.none() | st.integers(min_value=1, max_value=200),
)


@dataclass
class AccountModel:
    """What the account should look like: the balance, and what each debit can still refund."""

    balance: Decimal
    overdraft: Decimal
    refundable: dict[str, Decimal] = field(default_factory=dict)
    last: tuple[Any, OperationResult] | None = None  # the last applied command and result

    def can_spend(self, amount: Decimal) -> bool:
        return self.balance - amount >= -self.overdraft


class Runner:
    def __init__(self, ledger: Ledger, account_id: str, model: AccountModel) -> None:
        self.ledger, self.account_id, self.model = ledger, account_id, model
        self.keys = itertools.count()

    def key(self) -> str:
        return f"step-{next(self.keys)}"

    def apply(self, command: Any) -> OperationResult:
        if isinstance(command, DebitCommand):
            return self.ledger.debit(command)
        if isinstance(command, AdjustmentCommand):
            return self.ledger.adjust(command)
        if isinstance(command, RefundCommand):
            return self.ledger.refund(command)
        if command.reference == "grant":
            return self.ledger.grant(command)
        return self.ledger.top_up(command)

    def run(self, step: Step) -> None:
        model = self.model
        if step.kind == "replay":
            if model.last is not None:
                event("replay")
                command, original = model.last
                assert self.apply(command) == original.model_copy(update={"replayed": True})
            return
        command, change, refusal = self.plan(step)
        event(f"{type(command).__name__}: {refusal.__name__ if refusal else 'applied'}")
        if refusal is not None:
            with pytest.raises(refusal) as refused:
                self.apply(command)
            if isinstance(refused.value, InsufficientCredits):
                assert refused.value.available == model.balance
            return
        result = self.apply(command)
        model.balance += change
        assert result.balance_after == model.balance
        assert result.amount == abs(change)
        assert result.replayed is False
        model.last = (command, result)
        if isinstance(command, DebitCommand):
            model.refundable[result.transaction_id] = -change
        if isinstance(command, RefundCommand):
            model.refundable[command.transaction_id] -= change

    def plan(self, step: Step) -> tuple[Any, Decimal, type[CreditsError] | None]:
        """The command for a step, the balance change it should make, and the refusal the
        model expects (None: it must succeed)."""
        model, account_id, key = self.model, self.account_id, self.key()
        if step.kind == "debit":
            command: Any = DebitCommand(
                account_id=account_id, idempotency_key=key, amount=step.amount
            )
            return (
                command,
                -step.amount,
                None if model.can_spend(step.amount) else InsufficientCredits,
            )
        if step.kind in ("top_up", "grant"):
            command = CreditCommand(
                account_id=account_id, idempotency_key=key, amount=step.amount, reference=step.kind
            )
            return command, step.amount, None
        if step.kind == "adjust":
            change = -step.amount if step.downward else step.amount
            command = AdjustmentCommand(
                account_id=account_id, idempotency_key=key, amount=change, reason="property test"
            )
            allowed = change > 0 or model.can_spend(step.amount)
            return command, change, None if allowed else InsufficientCredits
        if not model.refundable:  # nothing to refund yet: a debit instead
            return self.plan(Step("debit", step.amount, False, 0, None))
        debits = sorted(model.refundable)
        transaction_id = debits[step.pick % len(debits)]
        remaining = model.refundable[transaction_id]
        amount = None
        if step.percent is not None:
            share = (remaining * step.percent / 100).quantize(QUANTUM, rounding=ROUND_DOWN)
            amount = max(share, QUANTUM)
        requested = remaining if amount is None else amount
        command = RefundCommand(
            account_id=account_id,
            idempotency_key=key,
            transaction_id=transaction_id,
            amount=amount,
        )
        allowed = 0 < requested <= remaining
        return command, requested, None if allowed else RefundNotAllowed


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    opening=st.decimals(min_value=Decimal(0), max_value=Decimal(60), places=2),
    overdraft=st.sampled_from([Decimal(0), Decimal(0), Decimal("5.5")]),
    sequence=st.lists(steps, min_size=2, max_size=9),
)
def test_random_operation_sequences_keep_every_ledger_rule(
    local_store: CreditsStore,
    audit: LedgerAudit,
    opening: Decimal,
    overdraft: Decimal,
    sequence: list[Step],
) -> None:
    account_id = f"acct_prop_{next(_accounts)}"
    ledger = wiring.ledger()
    ledger.create_account(
        CreateAccountCommand(
            account_id=account_id, opening_balance=opening, overdraft_limit=overdraft
        )
    )
    runner = Runner(ledger, account_id, AccountModel(balance=opening, overdraft=overdraft))

    for step in sequence:
        runner.run(step)
        snapshot = audit.check(account_id)
        assert snapshot.account.balance == runner.model.balance
        assert snapshot.account.balance >= -overdraft
