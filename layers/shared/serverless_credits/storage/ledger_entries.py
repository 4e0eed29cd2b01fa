"""Ledger entries (immutable, one per account version, keyed by sequence) and the ledger's
head: how far the materializer has written an account's ledger, and the time of that entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.models import EntryType, LedgerEntry
from serverless_credits.domain.outcomes import EntryWrite, LedgerHead
from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    from_item,
    key,
    old_image,
    start_key,
    storage_failure,
    to_item,
    values,
)

FILLED_MARK = "filledByReconciler"


@dataclass(frozen=True)
class EntryRange:
    """Which entries a page may hold: a sequence range (from the day index) and exact
    times within it."""

    first_sequence: int | None = None
    last_sequence: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    entry_type: EntryType | None = None


def _filtered(scope: EntryRange) -> dict[str, Any]:
    """The filter part of a ledger Query: type and exact times."""
    filters: list[str] = []
    named: dict[str, Any] = {}
    request: dict[str, Any] = {}
    if scope.entry_type is not None:
        filters.append("#type = :type")
        request["ExpressionAttributeNames"] = {"#type": "type"}
        named["type"] = scope.entry_type.value
    if scope.created_from is not None:
        filters.append("createdAt >= :from")
        named["from"] = scope.created_from
    if scope.created_to is not None:
        filters.append("createdAt <= :to")
        named["to"] = scope.created_to
    if filters:
        request["FilterExpression"] = " AND ".join(filters)
    request["ExpressionAttributeValues"] = values(**named)
    return request


class LedgerEntryStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def put(self, entry: LedgerEntry, *, filled: bool = False) -> EntryWrite:
        """Write an entry once; say who wrote it first when its sequence is already there.
        `filled`: the reconciler writes it (and marks it so)."""
        item = to_item(entry, pk=keys.ledger_pk(entry.account_id), sk=keys.entry_sk(entry.sequence))
        if filled:
            item[FILLED_MARK] = {"BOOL": True}
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                existing = old_image(exc) or {}
                return EntryWrite.FILLED if existing.get(FILLED_MARK) else EntryWrite.EXISTED
            raise storage_failure("put entry", exc) from exc
        return EntryWrite.WRITTEN

    def get(self, account_id: str, sequence: int) -> LedgerEntry | None:
        item = self._table.get(keys.ledger_pk(account_id), keys.entry_sk(sequence), consistent=True)
        return LedgerEntry.model_validate(item) if item else None

    def head(self, account_id: str) -> LedgerHead:
        item = self._table.get(keys.ledger_pk(account_id), keys.LEDGER_HEAD_SK, consistent=True)
        if not item:
            return LedgerHead(0, None)
        at = item.get("at")
        return LedgerHead(int(item["version"]), datetime.fromisoformat(at) if at else None)

    def advance_head(self, account_id: str, head: LedgerHead) -> None:
        """Move the head forward (never back: a late batch of older versions is a no-op)."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.ledger_pk(account_id), keys.LEDGER_HEAD_SK),
                UpdateExpression="SET version = :version, #at = :at",
                ConditionExpression="attribute_not_exists(version) OR version < :version",
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues=values(version=head.version, at=head.at),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise storage_failure("advance head", exc) from exc

    def page(
        self,
        account_id: str,
        *,
        limit: int,
        newest_first: bool = True,
        after_sequence: int | None = None,
        scope: EntryRange | None = None,
    ) -> tuple[list[LedgerEntry], int | None]:
        """A page of entries and the sequence to continue after (None at the end).

        One Query per page unless a filter leaves the page short; the key range (a
        sequence range, narrowed by a cursor) bounds what a filter can make it read."""
        scope = scope or EntryRange()
        low = keys.entry_sk(scope.first_sequence or 0)
        high = keys.entry_sk(scope.last_sequence or 10**keys.SEQUENCE_DIGITS - 1)
        if after_sequence is not None:
            if newest_first:
                high = keys.entry_sk(after_sequence - 1)
            else:
                low = keys.entry_sk(after_sequence + 1)
        if low > high:
            return [], None
        request = _filtered(scope)
        request["KeyConditionExpression"] = "pk = :pk AND sk BETWEEN :low AND :high"
        request["ScanIndexForward"] = not newest_first
        request["ExpressionAttributeValues"].update(
            values(pk=keys.ledger_pk(account_id), low=low, high=high)
        )
        entries: list[LedgerEntry] = []
        last: dict[str, Any] | None = None
        while True:
            # One item more than the page proves there is a next page without another call.
            try:
                response = self._table.client.query(
                    **request,
                    TableName=self._table.name,
                    Limit=limit + 1 - len(entries),
                    **start_key(last),
                )
            except ClientError as exc:
                raise storage_failure("query ledger", exc) from exc
            entries.extend(LedgerEntry.model_validate(from_item(i)) for i in response["Items"])
            if len(entries) > limit:
                return entries[:limit], entries[limit - 1].sequence
            last = response.get("LastEvaluatedKey")
            if not last:
                return entries, None

    def sequences(self, account_id: str) -> list[tuple[int, Any, Any]]:
        """(sequence, amount, balanceAfter) of every entry, oldest first: for audits."""
        items = self._table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ProjectionExpression="#sequence, amount, balanceAfter",
            ExpressionAttributeNames={"#sequence": "sequence"},
            ExpressionAttributeValues=values(
                pk=keys.ledger_pk(account_id), prefix=keys.ENTRY_PREFIX
            ),
        )
        return [(int(i["sequence"]), i["amount"], i["balanceAfter"]) for i in items]
