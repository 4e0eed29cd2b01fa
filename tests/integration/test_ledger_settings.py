"""Account settings changed behind a warm ledger's back, on DynamoDB Local: a settings change
does not move the account's version, so the debit's conditions must catch it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
from serverless_credits.domain.errors import AccountSuspended, InsufficientCredits
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit

pytestmark = pytest.mark.integration

ACCOUNT = "acct_settings"


@pytest.fixture
def warm_ledger(local_store: CreditsStore) -> Ledger:
    """A ledger that has just debited the account, so it holds its state."""
    ledger = wiring.ledger()
    ledger.create_account(
        CreateAccountCommand(
            account_id=ACCOUNT, opening_balance=Decimal(10), overdraft_limit=Decimal(50)
        )
    )
    ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="warm", amount=Decimal(1)))
    return ledger


def test_a_withdrawn_overdraft_is_enforced_on_a_warm_ledger(
    warm_ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    local_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(0)})

    with pytest.raises(InsufficientCredits) as refused:
        warm_ledger.debit(
            DebitCommand(account_id=ACCOUNT, idempotency_key="deep", amount=Decimal(20))
        )

    assert refused.value.available == 9
    assert audit.check(ACCOUNT).account.balance == 9


def test_a_raised_overdraft_is_usable_on_a_warm_ledger(
    warm_ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    local_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(100)})

    result = warm_ledger.debit(
        DebitCommand(account_id=ACCOUNT, idempotency_key="deeper", amount=Decimal(100))
    )

    assert result.balance_after == -91
    assert audit.check(ACCOUNT).account.balance == -91


def test_a_suspension_is_enforced_on_a_warm_ledger(
    warm_ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    local_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})

    with pytest.raises(AccountSuspended):
        warm_ledger.debit(
            DebitCommand(account_id=ACCOUNT, idempotency_key="blocked", amount=Decimal(1))
        )

    assert audit.check(ACCOUNT).account.balance == 9
