"""The credits table: one object holding a storage module per item kind, built once per
process by `wiring`. Use cases take the stores they need; reads take the table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serverless_credits.storage.accounts import AccountStore
from serverless_credits.storage.catalog import CatalogStore
from serverless_credits.storage.holds import HoldStore
from serverless_credits.storage.idempotency import IdempotencyStore
from serverless_credits.storage.items import Table, connect
from serverless_credits.storage.ledger_entries import LedgerEntryStore
from serverless_credits.storage.lots import LotStore
from serverless_credits.storage.refunds import RefundGuardStore
from serverless_credits.storage.usage import UsageStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class CreditsStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        table = Table(client, table_name)
        self.accounts = AccountStore(table)
        self.idempotency = IdempotencyStore(table)
        self.entries = LedgerEntryStore(table)
        self.usage = UsageStore(table)
        self.refunds = RefundGuardStore(table)
        self.holds = HoldStore(table)
        self.lots = LotStore(table)
        self.catalog = CatalogStore(table)

    @classmethod
    def connect(cls, table_name: str) -> CreditsStore:
        return cls(connect(), table_name)
