"""Hold use cases: reserve, capture, release, and the expiry of holds left open.

Each step is one operation through the write path (`ledger.write_path`): a lease under its
idempotency key, ONE conditional update of the account item fenced on the hold's entry in
its `holds` map (`domain.posting.HoldFence`), completion. Its ledger entry (`hold`,
`capture`, `release`) and the HOLD item come from the account's stream.

A capture or release reads the account item first (one strongly consistent GetItem): the
update's condition names the amount held, and the capture's default amount is all of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from serverless_credits.domain.commands import CaptureCommand, ReleaseCommand, ReserveCommand
from serverless_credits.domain.errors import (
    AccountNotFound,
    AccountSuspended,
    CreditsError,
    HoldNotOpen,
    InsufficientCredits,
    ServiceBusy,
)
from serverless_credits.domain.holds import (
    capture_amount,
    hold_expiry,
    new_hold_id,
    not_open,
    open_hold,
)
from serverless_credits.domain.idempotency import fingerprint, judge, parameters
from serverless_credits.domain.models import (
    Account,
    EntryType,
    Hold,
    HoldStatus,
    OpenHold,
    Operation,
    OperationResult,
    ReleaseReason,
)
from serverless_credits.domain.money import normalize
from serverless_credits.domain.operations import described
from serverless_credits.ledger.declined import count_declined
from serverless_credits.ledger.ports import (
    Accounts,
    HoldItems,
    IdempotencyRecords,
    LedgerEntries,
    Usage,
)
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.ledger.sweeps import expire_each
from serverless_credits.ledger.write_path import WritePath, WriteRequest

logger = logging.getLogger(__name__)

EXPIRY_KEY_PREFIX = "expire:"
EXPIRED_DESCRIPTION = "Hold expired"
# One sweep: at most this many due holds per index shard, this many expired at once.
SWEEP_LIMIT = 200
# How long a capture or release of a hold the account item does not have waits for the
# ledger to catch up before calling the hold unknown (a hold closed a moment ago).
KNOWN_HOLD_WAIT_SECONDS = 2.0


def expiry_key(hold_id: str) -> str:
    """The idempotency key of a hold's expiry: two sweeps of one hold are one operation."""
    return f"{EXPIRY_KEY_PREFIX}{hold_id}"


@dataclass(frozen=True)
class SweepReport:
    due: int  # HOLD items the index listed as due
    expired: int  # holds this sweep released as expired
    already_closed: int  # captured or released before their expiry reached the account
    failed: int  # left for the next sweep (throttled, in progress)

    def as_dict(self) -> dict[str, int]:
        return {
            "due": self.due,
            "expired": self.expired,
            "alreadyClosed": self.already_closed,
            "failed": self.failed,
        }


class HoldOperations:
    def __init__(
        self,
        *,
        accounts: Accounts,
        records: IdempotencyRecords,
        holds: HoldItems,
        usage: Usage,
        prices: PriceCatalog,
        entries: LedgerEntries,
        write_path: WritePath,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._entries = entries
        self._sleep = sleep
        self._accounts = accounts
        self._records = records
        self._holds = holds
        self._usage = usage
        self._prices = prices
        self._write_path = write_path
        self._clock = clock

    # ------------------------------------------------------------ a service's steps
    def reserve(self, command: ReserveCommand) -> OperationResult:
        """Set credits aside: refused like a debit (funds, status), and past the account's
        cap on open holds."""
        quantity, amount = self._prices.charge(command)
        operation = Operation(
            type=EntryType.HOLD,
            amount=0,
            held=amount,
            hold_id=new_hold_id(),
            expires_at=hold_expiry(self._clock(), command.expires_in),
            description=described(command.description, command.action, quantity),
            metadata=dict(command.metadata),
            action=command.action,
            quantity=quantity,
            endpoint=command.endpoint,
        )
        request = WriteRequest(
            command.account_id,
            command.idempotency_key,
            fingerprint("reserve", parameters(command)),
            operation,
        )
        try:
            return self._write_path.submit(request)
        except (InsufficientCredits, AccountSuspended):
            count_declined(self._usage, command, self._clock().date())
            raise

    def capture(self, command: CaptureCommand) -> OperationResult:
        """Take all of a hold or part of it; the rest returns to `available`."""

        def capturing(held: OpenHold) -> Operation:
            taken = capture_amount(held, command.hold_id, command.amount)
            # The hold's action and endpoint attribute the captured call in daily usage.
            # Its HOLD item is written from the stream: a capture within milliseconds of
            # its reserve may find none and count under the default type.
            described = self._holds.get(command.account_id, command.hold_id)
            return Operation(
                type=EntryType.CAPTURE,
                amount=-taken,
                held=-held.amount,
                hold_id=command.hold_id,
                description=command.description or f"Capture of {command.hold_id}",
                action=described.action if described else None,
                endpoint=described.endpoint if described else None,
            )

        return self._close(command, "capture", capturing, capture=True)

    def release(self, command: ReleaseCommand, *, actor: str | None = None) -> OperationResult:
        """Give all of a hold back to `available` (`actor`: the operator who did, if one)."""

        def releasing(held: OpenHold) -> Operation:
            return _release(
                command.hold_id,
                held,
                ReleaseReason.RELEASED,
                command.description or f"Release of {command.hold_id}",
                actor=actor,
            )

        return self._close(command, "release", releasing, capture=False)

    def _close(
        self,
        command: CaptureCommand | ReleaseCommand,
        name: str,
        build: Callable[[OpenHold], Operation],
        *,
        capture: bool,
    ) -> OperationResult:
        account_id, key = command.account_id, command.idempotency_key
        request_fingerprint = fingerprint(name, parameters(command))
        account = self._account(account_id)
        held = open_hold(account, command.hold_id, self._clock(), capture=capture)
        if held is None:
            # Closed: perhaps by this very step (replay it, wait for it, or recover it).
            earlier = self._records.get(account_id, key)
            if earlier is not None:
                judge(earlier, request_fingerprint, self._clock())  # another request: conflict
                operation = earlier.operation
            else:
                raise not_open(
                    account_id, command.hold_id, self._known(account_id, command.hold_id, account)
                )
        else:
            operation = build(held)
        return self._write_path.submit(
            WriteRequest(account_id, key, request_fingerprint, operation)
        )

    def _account(self, account_id: str) -> Account:
        """The account item as it is now (strongly consistent: its `holds` map decides)."""
        account = self._accounts.get(account_id, consistent=True)
        if account is None:
            raise AccountNotFound(account_id)
        return account

    def _known(self, account_id: str, hold_id: str, account: Account) -> Hold | None:
        """The HOLD item of a hold the account item does not have. It is written from the
        stream: while the ledger is behind the account, wait briefly for it, so that a hold
        closed a moment ago is `HOLD_NOT_OPEN`, not `HOLD_NOT_FOUND`; still behind after
        the wait, the answer is "retry" (`ServiceBusy`), never a wrong `HOLD_NOT_FOUND`."""
        deadline = time.monotonic() + KNOWN_HOLD_WAIT_SECONDS
        delay = 0.01
        while True:
            # The head before the item: a head at the account's version proves the item
            # (had the hold been this account's) was written before it was read.
            caught_up = self._entries.head(account_id).version >= account.version
            known = self._holds.get(account_id, hold_id)
            if known is not None or caught_up:
                return known
            if time.monotonic() >= deadline:
                raise ServiceBusy("the ledger is catching up with the account: retry shortly")
            self._sleep(delay)
            delay = min(delay * 2, 0.2)

    def open_holds(self, account_id: str) -> tuple[Account, dict[str, Hold]]:
        """The account (strongly consistent: its `holds` map) and the HOLD items of its open
        holds, for an operator's listing."""
        account = self._account(account_id)
        return account, self._holds.get_many(account_id, (account.holds or {}).keys())

    # ------------------------------------------------------------ expiry
    def expire(self, account_id: str, hold_id: str) -> OperationResult | None:
        """Release the hold as expired if it is open and past its expiry; None when the
        account item has no such hold (closed, or the account is gone)."""
        now = self._clock()
        account = self._accounts.get(account_id, consistent=True)
        held = (account.holds or {}).get(hold_id) if account is not None else None
        if held is None:
            return None
        if not held.expired(now):
            raise HoldNotOpen(hold_id, HoldStatus.OPEN.value)  # not due yet
        operation = _release(hold_id, held, ReleaseReason.EXPIRED, EXPIRED_DESCRIPTION)
        request = WriteRequest(
            account_id,
            expiry_key(hold_id),
            fingerprint("expire", {"holdId": hold_id, "held": str(normalize(held.amount))}),
            operation,
        )
        return self._write_path.submit(request)

    def sweep(self, limit: int = SWEEP_LIMIT) -> SweepReport:
        """Expire every hold the expiry index lists as due (the ExpirerFunction, each
        minute). A hold closed meanwhile fails its fence and is counted, not retried."""
        due = self._holds.due(self._clock(), limit)
        outcomes = expire_each(due, self._expire_one)
        return SweepReport(
            due=len(due),
            expired=outcomes.count("expired"),
            already_closed=outcomes.count("closed"),
            failed=outcomes.count("failed"),
        )

    def _expire_one(self, account_id: str, hold_id: str) -> str:
        outcome = "failed"  # left for the next sweep
        try:
            result = self.expire(account_id, hold_id)
        except HoldNotOpen as refused:  # captured or released first, or not due yet
            if (refused.details or {}).get("status") != HoldStatus.OPEN.value:
                outcome = "closed"
        except (CreditsError, ServiceBusy) as failure:  # another sweep's, or throttled
            logger.warning("hold not expired: %r", failure, extra={"holdId": hold_id})
        else:
            if result is None:
                # Not open on the account item: closed, its close still on its way through
                # the stream. Out of the index, so that it does not come up each minute.
                self._holds.unlist(account_id, hold_id)
                outcome = "closed"
            else:
                outcome = "closed" if result.replayed else "expired"
        return outcome


def _release(
    hold_id: str,
    held: OpenHold,
    reason: ReleaseReason,
    description: str,
    *,
    actor: str | None = None,
) -> Operation:
    """The release of all of an open hold: by its service or an operator, or as expired."""
    return Operation(
        type=EntryType.RELEASE,
        amount=0,
        held=-held.amount,
        hold_id=hold_id,
        reason=reason,
        description=description,
        actor=actor,
    )
