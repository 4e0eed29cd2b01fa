"""Daily usage items: counters as top-level attributes (`ADD a.b` fails while map `a` is
missing), the day's first and last ledger sequence (the transactions API's time index),
and `lastVersion`, which makes the materializer's counting idempotent.

Endpoint labels are the caller's: each distinct one adds counters to the day's item, so
their number is capped (`MAX_ENDPOINTS_PER_DAY`, docs/http-api.md "Numbers and limits").
The item keeps the set of its labels (`endpoints`); every write is conditioned on that
set, and past the cap a new label is counted under `OTHER_ENDPOINT`. Without the cap,
enough distinct labels pushed one item past DynamoDB's 400 KB and every later write of it
failed until the next day. (Action labels need no cap: only priced actions are charged.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.errors import ServiceBusy
from serverless_credits.domain.models import DailyUsage, UsageIncrement
from serverless_credits.domain.outcomes import Counted
from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    key,
    old_image,
    serialize,
    storage_failure,
    values,
)

TYPE_PREFIX = "type#"
ENDPOINT_CALLS_PREFIX = "endpoint#"
ENDPOINT_CREDITS_PREFIX = "endpointCredits#"
MAX_ENDPOINTS_PER_DAY = 50
OTHER_ENDPOINT = "other"  # the overflow bucket: always admitted, never in the set
ENDPOINTS = "endpoints"  # the day's distinct endpoint labels (a string set)
# Each failed attempt learns the item's label set (ALL_OLD), so only a concurrent writer
# adding labels makes the next one fail: the set grows to the cap at most.
MAX_ATTEMPTS = MAX_ENDPOINTS_PER_DAY + 10


def _labels(increments: Sequence[UsageIncrement]) -> list[str]:
    found = {
        label
        for usage in increments
        for label in (*usage.by_endpoint, *usage.by_endpoint_credits)
        if label != OTHER_ENDPOINT
    }
    return sorted(found)


def _fold(counts: Mapping[str, Any], admitted: frozenset[str]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for label, value in counts.items():
        name = label if label in admitted or label == OTHER_ENDPOINT else OTHER_ENDPOINT
        folded[name] = folded.get(name, 0) + value
    return folded


class _LabelGuard:
    """Which of a write's endpoint labels the day's item admits, and the condition that
    keeps that decision true when the write lands."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.seen: frozenset[str] | None = None  # the item's set, once a failure showed it

    def learn(self, item: Mapping[str, Any] | None) -> None:
        self.seen = frozenset((item or {}).get(ENDPOINTS) or ())

    def admitted(self) -> frozenset[str]:
        if self.seen is None:  # optimistic: all new, if that fits under the cap
            return frozenset(self.labels[:MAX_ENDPOINTS_PER_DAY])
        room = max(MAX_ENDPOINTS_PER_DAY - len(self.seen), 0)
        new = [label for label in self.labels if label not in self.seen]
        return frozenset([label for label in self.labels if label in self.seen] + new[:room])

    def apply(self, increments: Sequence[UsageIncrement]) -> list[UsageIncrement]:
        admitted = self.admitted()
        return [
            usage.model_copy(
                update={
                    "by_endpoint": _fold(usage.by_endpoint, admitted),
                    "by_endpoint_credits": _fold(usage.by_endpoint_credits, admitted),
                }
            )
            for usage in increments
        ]

    def clauses(self, names: dict[str, str], named: dict[str, Any]) -> tuple[str, str | None]:
        """(the ADD clause of the admitted labels, the condition), both possibly empty."""
        if not self.labels:
            return "", None
        admitted = sorted(self.admitted())
        names["#labels"] = ENDPOINTS
        add = ""
        if admitted:
            named[":labels"] = {"SS": admitted}
            add = "#labels :labels"
        if self.seen is None:
            named[":room"] = serialize(MAX_ENDPOINTS_PER_DAY - len(admitted))
            return add, "(attribute_not_exists(#labels) OR size(#labels) <= :room)"
        if not self.seen:
            return add, "attribute_not_exists(#labels)"
        named[":seen"] = serialize(len(self.seen))
        return add, "size(#labels) = :seen"  # the set only grows: same size, same set


SEQUENCE_LOOKUP_DAYS = 16  # day items the transactions' time index reads per side


def _additions(usage: UsageIncrement) -> dict[str, Decimal]:
    additions: dict[str, Decimal] = {
        "calls": Decimal(usage.calls),
        "failed": Decimal(usage.failed),
        "creditsUsed": usage.credits_used,
    }
    additions.update({TYPE_PREFIX + k: v for k, v in usage.by_type.items()})
    additions.update({ENDPOINT_CALLS_PREFIX + k: Decimal(v) for k, v in usage.by_endpoint.items()})
    additions.update({ENDPOINT_CREDITS_PREFIX + k: v for k, v in usage.by_endpoint_credits.items()})
    return additions


def _sum(increments: Sequence[UsageIncrement]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for usage in increments:
        for name, value in _additions(usage).items():
            total[name] = total.get(name, Decimal(0)) + value
    return total


class UsageStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def add(self, account_id: str, usage: UsageIncrement) -> None:
        """Add to a day (no version condition): a declined call (no ledger version), or a
        gap the reconciler filled (its usage was never counted: the materializer counts
        after it writes entries). Conditioned only on the endpoint labels' cap."""
        guard = _LabelGuard(_labels([usage]))
        for _ in range(MAX_ATTEMPTS):
            expression, names, named = _expression(_sum(guard.apply([usage])), usage.day)
            add, condition = guard.clauses(names, named)
            try:
                self._table.client.update_item(
                    **_request(self._table.name, account_id, usage.day),
                    UpdateExpression=_with_add(expression, add),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=named,
                    **_condition(condition),
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise storage_failure("add usage", exc) from exc
                guard.learn(old_image(exc))
                continue
            return
        raise ServiceBusy("add usage: endpoint labels kept changing")

    def count(self, account_id: str, day: date, counted: Sequence[Counted]) -> None:
        """Add ledger versions to a day once: versions at or below the item's `lastVersion`
        were counted by an earlier delivery and are left out."""
        pending = sorted(counted, key=lambda c: c.version)
        guard = _LabelGuard(_labels([c.usage for c in pending if c.usage is not None]))
        for _ in range(MAX_ATTEMPTS):
            if not pending:
                return
            # Only the labels still to count compete for the day's remaining slots.
            guard.labels = _labels([c.usage for c in pending if c.usage is not None])
            increments = guard.apply([c.usage for c in pending if c.usage is not None])
            expression, names, named = _expression(_sum(increments), day)
            add, labels_condition = guard.clauses(names, named)
            indexed = [c.version for c in pending if c.indexed]
            extra = ", lastVersion = :last"
            named.update(values(last=pending[-1].version, first=pending[0].version))
            if indexed:
                extra += ", firstSeq = if_not_exists(firstSeq, :firstSeq), lastSeq = :lastSeq"
                named.update(values(firstSeq=indexed[0], lastSeq=indexed[-1]))
            condition = "(attribute_not_exists(lastVersion) OR lastVersion < :first)"
            if labels_condition:
                condition += " AND " + labels_condition
            try:
                self._table.client.update_item(
                    **_request(self._table.name, account_id, day),
                    UpdateExpression=_with_add(expression, add) + extra,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=named,
                    **_condition(condition),
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise storage_failure("count usage", exc) from exc
                item = old_image(exc)
                seen = int((item or {}).get("lastVersion", 0))
                pending = [c for c in pending if c.version > seen]
                guard.learn(item)
                continue
            return
        raise ServiceBusy("count usage: endpoint labels kept changing")

    def index(self, account_id: str, day: date, sequence: int) -> None:
        """Widen a day's sequence range to cover `sequence` (an entry the reconciler filled)."""
        for attribute, widens in (("firstSeq", ">"), ("lastSeq", "<")):
            try:
                self._table.client.update_item(
                    TableName=self._table.name,
                    Key=key(keys.usage_pk(account_id), keys.usage_sk(day)),
                    UpdateExpression="SET #seq = :seq, #day = :day",
                    ConditionExpression=f"attribute_not_exists(#seq) OR #seq {widens} :seq",
                    ExpressionAttributeNames={"#seq": attribute, "#day": "day"},
                    ExpressionAttributeValues=values(seq=sequence, day=day.isoformat()),
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise storage_failure("index usage day", exc) from exc

    def days(self, account_id: str, first: date, last: date) -> list[dict[str, Any]]:
        """The raw day items between two days inclusive: one Query (at most 366 rows)."""
        return self._table.query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=values(
                pk=keys.usage_pk(account_id),
                first=keys.usage_sk(first),
                last=keys.usage_sk(last),
            ),
        )

    def daily(self, account_id: str, first: date, last: date) -> list[DailyUsage]:
        return [_daily_usage(item) for item in self.days(account_id, first, last)]

    def sequence_bounds(
        self, account_id: str, first: date, last: date, *, max_days: int = SEQUENCE_LOOKUP_DAYS
    ) -> tuple[int | None, int | None] | None:
        """The first and last ledger sequence of the days between `first` and `last`, from
        the first and the last day there with entries, however long the range: from each
        end, a Query of one day item, and only when that day had no entries (declined calls
        only) a second one of at most `max_days - 1` more. None when no day there has
        entries; a bound is None (unknown: no narrowing on that side) when `max_days` days
        in a row had none."""
        bounds: list[int | None] = []
        for attribute, forward in (("firstSeq", True), ("lastSeq", False)):
            request: dict[str, Any] = {
                "TableName": self._table.name,
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :last",
                "FilterExpression": "attribute_exists(#seq)",
                "ProjectionExpression": "#seq",
                "ExpressionAttributeNames": {"#seq": attribute},
                "ExpressionAttributeValues": values(
                    pk=keys.usage_pk(account_id),
                    first=keys.usage_sk(first),
                    last=keys.usage_sk(last),
                ),
                "ScanIndexForward": forward,
            }
            found: int | None = None
            for limit in (1, max_days - 1):
                try:
                    response = self._table.client.query(**request, Limit=limit)
                except ClientError as exc:
                    raise storage_failure("query usage days", exc) from exc
                items = response.get("Items", [])
                if items:
                    found = int(items[0][attribute]["N"])
                    break
                if "LastEvaluatedKey" not in response:
                    return None  # no day of the range has entries (both are set together)
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            bounds.append(found)
        return bounds[0], bounds[1]


def _request(table: str, account_id: str, day: date) -> dict[str, Any]:
    return {"TableName": table, "Key": key(keys.usage_pk(account_id), keys.usage_sk(day))}


def _condition(condition: str | None) -> dict[str, Any]:
    if condition is None:
        return {}
    return {"ConditionExpression": condition, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}


def _with_add(expression: str, add: str) -> str:
    """`expression` (`[ADD counters ]SET #day = :day`) with one more ADD clause."""
    if not add:
        return expression
    if expression.startswith("ADD "):
        return f"ADD {add}, {expression[len('ADD ') :]}"
    return f"ADD {add} {expression}"


def _expression(
    additions: Mapping[str, Decimal], day: date
) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#u{i}": name for i, name in enumerate(additions)}
    named = {f":u{i}": serialize(value) for i, value in enumerate(additions.values())}
    names["#day"] = "day"
    named[":day"] = serialize(day.isoformat())
    clauses = ", ".join(f"#u{i} :u{i}" for i in range(len(additions)))
    return (f"ADD {clauses} " if clauses else "") + "SET #day = :day", names, named


def _daily_usage(item: Mapping[str, Any]) -> DailyUsage:
    by_type: dict[str, Decimal] = {}
    by_endpoint: dict[str, int] = {}
    by_endpoint_credits: dict[str, Decimal] = {}
    for name, value in item.items():
        if name.startswith(TYPE_PREFIX):
            by_type[name[len(TYPE_PREFIX) :]] = Decimal(value)
        elif name.startswith(ENDPOINT_CALLS_PREFIX):
            by_endpoint[name[len(ENDPOINT_CALLS_PREFIX) :]] = int(value)
        elif name.startswith(ENDPOINT_CREDITS_PREFIX):
            by_endpoint_credits[name[len(ENDPOINT_CREDITS_PREFIX) :]] = Decimal(value)
    return DailyUsage(
        day=date.fromisoformat(str(item["day"])),
        calls=int(item.get("calls", 0)),
        failed=int(item.get("failed", 0)),
        credits_used=Decimal(item.get("creditsUsed", 0)),
        by_type=by_type,
        by_endpoint=by_endpoint,
        by_endpoint_credits=by_endpoint_credits,
    )
