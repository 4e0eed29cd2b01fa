"""The sparse `ExpiryIndex` (template.yaml) the ExpirerFunction sweeps: a HOLD item while
its hold is open, a LOT item while its lot may still have credit to expire. Each kind has
its own few shards, so no single partition takes every write and a sweep of one kind never
reads the other's."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    from_item,
    key,
    storage_failure,
    values,
)

SHARDS = 8


def shard(kind: str, account_id: str, item_id: str) -> str:
    digest = hashlib.sha256(f"{account_id}/{item_id}".encode()).digest()
    return f"{kind}#{digest[0] % SHARDS}"


def shards(kind: str) -> list[str]:
    return [f"{kind}#{n}" for n in range(SHARDS)]


def sortable(moment: datetime) -> str:
    """UTC, fixed width: sorts as the times do."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def listing(kind: str, account_id: str, item_id: str, due_at: datetime) -> dict[str, str]:
    """The index attributes that list an item as due at `due_at`."""
    return {
        "expiryShard": shard(kind, account_id, item_id),
        "expiryAt": f"{sortable(due_at)}#{account_id}#{item_id}",
    }


def due(table: Table, kind: str, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(account id, item id) of the items of `kind` due at or before `now`, oldest first
    per shard, at most `limit` per shard: read from the index key itself
    (`<time>#<account id>#<item id>`), so the index projects nothing for it."""
    found: list[tuple[str, str]] = []
    for name in shards(kind):
        try:
            response = table.client.query(
                TableName=table.name,
                IndexName=keys.EXPIRY_INDEX,
                KeyConditionExpression="expiryShard = :shard AND expiryAt <= :now",
                ExpressionAttributeValues=values(shard=name, now=sortable(now) + "~"),
                ProjectionExpression="expiryAt",
                Limit=limit,
            )
        except ClientError as exc:
            raise storage_failure(f"query due {kind}", exc) from exc
        for item in map(from_item, response.get("Items", [])):
            _, account_id, item_id = str(item["expiryAt"]).split("#")
            found.append((account_id, item_id))
    return found


def unlist(table: Table, pk: str, sk: str) -> None:
    """Take an item out of the index (nothing left for the ExpirerFunction to do)."""
    request: dict[str, Any] = {
        "TableName": table.name,
        "Key": key(pk, sk),
        "UpdateExpression": "REMOVE expiryShard, expiryAt",
        "ConditionExpression": "attribute_exists(pk)",
    }
    try:
        table.client.update_item(**request)
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise storage_failure("unlist", exc) from exc
