"""HOLD items: each hold's description and fate, for listings, for telling a closed hold
from an unknown one, and (while open) in the sparse `ExpiryIndex` the ExpirerFunction
sweeps. Written from the account's stream (`ledger.materializer`, `ledger.reconciler`), so
they follow the account item's `holds` map, which alone decides whether a hold is open.

The writes commute: a hold entry sets the description and, only while no close has been
recorded, the open state and index keys; a close sets the final state and leaves the index.
Redeliveries and out-of-order writes of one hold's entries end in the same item."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.models import (
    EntryType,
    Hold,
    HoldStatus,
    LedgerEntry,
    ReleaseReason,
)
from serverless_credits.domain.money import normalize
from serverless_credits.storage import expiry_index, keys
from serverless_credits.storage.items import (
    Table,
    assignments,
    error_code,
    key,
    storage_failure,
)

HOLD_KIND = "HOLD"  # its shards in the expiry index


class HoldStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def get(self, account_id: str, hold_id: str) -> Hold | None:
        item = self._table.get(keys.holds_pk(account_id), hold_id, consistent=True)
        return Hold.model_validate(item) if item else None

    def get_many(self, account_id: str, hold_ids: Iterable[str]) -> dict[str, Hold]:
        """The HOLD items of `hold_ids` that exist."""
        items = self._table.get_many(keys.holds_pk(account_id), hold_ids)
        return {hold.hold_id: hold for hold in map(Hold.model_validate, items)}

    def record(self, entry: LedgerEntry) -> None:
        """Record what a hold, capture or release entry did to its hold."""
        if entry.hold_id is None:
            return
        if entry.type is EntryType.HOLD:
            self._opened(entry)
        else:
            self._closed(entry)

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Open holds whose expiry is at or before `now`, oldest first per shard: (account
        id, hold id) pairs, at most `limit` per shard."""
        return expiry_index.due(self._table, HOLD_KIND, now, limit)

    def unlist(self, account_id: str, hold_id: str) -> None:
        """Take a hold the account item no longer has out of the expiry index (its close is
        late through the stream), so that it cannot crowd due holds out of a sweep."""
        expiry_index.unlist(self._table, keys.holds_pk(account_id), hold_id)

    # ------------------------------------------------------------ writes
    def _opened(self, entry: LedgerEntry) -> None:
        described = {
            "accountId": entry.account_id,
            "holdId": entry.hold_id,
            "amount": normalize(entry.held or Decimal(0)),
            "createdAt": entry.created_at,
            "expiresAt": entry.expires_at,
            "description": entry.description,
            "metadata": entry.metadata,
            "action": entry.action,
            "endpoint": entry.endpoint,
            "openedBy": entry.transaction_id,
        }
        assert entry.hold_id is not None  # noqa: S101 - checked by `record`
        listed = (
            expiry_index.listing(HOLD_KIND, entry.account_id, entry.hold_id, entry.expires_at)
            if entry.expires_at
            else {}
        )
        opening = {**described, "status": HoldStatus.OPEN, **listed}
        try:
            self._set(entry, opening, condition="attribute_not_exists(#status)")
        except _Refused:
            # Closed already (its close was written first) or written before: describe it
            # only, never reopen it.
            self._set(entry, described)

    def _closed(self, entry: LedgerEntry) -> None:
        held = -(entry.held or Decimal(0))
        captured = -entry.amount if entry.type is EntryType.CAPTURE else Decimal(0)
        if entry.type is EntryType.CAPTURE:
            status = HoldStatus.CAPTURED
        elif entry.reason is ReleaseReason.EXPIRED:
            status = HoldStatus.EXPIRED
        else:
            status = HoldStatus.RELEASED
        closing = {
            "accountId": entry.account_id,
            "holdId": entry.hold_id,
            "amount": normalize(held),
            "status": status,
            "captured": normalize(captured),
            "released": normalize(held - captured),
            "closedAt": entry.created_at,
            "closedBy": entry.transaction_id,
        }
        self._set(entry, closing, remove=("expiryShard", "expiryAt"))

    def _set(
        self,
        entry: LedgerEntry,
        attributes: dict[str, Any],
        *,
        condition: str | None = None,
        remove: tuple[str, ...] = (),
    ) -> None:
        assigning, names, assigned = assignments(
            {name: value for name, value in attributes.items() if value is not None}
        )
        expression = f"SET {assigning}"
        if remove:
            names.update({f"#r{i}": name for i, name in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        request: dict[str, Any] = {
            "TableName": self._table.name,
            "Key": key(keys.holds_pk(entry.account_id), str(entry.hold_id)),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": assigned,
        }
        if condition is not None:
            request["ConditionExpression"] = condition
            names["#status"] = "status"
        try:
            self._table.client.update_item(**request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise _Refused from exc
            raise storage_failure("record hold", exc) from exc


class _Refused(Exception):
    pass
