"""Daily usage items: counters as top-level attributes (`ADD a.b` fails while map `a` is
missing), the day's first and last ledger sequence (the transactions API's time index),
and `lastVersion`, which makes the materializer's counting idempotent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

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
        """Add to a day unconditionally: a declined call (no ledger version), or a gap the
        reconciler filled (its usage was never counted: the materializer counts after it
        writes entries)."""
        expression, names, named = _expression(_additions(usage), usage.day)
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.usage_pk(account_id), keys.usage_sk(usage.day)),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=named,
            )
        except ClientError as exc:
            raise storage_failure("add usage", exc) from exc

    def count(self, account_id: str, day: date, counted: Sequence[Counted]) -> None:
        """Add ledger versions to a day once: versions at or below the item's `lastVersion`
        were counted by an earlier delivery and are left out."""
        pending = sorted(counted, key=lambda c: c.version)
        while pending:
            additions = _sum([c.usage for c in pending if c.usage is not None])
            expression, names, named = _expression(additions, day)
            indexed = [c.version for c in pending if c.indexed]
            extra = ", lastVersion = :last"
            named.update(values(last=pending[-1].version, first=pending[0].version))
            if indexed:
                extra += ", firstSeq = if_not_exists(firstSeq, :firstSeq), lastSeq = :lastSeq"
                named.update(values(firstSeq=indexed[0], lastSeq=indexed[-1]))
            try:
                self._table.client.update_item(
                    TableName=self._table.name,
                    Key=key(keys.usage_pk(account_id), keys.usage_sk(day)),
                    UpdateExpression=expression + extra,
                    ConditionExpression="attribute_not_exists(lastVersion) OR lastVersion < :first",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=named,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise storage_failure("count usage", exc) from exc
                seen = int((old_image(exc) or {}).get("lastVersion", 0))
                pending = [c for c in pending if c.version > seen]
                continue
            return

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
