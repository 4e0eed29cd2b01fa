"""Refund guards: the total refunded against one debit, in its own item (entries stay
immutable). Each refund's share is recorded under its idempotency key, so a refund retried
after a crash finds its share already counted instead of counting it twice."""

from __future__ import annotations

from decimal import Decimal

from botocore.exceptions import ClientError

from serverless_credits.domain.outcomes import RefundLimitReached, RefundStale
from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    Table,
    error_code,
    key,
    old_image,
    storage_failure,
    values,
)

SHARE_PREFIX = "share#"


class RefundGuardStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def refunded(self, account_id: str, transaction_id: str) -> Decimal:
        item = self._table.get(
            keys.refunds_pk(account_id, transaction_id), keys.REFUNDS_SK, consistent=True
        )
        return Decimal(item.get("refunded", 0)) if item else Decimal(0)

    def claim(
        self,
        account_id: str,
        transaction_id: str,
        *,
        original: Decimal,
        amount: Decimal,
        idempotency_key: str,
        refunded_before: Decimal | None = None,
    ) -> None:
        """Count `amount` against the debit unless that would exceed it; a share already
        claimed under this key is not counted again. With `refunded_before`, only while the
        debit's refunded total is still that (`RefundStale` otherwise): the refund's
        returns to the lots were computed from it."""
        condition = (
            "attribute_not_exists(#share) AND "
            "(attribute_not_exists(refunded) OR refunded <= :limit)"
        )
        named: dict[str, Decimal] = {"limit": original - amount}
        if refunded_before is not None:
            if refunded_before:
                condition += " AND refunded = :before"
                named["before"] = refunded_before
            else:
                condition += " AND attribute_not_exists(refunded)"
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.refunds_pk(account_id, transaction_id), keys.REFUNDS_SK),
                UpdateExpression=(
                    "ADD refunded :amount SET originalAmount = :original, #share = :amount"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#share": SHARE_PREFIX + idempotency_key},
                ExpressionAttributeValues=values(amount=amount, original=original, **named),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise storage_failure("claim refund", exc) from exc
            image = old_image(exc) or {}
            if SHARE_PREFIX + idempotency_key in image:
                return  # claimed by an earlier attempt of this very refund
            refunded = Decimal(image.get("refunded", 0))
            stale = refunded_before is not None and refunded != refunded_before
            if stale and refunded + amount <= original:
                raise RefundStale(refunded) from exc
            raise RefundLimitReached(refunded) from exc
