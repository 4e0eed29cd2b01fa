"""Idempotency rules (domain.idempotency): fingerprints, the parameters that make them, and
what an existing record means for a new request. No AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from serverless_credits.domain.commands import AdjustmentCommand, CreditCommand, DebitCommand
from serverless_credits.domain.errors import IdempotencyConflict
from serverless_credits.domain.idempotency import Verdict, fingerprint, judge, parameters
from serverless_credits.domain.models import (
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    Operation,
    OperationResult,
)

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_fingerprint_is_stable_and_tells_operations_apart() -> None:
    request = {"accountId": "a", "amount": "1", "metadata": {"x": 1, "y": 2}}
    reordered = {"metadata": {"y": 2, "x": 1}, "amount": "1", "accountId": "a"}

    assert fingerprint("debit", request) == fingerprint("debit", reordered)
    assert fingerprint("debit", request) != fingerprint("topup", request)
    assert fingerprint("debit", request) != fingerprint("debit", {**request, "amount": "2"})
    assert len(fingerprint("debit", request)) == 64


def test_parameters_leave_out_the_key_and_normalize_amounts() -> None:
    one = DebitCommand(account_id="acct_1", idempotency_key="k1", amount=Decimal("10"))
    same = DebitCommand(account_id="acct_1", idempotency_key="k2", amount=Decimal("10.000"))
    other = DebitCommand(account_id="acct_1", idempotency_key="k1", amount=Decimal("10.5"))

    assert "idempotency_key" not in parameters(one)
    assert parameters(one)["amount"] == "10"
    assert parameters(one) == parameters(same)
    assert fingerprint("debit", parameters(one)) == fingerprint("debit", parameters(same))
    assert fingerprint("debit", parameters(one)) != fingerprint("debit", parameters(other))


def test_parameters_can_leave_out_what_does_not_change_the_operation() -> None:
    command = AdjustmentCommand(
        account_id="acct_1", idempotency_key="k", amount=Decimal(-1), reason="r"
    )

    assert "reason" not in parameters(command, exclude=frozenset({"reason"}))
    assert parameters(command)["reason"] == "r"


def test_the_same_parameters_for_another_operation_are_another_request() -> None:
    credit = CreditCommand(account_id="acct_1", idempotency_key="k", amount=Decimal(5))

    assert fingerprint("topup", parameters(credit)) != fingerprint("grant", parameters(credit))


def record(
    state: IdempotencyState, *, fingerprint_: str = "f1", lease: timedelta = timedelta(seconds=60)
) -> IdempotencyRecord:
    return IdempotencyRecord(
        account_id="acct_1",
        idempotency_key="key-1",
        fingerprint=fingerprint_,
        op_id="op",
        state=state,
        operation=Operation(type=EntryType.DEBIT, amount=Decimal(-1)),
        lease_expires_at=NOW + lease,
        created_at=NOW,
        result=OperationResult(
            transaction_id="txn_1_0123456789ab",
            amount=Decimal(1),
            balance_after=Decimal(0),
            available=Decimal(0),
        )
        if state is IdempotencyState.COMPLETED
        else None,
    )


def test_a_completed_record_with_the_same_fingerprint_is_replayed() -> None:
    completed = record(IdempotencyState.COMPLETED)

    assert judge(completed, "f1", NOW) is Verdict.REPLAY
    # Whatever its lease said: a completed operation is never applied again.
    assert judge(completed, "f1", NOW + timedelta(days=30)) is Verdict.REPLAY


def test_a_pending_record_is_waited_for_within_its_lease_and_recovered_after() -> None:
    pending = record(IdempotencyState.PENDING)

    assert judge(pending, "f1", NOW) is Verdict.WAIT
    assert judge(pending, "f1", NOW + timedelta(seconds=59, microseconds=999999)) is Verdict.WAIT
    assert judge(pending, "f1", NOW + timedelta(seconds=60)) is Verdict.RECOVER
    assert judge(pending, "f1", NOW + timedelta(hours=1)) is Verdict.RECOVER


@pytest.mark.parametrize("state", list(IdempotencyState))
def test_another_fingerprint_is_a_conflict_in_any_state(state: IdempotencyState) -> None:
    for now in (NOW, NOW + timedelta(hours=1)):
        with pytest.raises(IdempotencyConflict) as refused:
            judge(record(state), "f2", now)
        assert refused.value.details == {"idempotencyKey": "key-1"}
