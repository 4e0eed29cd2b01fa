"""LOT items: what each credit lot was granted as (amount, priority, expiry, reference),
for the balances listing and its history, and - while the lot may still hold credit to
expire - in the sparse `ExpiryIndex` the ExpirerFunction sweeps. Written once, from the
account's stream (`ledger.materializer`, `ledger.reconciler`), when an entry opens a lot;
what is left of a lot is the account item's `lots` map alone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.lots import rank_of
from serverless_credits.domain.models import EntryType, LedgerEntry, Lot
from serverless_credits.domain.money import normalize
from serverless_credits.storage import expiry_index, keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    from_item,
    key,
    storage_failure,
    to_item,
    values,
)

LOT_KIND = "LOT"  # its shards in the expiry index


class LotStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def get_many(self, account_id: str, lot_ids: Iterable[str]) -> dict[str, Lot]:
        items = self._table.get_many(keys.lots_pk(account_id), lot_ids)
        return {lot.lot_id: lot for lot in map(Lot.model_validate, items)}

    def page(
        self, account_id: str, limit: int, after: str | None = None
    ) -> tuple[list[Lot], str | None]:
        """Every lot the account was ever granted, in lot-id (burn) order, a page at a
        time: the lots and the last lot id when more may follow."""
        request: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk=keys.lots_pk(account_id)),
            "Limit": limit,
        }
        if after is not None:
            request["ExclusiveStartKey"] = key(keys.lots_pk(account_id), after)
        try:
            response = self._table.client.query(**request)
        except ClientError as exc:
            raise storage_failure("query lots", exc) from exc
        lots = [Lot.model_validate(from_item(item)) for item in response.get("Items", [])]
        more = response.get("LastEvaluatedKey")
        return lots, (lots[-1].lot_id if more and lots else None)

    def record(self, entry: LedgerEntry) -> None:
        """Record the lot an entry opened: a credit's own, or a refund's new lot."""
        lot = lot_opened(entry)
        if lot is None:
            return
        listed = (
            expiry_index.listing(LOT_KIND, lot.account_id, lot.lot_id, lot.expires_at)
            if lot.expires_at is not None
            else {}
        )
        item = to_item(lot, pk=keys.lots_pk(lot.account_id), sk=lot.lot_id, **listed)
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item={name: value for name, value in item.items() if "NULL" not in value},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # written before
                raise storage_failure("record lot", exc) from exc

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Lots whose expiry is at or before `now` that may still hold credit: (account
        id, lot id) pairs, at most `limit` per shard."""
        return expiry_index.due(self._table, LOT_KIND, now, limit)

    def unlist(self, account_id: str, lot_id: str) -> None:
        """Take a lot the account item no longer has out of the expiry index."""
        expiry_index.unlist(self._table, keys.lots_pk(account_id), lot_id)


def lot_opened(entry: LedgerEntry) -> Lot | None:
    """The lot `entry` opened, if it opened one."""
    lot_id = entry.lot_id
    rank = rank_of(lot_id) if lot_id is not None else None
    if lot_id is None or rank is None:
        return None
    if entry.type in _CREDITS:
        initial = entry.amount  # part of it may have repaid an overdraft
    else:  # a refund's or void's new lot: what it received, if it was needed
        received = (entry.lots or {}).get(lot_id)
        if received is None:
            return None
        initial = received
    return Lot(
        account_id=entry.account_id,
        lot_id=lot_id,
        source=entry.type,
        initial_amount=normalize(initial),
        priority=rank.priority,
        expires_at=rank.expires,
        granted_at=entry.created_at,
        reference=entry.reference,
        description=entry.description,
        granted_by=entry.transaction_id,
    )


_CREDITS = frozenset({EntryType.TOPUP, EntryType.GRANT, EntryType.ADJUSTMENT})

__all__ = ["LOT_KIND", "LotStore", "lot_opened"]
