"""Ledger use cases: debit, top-up, grant, adjustment, refund, void and account creation.

Each builds its `Operation` from a validated command and hands it to the one write path
(`ledger.write_path`): every balance change is one conditional update of the account item,
its ledger entry written from the account's stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from serverless_credits.config import Settings
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
    VoidCommand,
)
from serverless_credits.domain.errors import (
    AccountNotFound,
    AccountSuspended,
    InsufficientCredits,
    OperationInProgress,
    RefundNotAllowed,
    ServiceBusy,
    TransactionNotFound,
    VoidNotAllowed,
)
from serverless_credits.domain.idempotency import derived_key, fingerprint, judge, parameters
from serverless_credits.domain.lots import (
    check_lot_expiry,
    default_priority,
    new_lot_id,
    refund_lot_id,
    returns_of,
)
from serverless_credits.domain.models import (
    Account,
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    LedgerEntry,
    Operation,
    OperationResult,
    utc_now,
)
from serverless_credits.domain.money import normalize
from serverless_credits.domain.operations import BILLABLE, described, sequence_of
from serverless_credits.domain.outcomes import RefundLimitReached, RefundStale
from serverless_credits.ledger.declined import count_declined
from serverless_credits.ledger.holds import HoldOperations
from serverless_credits.ledger.lots import LotOperations
from serverless_credits.ledger.ports import (
    Accounts,
    HoldItems,
    IdempotencyRecords,
    LedgerEntries,
    LotItems,
    RefundGuards,
    Usage,
)
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.ledger.write_path import BeforeApply, WritePath, WriteRequest

logger = logging.getLogger(__name__)

OPENING_BALANCE_KEY = "opening-balance"
# A refund may follow its debit within milliseconds (the decorator refunds a failed call at
# once): wait this long for the debit's entry to be materialized before calling it unknown.
ENTRY_WAIT_SECONDS = 3.0
# A service may void its own debit (in full, by the debit's idempotency key) this long after
# the debit was made; later, only an operator's refund gives credits back.
VOID_WINDOW = timedelta(minutes=15)
# Refunds of one charge racing each other: each round, one of them claims its share.
MAX_REFUND_ROUNDS = 8


def void_key(debit_key: str) -> str:
    """The void's own idempotency key: `<debit key>:void`, or a hash of the debit's key when
    that would not fit the 128 characters a key may have."""
    return derived_key(debit_key, "void")


class Ledger:
    def __init__(
        self,
        *,
        accounts: Accounts,
        records: IdempotencyRecords,
        entries: LedgerEntries,
        usage: Usage,
        refunds: RefundGuards,
        holds: HoldItems,
        lots: LotItems,
        prices: PriceCatalog,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._accounts = accounts
        self._records = records
        self._entries = entries
        self._usage = usage
        self._refunds = refunds
        self._prices = prices
        self._clock = clock
        self._sleep = sleep
        self.write_path = WritePath(accounts, records, entries, settings, clock=clock, sleep=sleep)
        # Reserve, capture, release, expire (`ledger.holds`): the same write path.
        self.holds = HoldOperations(
            accounts=accounts,
            records=records,
            holds=holds,
            usage=usage,
            prices=prices,
            entries=entries,
            write_path=self.write_path,
            clock=clock,
            sleep=sleep,
        )
        # The expiry of credit lots, and their listing (`ledger.lots`).
        self.lots = LotOperations(
            accounts=accounts, lots=lots, write_path=self.write_path, clock=clock
        )

    # ------------------------------------------------------------ operations
    def debit(self, command: DebitCommand) -> OperationResult:
        quantity, amount = self._prices.charge(command)
        operation = Operation(
            type=EntryType.DEBIT,
            amount=-amount,
            description=described(command.description, command.action, quantity),
            metadata=dict(command.metadata),
            action=command.action,
            quantity=quantity,
            endpoint=command.endpoint,
        )
        try:
            return self._submit(
                command.account_id, command.idempotency_key, "debit", command, operation
            )
        except (InsufficientCredits, AccountSuspended):
            count_declined(self._usage, command, self._clock().date())
            raise

    def top_up(self, command: CreditCommand) -> OperationResult:
        """A purchase of credits (reference: purchase order or payment id)."""
        return self._credit(command, EntryType.TOPUP)

    def grant(self, command: CreditCommand) -> OperationResult:
        """Promotional credits."""
        return self._credit(command, EntryType.GRANT)

    def adjust(self, command: AdjustmentCommand) -> OperationResult:
        """An operator's correction: upward it opens a lot (default priority, no expiry),
        downward it burns lots in order, as a debit does."""
        lot: dict[str, object] = {}
        if command.amount > 0:
            priority = default_priority(EntryType.ADJUSTMENT)
            lot = {"lot_id": new_lot_id(priority, None, self._clock()), "priority": priority}
        operation = Operation(
            type=EntryType.ADJUSTMENT,
            amount=command.amount,
            description=command.reason,
            reference=command.reference,
            metadata=dict(command.metadata),
            actor=command.actor,
            **lot,
        )
        return self._submit(
            command.account_id, command.idempotency_key, "adjustment", command, operation
        )

    def refund(self, command: RefundCommand) -> OperationResult:
        """Give back all or part of one charge, to the lots that paid it. Where the credits
        go depends on what earlier refunds of the charge gave back: a refund that another
        claimed before it computes its returns again (`RefundStale`)."""
        for _ in range(MAX_REFUND_ROUNDS):
            try:
                return self._refund_once(command)
            except RefundStale:
                continue
        raise ServiceBusy("refunds of this charge kept racing: retry shortly")

    def _refund_once(self, command: RefundCommand) -> OperationResult:
        account_id, key = command.account_id, command.idempotency_key
        original = self._debit_entry(account_id, command.transaction_id)
        charged = -original.amount
        refunded = self._refunds.refunded(account_id, original.transaction_id)
        refundable = charged - refunded
        amount = command.amount if command.amount is not None else refundable
        request_fingerprint = fingerprint("refund", parameters(command))

        def claim(record: IdempotencyRecord) -> None:
            try:
                self._refunds.claim(
                    account_id,
                    original.transaction_id,
                    original=charged,
                    amount=record.operation.amount,
                    idempotency_key=key,
                    refunded_before=record.operation.refunded_before,
                )
            except RefundLimitReached as refused:
                raise RefundNotAllowed(
                    "Refund exceeds what remains refundable",
                    {"transactionId": original.transaction_id},
                ) from refused

        if amount <= 0 or amount > refundable:
            # Nothing left to refund may mean this very refund already claimed its share:
            # done (replay it), under way (wait), or crashed after its claim (recover it;
            # the claim is counted once per key).
            earlier = self._records.get(account_id, key)
            if earlier is not None:
                judge(earlier, request_fingerprint, self._clock())  # another request: conflict
                return self.write_path.submit(
                    WriteRequest(account_id, key, request_fingerprint, earlier.operation),
                    before_apply=claim,
                )
            raise RefundNotAllowed(
                "Refund exceeds what remains refundable",
                {"transactionId": original.transaction_id, "refundable": normalize(refundable)},
            )
        operation = Operation(
            type=EntryType.REFUND,
            amount=amount,
            description=command.reason or f"Refund of {original.transaction_id}",
            reference=original.transaction_id,
            action=original.action,
            endpoint=original.endpoint,
            refund_of=original.transaction_id,
            usage_day=original.day,
            failed_call=command.failed_call,
            actor=command.actor,
            refunded_before=refunded,
            **self._returns(original.lots, refunded, amount),
        )
        return self.write_path.submit(
            WriteRequest(account_id, key, request_fingerprint, operation), before_apply=claim
        )

    def void(self, command: VoidCommand) -> OperationResult:
        """Cancel a debit in full, found by its idempotency key, within `VOID_WINDOW` of it.
        The same void again replays; a void after an operator's refund of the same debit,
        of something other than a completed debit, or past the window is refused."""
        account_id, debit_key = command.account_id, command.idempotency_key
        key = void_key(debit_key)
        request_fingerprint = fingerprint(
            "void", {**parameters(command, exclude=frozenset({"reason"})), "debit": debit_key}
        )

        def claim(record: IdempotencyRecord) -> None:
            voided = record.operation
            assert voided.refund_of is not None  # noqa: S101 - every void names its debit
            try:
                self._refunds.claim(
                    account_id,
                    voided.refund_of,
                    original=voided.amount,
                    amount=voided.amount,
                    idempotency_key=key,
                )
            except RefundLimitReached as refused:
                raise VoidNotAllowed(
                    "The debit was already refunded", {"transactionId": voided.refund_of}
                ) from refused

        earlier = self._records.get(account_id, key)
        if earlier is not None:  # this void again (or its crashed first attempt): replay
            judge(earlier, request_fingerprint, self._clock())
            return self.write_path.submit(
                WriteRequest(account_id, key, request_fingerprint, earlier.operation),
                before_apply=claim,
            )
        debit = self._records.get(account_id, debit_key)
        if debit is None or debit.operation.type is not EntryType.DEBIT:
            raise VoidNotAllowed(
                "No debit with this idempotency key", {"idempotencyKey": debit_key}
            )
        if debit.state is not IdempotencyState.COMPLETED or debit.result is None:
            raise OperationInProgress(debit_key)
        transaction = debit.result.transaction_id
        if self._clock() - debit.created_at > VOID_WINDOW:
            raise VoidNotAllowed(
                "The debit is older than the void window: ask an operator for a refund",
                {
                    "idempotencyKey": debit_key,
                    "transactionId": transaction,
                    "windowSeconds": int(VOID_WINDOW.total_seconds()),
                },
            )
        if self._refunds.refunded(account_id, transaction) > 0:
            raise VoidNotAllowed("The debit was already refunded", {"transactionId": transaction})
        charged = -debit.operation.amount
        operation = Operation(
            type=EntryType.VOID,
            amount=charged,
            description=command.reason or f"Void of {transaction}",
            reference=transaction,
            action=debit.operation.action,
            endpoint=debit.operation.endpoint,
            refund_of=transaction,
            usage_day=debit.created_at.date(),
            failed_call=True,
            **self._returns(debit.result.lots, Decimal(0), charged),
        )
        return self.write_path.submit(
            WriteRequest(account_id, key, request_fingerprint, operation), before_apply=claim
        )

    def create_account(self, command: CreateAccountCommand) -> Account:
        """A new account, with an opening balance as its first grant when one is given."""
        now = self._clock()
        account = Account(
            account_id=command.account_id,
            currency=command.currency,
            credit_price=command.credit_price,
            overdraft_limit=command.overdraft_limit,
            low_balance_threshold=command.low_balance_threshold,
            plan=command.plan,
            email=command.email,
            subscription_status=command.subscription_status,
            subscription_id=command.subscription_id,
            holds={},
            lots={},
            created_at=now,
            updated_at=now,
        )
        self._accounts.create(account)
        if command.opening_balance > 0:
            self.grant(
                CreditCommand(
                    account_id=command.account_id,
                    idempotency_key=OPENING_BALANCE_KEY,
                    amount=command.opening_balance,
                    description="Opening balance",
                )
            )
            return self.account(command.account_id)
        return account

    def account(self, account_id: str) -> Account:
        """The account as stored now (one strongly consistent read)."""
        found = self._accounts.get(account_id, consistent=True)
        if found is None:
            raise AccountNotFound(account_id)
        return found

    def entry(self, account_id: str, transaction_id: str) -> LedgerEntry:
        """A ledger entry by transaction id, waiting briefly for a fresh one to be written."""
        sequence = sequence_of(transaction_id)
        if sequence is None:
            raise TransactionNotFound(transaction_id)
        deadline = time.monotonic() + ENTRY_WAIT_SECONDS
        delay = 0.01
        while True:
            entry = self._entries.get(account_id, sequence)
            if entry is not None:
                if entry.transaction_id != transaction_id:
                    raise TransactionNotFound(transaction_id)
                return entry
            if self._entries.head(account_id).version >= sequence or time.monotonic() > deadline:
                raise TransactionNotFound(transaction_id)
            account = self._accounts.get(account_id, consistent=True)
            if account is None or account.version < sequence:
                raise TransactionNotFound(transaction_id)
            self._sleep(delay)
            delay = min(delay * 2, 0.2)

    # ------------------------------------------------------------ helpers
    def _credit(self, command: CreditCommand, entry_type: EntryType) -> OperationResult:
        """A top-up or grant: it opens a lot with the command's priority (else its type's
        default) and expiry (`domain.lots`). The expiry is checked only for a new credit:
        a retry of one already applied replays it, however close its lot is to expiring."""
        now = self._clock()
        priority = command.priority
        if priority is None:
            priority = default_priority(entry_type)
        operation = Operation(
            type=entry_type,
            amount=command.amount,
            description=command.description,
            reference=command.reference,
            metadata=dict(command.metadata),
            actor=command.actor,
            lot_id=new_lot_id(priority, command.expires_at, now),
            priority=priority,
            expires_at=command.expires_at,
        )

        def new_lot_lives(_: IdempotencyRecord) -> None:
            check_lot_expiry(command.expires_at, self._clock())

        return self._submit(
            command.account_id,
            command.idempotency_key,
            entry_type.value,
            command,
            operation,
            before_apply=new_lot_lives,
        )

    def _submit(
        self,
        account_id: str,
        key: str,
        name: str,
        command: object,
        operation: Operation,
        *,
        before_apply: BeforeApply | None = None,
    ) -> OperationResult:
        request = WriteRequest(account_id, key, fingerprint(name, parameters(command)), operation)
        return self.write_path.submit(request, before_apply=before_apply)

    def _returns(
        self, paid: dict[str, Decimal] | None, already: Decimal, amount: Decimal
    ) -> dict[str, object]:
        """A refund's or void's lot fields: where its credits go back (the lots that paid,
        less what earlier refunds returned) and the lot for what cannot go back."""
        charged = {lot: share for lot, share in (paid or {}).items() if share < 0}
        return {
            "returns": returns_of(charged, already, amount),
            "lot_id": refund_lot_id(charged, self._clock()),
        }

    def _debit_entry(self, account_id: str, transaction_id: str) -> LedgerEntry:
        original = self.entry(account_id, transaction_id)
        if original.type not in BILLABLE:
            raise RefundNotAllowed(
                "Only debits and captures can be refunded", {"transactionId": transaction_id}
            )
        return original
