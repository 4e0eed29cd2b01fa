"""Every account item, for operators (`credits-admin accounts list`): a Scan of the table
filtered to account items. Never on a request path of the customer API."""

from __future__ import annotations

from serverless_credits.domain.models import Account
from serverless_credits.storage import keys
from serverless_credits.storage.items import Table, values


class AccountDirectory:
    def __init__(self, table: Table) -> None:
        self._table = table

    def accounts(self) -> list[Account]:
        items = self._table.scan(
            FilterExpression="sk = :sk AND begins_with(pk, :prefix)",
            ExpressionAttributeValues=values(sk=keys.ACCOUNT_SK, prefix=keys.ACCOUNT_PREFIX),
        )
        return [Account.model_validate(item) for item in items]
