"""Lot use cases: the expiry of credit lots past their `expiresAt`, and the listing of an
account's lots.

An expiry is one operation through the write path (`ledger.write_path`) under its own
idempotency key: ONE conditional update of the account item that takes the expired lot's
remainder - at most what is `available`, so never credit an open hold reserved - out of
the balance, conditioned on the remainder it planned on (`domain.lots.plan_expiry`). What it
cannot take stays pinned on the item until the holds close; a later sweep takes it. Debits
never burn an expired lot, swept or not (`domain.lots.plan_burn`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from serverless_credits.domain.errors import (
    AccountNotFound,
    CreditsError,
    LotChanged,
    ServiceBusy,
)
from serverless_credits.domain.idempotency import fingerprint
from serverless_credits.domain.lots import expirable, lot_expired
from serverless_credits.domain.models import Account, EntryType, Lot, Operation, OperationResult
from serverless_credits.ledger.ports import Accounts, LotItems
from serverless_credits.ledger.sweeps import expire_each
from serverless_credits.ledger.write_path import WritePath, WriteRequest

logger = logging.getLogger(__name__)

EXPIRED_DESCRIPTION = "Credits expired"
SWEEP_LIMIT = 200  # due lots per index shard and sweep
# A lot changed between the read and the expiry's update (a capture burned it): read again.
MAX_ATTEMPTS = 3


def expiry_key(lot_id: str, remaining: str) -> str:
    """The idempotency key of one expiry step of a lot: the same remainder expired twice
    is one operation; a pinned lot's later step (a smaller remainder) is another."""
    return f"expire:{lot_id}:{remaining}"


@dataclass(frozen=True)
class LotSweepReport:
    due: int  # LOT items the index listed as due
    expired: int  # lots this sweep took credit from
    pinned: int  # expired lots whose remainder open holds still reserve
    gone: int  # spent or expired before: taken out of the index
    failed: int  # left for the next sweep

    def as_dict(self) -> dict[str, int]:
        return {
            "due": self.due,
            "expired": self.expired,
            "pinned": self.pinned,
            "gone": self.gone,
            "failed": self.failed,
        }


class LotOperations:
    def __init__(
        self,
        *,
        accounts: Accounts,
        lots: LotItems,
        write_path: WritePath,
        clock: Callable[[], datetime],
    ) -> None:
        self._accounts = accounts
        self._lots = lots
        self._write_path = write_path
        self._clock = clock

    def active(self, account_id: str) -> tuple[Account, dict[str, Lot]]:
        """The account (strongly consistent: its `lots` map) and the LOT items of its
        active lots."""
        account = self._account(account_id)
        return account, self._lots.get_many(account_id, (account.lots or {}).keys())

    def expire(
        self, account_id: str, lot_id: str, *, actor: str | None = None
    ) -> OperationResult | None:
        """Take what an expired lot holds out of the balance, as far as open holds let it;
        None when there is nothing to take now (spent, not expired, or pinned by holds).
        `actor`: the operator who asked for it now (`credits-admin lots expire`)."""
        account = self._account(account_id)
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            remaining = (account.lots or {}).get(lot_id)
            amount = expirable(account, lot_id, now)
            if remaining is None or amount <= 0:
                return None
            seen = f"{remaining:f}"
            operation = Operation(
                type=EntryType.EXPIRY,
                amount=-amount,
                description=EXPIRED_DESCRIPTION,
                lot_id=lot_id,
                lot_seen=remaining,
                actor=actor,
            )
            request = WriteRequest(
                account_id,
                expiry_key(lot_id, seen),
                fingerprint("expire-lot", {"lotId": lot_id, "remaining": seen}),
                operation,
            )
            try:
                return self._write_path.submit(request)
            except LotChanged:
                account = self._account(account_id)  # burned or swept meanwhile
        raise ServiceBusy("the lot kept changing under its expiry")

    def sweep(self, limit: int = SWEEP_LIMIT) -> LotSweepReport:
        """Expire every lot the expiry index lists as due (the ExpirerFunction, each
        minute); lots the account item no longer has leave the index."""
        due = self._lots.due(self._clock(), limit)
        outcomes = expire_each(due, self._expire_one)
        return LotSweepReport(
            due=len(due),
            expired=outcomes.count("expired"),
            pinned=outcomes.count("pinned"),
            gone=outcomes.count("gone"),
            failed=outcomes.count("failed"),
        )

    def _expire_one(self, account_id: str, lot_id: str) -> str:
        try:
            result = self.expire(account_id, lot_id)
            account = self._accounts.get(account_id, consistent=True)
        except AccountNotFound:
            self._lots.unlist(account_id, lot_id)
            return "gone"
        except (CreditsError, ServiceBusy) as failure:  # throttled, another sweep's
            logger.warning("lot not expired: %r", failure, extra={"lotId": lot_id})
            return "failed"
        # A replay is another expirer's work (the reconciler, an operator, a racing sweep).
        expired = result is not None and not result.replayed
        if account is None or lot_id not in (account.lots or {}):
            self._lots.unlist(account_id, lot_id)  # nothing left to expire
            return "expired" if expired else "gone"
        if expired:
            return "expired"  # part of it: the rest is pinned by open holds
        if lot_expired(lot_id, self._clock()):
            return "pinned"  # open holds reserve it: a later sweep takes what they free
        return "failed"

    def _account(self, account_id: str) -> Account:
        account = self._accounts.get(account_id, consistent=True)
        if account is None:
            raise AccountNotFound(account_id)
        return account
