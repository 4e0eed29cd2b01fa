"""Idempotency records: the lease a write takes before it touches the account, then its
result. A record keeps the whole operation, so its ledger entry can always be written, and
gets its TTL only once that entry exists (the materializer sets it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.models import IdempotencyRecord, IdempotencyState, OperationResult
from serverless_credits.domain.outcomes import KeyTaken
from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    from_item,
    key,
    old_image,
    storage_failure,
    to_item,
    values,
)

BATCH_GET_LIMIT = 100


def _key(account_id: str, idempotency_key: str) -> dict[str, dict[str, str]]:
    return key(keys.idempotency_pk(account_id, idempotency_key), keys.IDEMPOTENCY_SK)


class IdempotencyStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def lease(self, record: IdempotencyRecord, now: datetime) -> None:
        """Put a pending record unless one exists; a completed record past its TTL that
        DynamoDB has not deleted yet counts as absent."""
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=to_item(
                    record,
                    pk=keys.idempotency_pk(record.account_id, record.idempotency_key),
                    sk=keys.IDEMPOTENCY_SK,
                ),
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues=values(now=int(now.timestamp())),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                image = old_image(exc)
                if image is not None:
                    raise KeyTaken(IdempotencyRecord.model_validate(image)) from exc
            raise storage_failure("lease", exc) from exc

    def get(self, account_id: str, idempotency_key: str) -> IdempotencyRecord | None:
        item = self._table.get(
            keys.idempotency_pk(account_id, idempotency_key), keys.IDEMPOTENCY_SK, consistent=True
        )
        return IdempotencyRecord.model_validate(item) if item else None

    def get_many(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], IdempotencyRecord]:
        """Records by (account id, key), strongly consistent, in as few requests as allowed."""
        pending = list(dict.fromkeys(wanted))
        found: dict[tuple[str, str], IdempotencyRecord] = {}
        while pending:
            chunk, pending = pending[:BATCH_GET_LIMIT], pending[BATCH_GET_LIMIT:]
            request: dict[str, Any] = {
                self._table.name: {
                    "Keys": [_key(account, idem) for account, idem in chunk],
                    "ConsistentRead": True,
                }
            }
            while request:
                try:
                    response = self._table.client.batch_get_item(RequestItems=request)
                except ClientError as exc:
                    raise storage_failure("batch_get_item", exc) from exc
                for item in response.get("Responses", {}).get(self._table.name, []):
                    record = IdempotencyRecord.model_validate(from_item(item))
                    found[(record.account_id, record.idempotency_key)] = record
                request = dict(response.get("UnprocessedKeys") or {})
        return found

    def by_sequence(
        self, account_id: str, sequences: Iterable[int]
    ) -> dict[int, IdempotencyRecord]:
        """Completed records of an account by the version they produced. A Scan: the
        reconciler uses it only when the ledger has a gap, which the stream never leaves."""
        wanted = sorted(set(sequences))
        found: dict[int, IdempotencyRecord] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            placeholders = {f"s{i}": sequence for i, sequence in enumerate(chunk)}
            for item in self._table.scan(
                FilterExpression="begins_with(pk, :prefix) AND #sequence IN ("
                + ", ".join(f":{name}" for name in placeholders)
                + ")",
                ExpressionAttributeNames={"#sequence": "sequence"},
                ExpressionAttributeValues=values(
                    prefix=keys.idempotency_pk(account_id, ""), **placeholders
                ),
            ):
                record = IdempotencyRecord.model_validate(item)
                if record.account_id == account_id and record.sequence is not None:
                    found[record.sequence] = record
        return found

    def complete(
        self,
        account_id: str,
        idempotency_key: str,
        *,
        op_id: str,
        result: OperationResult,
        sequence: int,
    ) -> None:
        """Record the result (the writer's last step). No TTL yet: the entry may not exist."""
        self._update(
            account_id,
            idempotency_key,
            "SET #state = :completed, #result = :result, #sequence = :sequence",
            op_id,
            result=result,
            sequence=sequence,
        )

    def finalize(
        self,
        account_id: str,
        idempotency_key: str,
        *,
        op_id: str,
        result: OperationResult,
        sequence: int,
        expires_at: int,
    ) -> bool:
        """The ledger entry exists: complete the record if its writer did not, and let it
        expire after the retention. False when the record is not this operation's."""
        return self._update(
            account_id,
            idempotency_key,
            "SET #state = :completed, #result = if_not_exists(#result, :result), "
            "#sequence = :sequence, expiresAt = :expires",
            op_id,
            result=result,
            sequence=sequence,
            expires=expires_at,
        )

    def take_over(
        self, account_id: str, idempotency_key: str, old_op_id: str, new_op_id: str, lease: datetime
    ) -> bool:
        """Recovery: lease an expired pending record to a new operation id. False when
        someone else completed or took it first."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=_key(account_id, idempotency_key),
                UpdateExpression="SET opId = :new, leaseExpiresAt = :lease",
                ConditionExpression="opId = :old AND #state = :pending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values(
                    new=new_op_id, lease=lease, old=old_op_id, pending=IdempotencyState.PENDING
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise storage_failure("take over lease", exc) from exc
        return True

    def release(self, account_id: str, idempotency_key: str, op_id: str) -> None:
        """Drop a lease whose operation was refused, so the key may be used again."""
        try:
            self._table.client.delete_item(
                TableName=self._table.name,
                Key=_key(account_id, idempotency_key),
                ConditionExpression="opId = :op AND #state = :pending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values(op=op_id, pending=IdempotencyState.PENDING),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise storage_failure("release lease", exc) from exc

    def _update(
        self, account_id: str, idempotency_key: str, expression: str, op_id: str, **named: object
    ) -> bool:
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=_key(account_id, idempotency_key),
                UpdateExpression=expression,
                ConditionExpression="opId = :op",
                ExpressionAttributeNames={
                    "#state": "state",
                    "#result": "result",
                    "#sequence": "sequence",
                },
                ExpressionAttributeValues=values(
                    op=op_id, completed=IdempotencyState.COMPLETED, **named
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise storage_failure("complete record", exc) from exc
        return True
