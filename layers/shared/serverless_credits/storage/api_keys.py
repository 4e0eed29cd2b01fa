"""An account's API keys: the `APIKEY#<id>` mapping the HTTP API reads (key id -> account)
beside a per-account list `KEYS#<accountId>` / `<apiKeyId>` that operators list, rotate and
revoke by. Both items are written and removed together, in one transaction."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from serverless_credits.domain.models import ApiKeyMapping
from serverless_credits.storage import keys
from serverless_credits.storage.items import Table, key, storage_failure, to_item


class ApiKeyStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None:
        """Map a key to its account and list it under the account (`KeyMappings`)."""
        self._transact(
            [
                {"Put": {"TableName": self._table.name, "Item": item}}
                for item in (
                    to_item(mapping, pk=keys.apikey_pk(mapping.api_key_id), sk=keys.APIKEY_SK),
                    to_item(
                        mapping,
                        pk=keys.account_keys_pk(mapping.account_id),
                        sk=mapping.api_key_id,
                    ),
                )
            ],
            "put api key",
        )

    def for_account(self, account_id: str) -> list[ApiKeyMapping]:
        """The account's keys, oldest first."""
        items = self._table.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.account_keys_pk(account_id)}},
            ConsistentRead=True,
        )
        found = [ApiKeyMapping.model_validate(item) for item in items]
        return sorted(found, key=lambda mapping: (mapping.created_at, mapping.api_key_id))

    def get(self, account_id: str, api_key_id: str) -> ApiKeyMapping | None:
        item = self._table.get(keys.account_keys_pk(account_id), api_key_id, consistent=True)
        return ApiKeyMapping.model_validate(item) if item else None

    def remove(self, account_id: str, api_key_id: str) -> None:
        """Forget a key: its mapping and its place in the account's list (a no-op when gone)."""
        self._transact(
            [
                {"Delete": {"TableName": self._table.name, "Key": item_key}}
                for item_key in (
                    key(keys.apikey_pk(api_key_id), keys.APIKEY_SK),
                    key(keys.account_keys_pk(account_id), api_key_id),
                )
            ],
            "remove api key",
        )

    def _transact(self, items: list[dict[str, Any]], operation: str) -> None:
        try:
            self._table.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            raise storage_failure(operation, exc) from exc
