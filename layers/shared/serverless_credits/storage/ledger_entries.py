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
DEFAULT_MAX_SCANNED = 1_000  # items one page may examine (the reads layer sets its own)
MAX_QUERIES = 4  # Queries one page may issue (each reads at most 1 MB)
_AS_MANY_AS_ALLOWED = 10_000


@dataclass(frozen=True)
class EntryRange:
    """Which entries a page may hold: a sequence range (from the day index) and exact
    times within it."""

    first_sequence: int | None = None
    last_sequence: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    entry_type: EntryType | None = None


@dataclass(frozen=True)
class EntryPage:
    """What `read_page` found: the page, the sequence to continue after (None at the end),
    and whether it stopped early (its budget spent before the page filled: `entries` may be
    short or empty although more entries of the scope remain past `next_sequence`)."""

    entries: list[LedgerEntry]
    next_sequence: int | None
    stopped_early: bool = False
    skipped: int = 0  # entries of the scope skipped (fewer than asked: the scope or the
    # budget ran out first)
    scanned: int = 0  # items DynamoDB examined (ScannedCount), matching or not
    queries: int = 0


def _next_size(needed: int, scanned: int, matched: int) -> int:
    """The `Limit` of the next Query: the entries still needed, scaled by how many items
    each match has cost so far (all that is left, when none has matched yet)."""
    if scanned == 0:
        return needed
    if matched == 0:
        return _AS_MANY_AS_ALLOWED  # capped by the budget
    return needed * -(-scanned // matched) * 2


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
        """A page of entries and the sequence to continue after (None at the end), with no
        read budget: for operators' unfiltered pages (`read_page` bounds the customer's)."""
        found = self.read_page(
            account_id,
            limit=limit,
            newest_first=newest_first,
            after_sequence=after_sequence,
            scope=scope,
            max_scanned=None,
            max_queries=None,
        )
        return found.entries, found.next_sequence

    def read_page(
        self,
        account_id: str,
        *,
        limit: int,
        newest_first: bool = True,
        after_sequence: int | None = None,
        scope: EntryRange | None = None,
        skip: int = 0,
        max_scanned: int | None = DEFAULT_MAX_SCANNED,
        max_queries: int | None = MAX_QUERIES,
    ) -> EntryPage:
        """Up to `limit` entries of `scope` after skipping `skip` of them, reading at most
        `max_scanned` items in at most `max_queries` Queries (None: no bound).

        A filter (type, exact times) is applied after DynamoDB reads the items, so its cost
        is the items it *examines*, matching or not; `Limit` counts those, which is what
        bounds the page. The first Query asks for just the page (plus one, which proves a
        next page without another call): unfiltered, or with a filter most entries match,
        that is the only one. Later Queries size themselves on the matches seen so far,
        within what is left of the budget. When the budget (or the Query count) is spent
        before the page fills, the page is partial: `next_sequence` is then the last
        sequence examined, so the next page continues the scan where this one stopped."""
        scope = scope or EntryRange()
        floor = scope.first_sequence or 0
        low = keys.entry_sk(floor)
        high = keys.entry_sk(scope.last_sequence or 10**keys.SEQUENCE_DIGITS - 1)
        if after_sequence is not None:
            if newest_first:
                high = keys.entry_sk(after_sequence - 1)
            else:
                low = keys.entry_sk(after_sequence + 1)
        if low > high:
            return EntryPage([], None)
        request = _filtered(scope)
        request["KeyConditionExpression"] = "pk = :pk AND sk BETWEEN :low AND :high"
        request["ScanIndexForward"] = not newest_first
        request["ExpressionAttributeValues"].update(
            values(pk=keys.ledger_pk(account_id), low=low, high=high)
        )
        wanted = skip + limit + 1
        entries: list[LedgerEntry] = []
        scanned = queries = 0
        last: dict[str, Any] | None = None
        while True:
            size = _next_size(wanted - len(entries), scanned, len(entries))
            if max_scanned is not None:
                size = min(size, max_scanned - scanned)
            try:
                response = self._table.client.query(
                    **request, TableName=self._table.name, Limit=size, **start_key(last)
                )
            except ClientError as exc:
                raise storage_failure("query ledger", exc) from exc
            queries += 1
            scanned += int(response.get("ScannedCount", len(response["Items"])))
            entries.extend(LedgerEntry.model_validate(from_item(i)) for i in response["Items"])
            if len(entries) >= wanted:
                page = entries[skip : skip + limit]
                return EntryPage(
                    page, page[-1].sequence, skipped=skip, scanned=scanned, queries=queries
                )
            last = response.get("LastEvaluatedKey")
            stopped_at = keys.sequence_of_sk(last["sk"]["S"]) if last else None
            if stopped_at is None or (newest_first and stopped_at <= max(floor, 1)):
                return EntryPage(
                    entries[skip:],
                    None,
                    skipped=min(len(entries), skip),
                    scanned=scanned,
                    queries=queries,
                )
            out_of_budget = max_scanned is not None and scanned >= max_scanned
            if out_of_budget or (max_queries is not None and queries >= max_queries):
                # Spent: a partial page, continued after the last item examined.
                return EntryPage(
                    entries[skip:],
                    stopped_at,
                    stopped_early=True,
                    skipped=min(len(entries), skip),
                    scanned=scanned,
                    queries=queries,
                )

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
