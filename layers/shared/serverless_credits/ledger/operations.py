"""Ledger operations: every balance change is one conditional transaction with one entry.

The write path (DESIGN-NOTES.md):
1. Start from the account state this function last saw (or one eventually consistent read).
2. Plan the change from that state: exact `balanceAfter`, `sequence = version + 1`, and a
   ledger timestamp strictly after the previous entry.
3. Commit balance + entry + idempotency record (+ usage, + refund guard) in one
   `TransactWriteItems`, conditioned on the account's version.
4. If the version moved, the failed condition's `ALL_OLD` image is the fresh state: replan
   from it, no extra read. If the idempotency key exists, its stored result is the answer.
   Conflicts, throttling and timeouts are retried with bounded, jittered backoff; a write
   that committed before a timeout is found again through its idempotency record.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from serverless_credits.config import Settings
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import (
    AccountNotFound,
    AccountSuspended,
    IdempotencyConflict,
    InsufficientCredits,
    RefundNotAllowed,
    ServiceBusy,
    TransactionNotFound,
)
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    EntryType,
    IdempotencyRecord,
    LedgerEntry,
    OperationResult,
    UsageIncrement,
    utc_now,
)
from serverless_credits.domain.money import normalize
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage import keys
from serverless_credits.storage.store import (
    AccountMissing,
    ConditionRefused,
    Contention,
    CreditsStore,
    IdempotencyKeyUsed,
    LedgerWrite,
    OutcomeUnknown,
    RefundGuard,
    RefundLimitReached,
    VersionChanged,
)

ONE_MICROSECOND = timedelta(microseconds=1)
RACE_BACKOFF_BASE = 0.002  # seconds, doubled after each lost version race...
RACE_BACKOFF_CAP = 0.02  # ...up to this, with full jitter
ACCOUNT_CACHE_SIZE = 1024
DEFAULT_TYPE = "debit"  # byType key for debits that name no action


@dataclass(frozen=True)
class Change:
    """A balance change, independent of the state it will be applied to."""

    type: EntryType
    amount: Decimal  # signed
    idempotency_key: str
    fingerprint: str
    description: str = ""
    reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    action: str | None = None
    quantity: Decimal | None = None
    endpoint: str | None = None
    refund_of: str | None = None
    require_active: bool = False
    check_funds: bool = False
    counts_as_request: bool = False
    usage: Callable[[date], UsageIncrement] | None = None
    refund: RefundGuard | None = None


def fingerprint(operation: str, parameters: dict[str, Any]) -> str:
    """A stable hash of what a request asks for, to tell a replay from a key reused."""
    canonical = json.dumps(
        {"operation": operation, **parameters}, sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Backoff:
    """Full-jitter exponential backoff, capped."""

    def __init__(
        self,
        sleep: Callable[[float], None],
        rng: Callable[[], float],
        base: float = 0.005,
        cap: float = 0.25,
    ) -> None:
        self._sleep, self._rng, self._base, self._cap = sleep, rng, base, cap
        self._failures = 0

    def wait(self) -> None:
        ceiling = min(self._cap, self._base * 2**self._failures)
        self._failures += 1
        self._sleep(ceiling * self._rng())


class Ledger:
    def __init__(
        self,
        store: CreditsStore,
        prices: PriceCatalog,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._prices = prices
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        # The last state this function saw per account: saves the read before a write.
        self._known: OrderedDict[str, Account] = OrderedDict()
        # One ledger serves every thread of a process: its cache updates are compound.
        self._known_lock = threading.Lock()

    # ------------------------------------------------------------ operations
    def debit(self, command: DebitCommand) -> OperationResult:
        if command.action is not None:
            quantity = command.quantity or Decimal(1)
            amount = self._prices.credits_for(command.action, quantity)
        else:
            assert command.amount is not None  # noqa: S101 - guaranteed by the model
            quantity, amount = None, command.amount
        by_type = command.action or DEFAULT_TYPE
        endpoint = command.endpoint

        def usage(day: date) -> UsageIncrement:
            return UsageIncrement(
                day=day,
                calls=1,
                credits_used=amount,
                by_type={by_type: amount},
                by_endpoint={endpoint: 1} if endpoint else {},
                by_endpoint_credits={endpoint: amount} if endpoint else {},
            )

        change = Change(
            type=EntryType.DEBIT,
            amount=-amount,
            idempotency_key=command.idempotency_key,
            fingerprint=fingerprint("debit", _parameters(command)),
            description=command.description,
            metadata=dict(command.metadata),
            action=command.action,
            quantity=quantity,
            endpoint=endpoint,
            require_active=True,
            check_funds=True,
            counts_as_request=True,
            usage=usage,
        )
        try:
            return self._apply(command.account_id, change)
        except (InsufficientCredits, AccountSuspended):
            self._count_declined(command, by_type)
            raise

    def top_up(self, command: CreditCommand) -> OperationResult:
        """A purchase of credits (reference: purchase order or payment id)."""
        return self._credit(command, EntryType.TOPUP)

    def grant(self, command: CreditCommand) -> OperationResult:
        """Promotional credits."""
        return self._credit(command, EntryType.GRANT)

    def adjust(self, command: AdjustmentCommand) -> OperationResult:
        change = Change(
            type=EntryType.ADJUSTMENT,
            amount=command.amount,
            idempotency_key=command.idempotency_key,
            fingerprint=fingerprint("adjustment", _parameters(command)),
            description=command.reason,
            reference=command.reference,
            metadata=dict(command.metadata),
            # A downward correction may not push the balance past the overdraft either.
            check_funds=command.amount < 0,
        )
        return self._apply(command.account_id, change)

    def refund(self, command: RefundCommand) -> OperationResult:
        original = self._store.get_entry(command.account_id, command.transaction_id)
        if original is None:
            raise TransactionNotFound(command.transaction_id)
        if original.type is not EntryType.DEBIT:
            raise RefundNotAllowed(
                "Only debits can be refunded", {"transactionId": command.transaction_id}
            )
        charged = -original.amount
        refundable = charged - self._store.refunded_so_far(
            command.account_id, original.transaction_id
        )
        amount = command.amount if command.amount is not None else refundable
        refund_fingerprint = fingerprint("refund", _parameters(command))
        if amount <= 0 or amount > refundable:
            # Nothing left to refund may mean this very refund already happened: replay it.
            earlier = self._store.get_idempotency_record(
                command.account_id, command.idempotency_key
            )
            if earlier is not None and earlier.expires_at > self._clock().timestamp():
                if earlier.fingerprint != refund_fingerprint:
                    raise IdempotencyConflict(command.idempotency_key)
                return earlier.result.model_copy(update={"replayed": True})
            raise RefundNotAllowed(
                "Refund exceeds what remains refundable",
                {"transactionId": command.transaction_id, "refundable": normalize(refundable)},
            )
        by_type = original.action or DEFAULT_TYPE
        endpoint = original.endpoint
        failed_calls = 1 if command.failed_call else 0

        def usage(_: date) -> UsageIncrement:
            # Credited back to the day of the original call, so daily usage stays net.
            return UsageIncrement(
                day=original.day,
                failed=failed_calls,
                credits_used=-amount,
                by_type={by_type: -amount},
                by_endpoint_credits={endpoint: -amount} if endpoint else {},
            )

        change = Change(
            type=EntryType.REFUND,
            amount=amount,
            idempotency_key=command.idempotency_key,
            fingerprint=refund_fingerprint,
            description=command.reason or f"Refund of {original.transaction_id}",
            reference=original.transaction_id,
            action=original.action,
            endpoint=endpoint,
            refund_of=original.transaction_id,
            usage=usage,
            refund=RefundGuard(original.transaction_id, charged, amount),
        )
        return self._apply(command.account_id, change)

    def create_account(self, command: CreateAccountCommand) -> Account:
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
            created_at=now,
            updated_at=now,
        )
        opening = None
        if command.opening_balance > 0:
            opening = LedgerEntry(
                account_id=account.account_id,
                transaction_id=keys.transaction_id(now),
                sequence=1,
                type=EntryType.GRANT,
                amount=command.opening_balance,
                balance_after=command.opening_balance,
                description="Opening balance",
                created_at=now,
            )
            account = account.model_copy(
                update={
                    "balance": command.opening_balance,
                    "total": command.opening_balance,
                    "version": 1,
                    "last_entry_at": now,
                }
            )
        self._store.create_account(account, opening)
        self._remember(account)
        return account

    def account(self, account_id: str) -> Account:
        """The account as stored now (one read)."""
        found = self._store.get_account(account_id)
        if found is None:
            raise AccountNotFound(account_id)
        return found

    # ------------------------------------------------------------ the write loop
    def _credit(self, command: CreditCommand, entry_type: EntryType) -> OperationResult:
        change = Change(
            type=entry_type,
            amount=command.amount,
            idempotency_key=command.idempotency_key,
            fingerprint=fingerprint(entry_type.value, _parameters(command)),
            description=command.description,
            reference=command.reference,
            metadata=dict(command.metadata),
        )
        return self._apply(command.account_id, change)

    def _apply(self, account_id: str, change: Change) -> OperationResult:
        request_token = uuid.uuid4().hex
        state = self._known.get(account_id)
        authoritative = False  # a remembered state may be stale: let DynamoDB judge it
        if state is None:
            state = self._store.get_account(account_id)
            if state is None:
                raise AccountNotFound(account_id)
        backoff = Backoff(self._sleep, self._rng)
        # Losing a version race is cheap to retry (ALL_OLD is the fresh state), but writers
        # that retry in lockstep keep colliding: back off a little more after each loss.
        race = Backoff(self._sleep, self._rng, base=RACE_BACKOFF_BASE, cap=RACE_BACKOFF_CAP)
        for _ in range(self._settings.max_write_attempts):
            if authoritative:
                self._check(state, change)
            write = self._plan(state, change, request_token)
            try:
                self._store.commit(write)
            except IdempotencyKeyUsed as refused:
                return self._replay(refused.record, change, request_token)
            except (VersionChanged, ConditionRefused) as refused:
                # ALL_OLD is the current item: replan from it, without another read.
                state, authoritative = refused.current, True
                self._remember(state)
                if isinstance(refused, VersionChanged):
                    race.wait()
            except AccountMissing as missing:
                with self._known_lock:
                    self._known.pop(account_id, None)
                raise AccountNotFound(account_id) from missing
            except RefundLimitReached as refused:
                raise RefundNotAllowed(
                    "Refund exceeds what remains refundable",
                    {"transactionId": change.refund_of},
                ) from refused
            except (Contention, OutcomeUnknown):
                backoff.wait()
            else:
                self._remember(write.after)
                return _result(write.entry, write.after)
        raise ServiceBusy(f"gave up after {self._settings.max_write_attempts} attempts")

    @staticmethod
    def _check(state: Account, change: Change) -> None:
        if change.require_active and state.status is not AccountStatus.ACTIVE:
            raise AccountSuspended(state.account_id, state.status.value)
        if change.check_funds and state.spendable < -change.amount:
            raise InsufficientCredits(normalize(state.available), normalize(-change.amount))

    def _plan(self, state: Account, change: Change, request_token: str) -> LedgerWrite:
        now = self._clock()
        created_at = now
        if state.last_entry_at is not None and created_at <= state.last_entry_at:
            created_at = state.last_entry_at + ONE_MICROSECOND
        amount = change.amount
        balance = state.balance + amount
        used, total = state.used, state.total
        if change.type in (EntryType.DEBIT, EntryType.REFUND) or amount < 0:
            used -= amount
        else:
            total += amount
        after = state.model_copy(
            update={
                "balance": normalize(balance),
                "used": normalize(used),
                "total": normalize(total),
                "version": state.version + 1,
                "lifetime_requests": state.lifetime_requests
                + (1 if change.counts_as_request else 0),
                "last_entry_at": created_at,
                "updated_at": now,
            }
        )
        entry = LedgerEntry(
            account_id=state.account_id,
            transaction_id=keys.transaction_id(created_at),
            sequence=after.version,
            type=change.type,
            amount=normalize(amount),
            balance_after=after.balance,
            description=change.description,
            reference=change.reference,
            metadata=change.metadata,
            action=change.action,
            quantity=change.quantity,
            endpoint=change.endpoint,
            refund_of=change.refund_of,
            idempotency_key=change.idempotency_key,
            created_at=created_at,
        )
        retention = timedelta(hours=self._settings.idempotency_retention_hours)
        record = IdempotencyRecord(
            account_id=state.account_id,
            idempotency_key=change.idempotency_key,
            fingerprint=change.fingerprint,
            request_token=request_token,
            result=_result(entry, after),
            created_at=now,
            expires_at=int((now + retention).timestamp()),
        )
        return LedgerWrite(
            before=state,
            after=after,
            entry=entry,
            idempotency=record,
            usage=change.usage(created_at.date()) if change.usage else None,
            refund=change.refund,
            require_active=change.require_active,
            # Exact given the version pin; kept as a second line of defence.
            balance_floor=(
                state.reserved - state.overdraft_limit - amount if change.check_funds else None
            ),
        )

    @staticmethod
    def _replay(record: IdempotencyRecord, change: Change, request_token: str) -> OperationResult:
        if record.fingerprint != change.fingerprint:
            raise IdempotencyConflict(change.idempotency_key)
        # Our own earlier attempt (committed, then timed out) is not a replay to the caller.
        return record.result.model_copy(update={"replayed": record.request_token != request_token})

    def _remember(self, account: Account) -> None:
        with self._known_lock:
            known = self._known.get(account.account_id)
            if known is not None and known.version > account.version:
                return
            self._known[account.account_id] = account
            self._known.move_to_end(account.account_id)
            while len(self._known) > ACCOUNT_CACHE_SIZE:
                self._known.popitem(last=False)

    def _count_declined(self, command: DebitCommand, by_type: str) -> None:
        day = self._clock().date()
        endpoint = command.endpoint
        self._store.record_failed_call(
            command.account_id,
            UsageIncrement(
                day=day,
                calls=1,
                failed=1,
                by_type={by_type: Decimal(0)},
                by_endpoint={endpoint: 1} if endpoint else {},
            ),
        )


def _parameters(command: Any) -> dict[str, Any]:
    """What identifies a request, for its fingerprint: everything but the key itself."""
    data: dict[str, Any] = command.model_dump(mode="python", exclude={"idempotency_key"})
    return {
        name: str(normalize(value)) if isinstance(value, Decimal) else value
        for name, value in data.items()
    }


def _result(entry: LedgerEntry, after: Account) -> OperationResult:
    return OperationResult(
        transaction_id=entry.transaction_id,
        amount=normalize(abs(entry.amount)),
        balance_after=entry.balance_after,
        available=normalize(after.available),
    )
