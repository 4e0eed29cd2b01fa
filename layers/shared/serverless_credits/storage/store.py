"""DynamoDB access: the only module that uses boto3.

It speaks in domain models and turns DynamoDB's failures into exceptions the ledger can
act on (`raise ... from exc`). A ledger write is one `TransactWriteItems`; when a condition
fails, the `ALL_OLD` images in `CancellationReasons` say why without another read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pydantic import BaseModel

from serverless_credits.domain.errors import AccountAlreadyExists, StorageError
from serverless_credits.domain.models import (
    Account,
    ApiKeyMapping,
    DailyUsage,
    EntryType,
    IdempotencyRecord,
    LedgerEntry,
    PriceList,
    UsageIncrement,
)
from serverless_credits.storage import keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        TransactWriteItemTypeDef,
        UpdateTypeDef,
    )

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Errors after which retrying the same write is safe and may succeed.
RETRYABLE_CODES = frozenset(
    {
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
UNKNOWN_OUTCOME_ERRORS = (
    ReadTimeoutError,
    ConnectTimeoutError,
    ConnectionClosedError,
    EndpointConnectionError,
)


# ---------------------------------------------------------------- write outcomes
class WriteRefused(Exception):
    """A ledger write did not happen; the subclass says why."""


class AccountMissing(WriteRefused):
    pass


class VersionChanged(WriteRefused):
    """Someone wrote the account since our state was read: retry from `current`."""

    def __init__(self, current: Account) -> None:
        super().__init__(f"account is at version {current.version}")
        self.current = current


class ConditionRefused(WriteRefused):
    """The account's status or funds refused the write at the version we planned from."""

    def __init__(self, current: Account) -> None:
        super().__init__("account condition failed")
        self.current = current


class IdempotencyKeyUsed(WriteRefused):
    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("idempotency key already used")
        self.record = record


class RefundLimitReached(WriteRefused):
    def __init__(self, refunded: Decimal) -> None:
        super().__init__("refund would exceed the refundable amount")
        self.refunded = refunded


class Contention(WriteRefused):
    """Transaction conflict or throttling: retry with backoff."""


class OutcomeUnknown(WriteRefused):
    """The request timed out or the connection dropped: the write may have committed."""


# ---------------------------------------------------------------- planned writes
@dataclass(frozen=True)
class RefundGuard:
    """Caps the total refunded against one debit, in its own item (entries stay immutable)."""

    transaction_id: str
    original_amount: Decimal
    amount: Decimal


@dataclass(frozen=True)
class LedgerWrite:
    """Everything one ledger operation writes, planned from the account state `before`."""

    before: Account
    after: Account
    entry: LedgerEntry
    idempotency: IdempotencyRecord
    usage: UsageIncrement | None = None
    refund: RefundGuard | None = None
    require_active: bool = False
    balance_floor: Decimal | None = None


# ---------------------------------------------------------------- conversions
def _plain(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(by_alias=True, exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def to_item(model: BaseModel, **key: str) -> dict[str, Any]:
    """A model as DynamoDB attribute values, with its key attributes."""
    plain = {**cast(dict[str, Any], _plain(model)), **key}
    return {name: _serializer.serialize(value) for name, value in plain.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _values(**values: Any) -> dict[str, Any]:
    return {f":{name}": _serializer.serialize(_plain(value)) for name, value in values.items()}


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _start_key(key: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"ExclusiveStartKey": key} if key else {}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class CreditsStore:
    """Reads and writes of the credits table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    @classmethod
    def connect(cls, table_name: str) -> CreditsStore:
        """A store on a new client. The endpoint comes from boto3's own configuration
        (`AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local), never from a setting of ours."""
        client = boto3.client(
            "dynamodb",
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=2,
                read_timeout=5,
                tcp_keepalive=True,
            ),
        )
        return cls(client, table_name)

    # ------------------------------------------------------------ accounts
    def get_account(self, account_id: str, *, consistent: bool = False) -> Account | None:
        item = self._get(keys.account_pk(account_id), keys.ACCOUNT_SK, consistent=consistent)
        return Account.model_validate(item) if item else None

    def create_account(self, account: Account, opening: LedgerEntry | None = None) -> None:
        """Put a new account (and its opening ledger entry) unless the id is taken."""
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": to_item(
                        account, pk=keys.account_pk(account.account_id), sk=keys.ACCOUNT_SK
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if opening is not None:
            items.append(self._put_entry(opening))
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _error_code(exc) == "TransactionCanceledException":
                raise AccountAlreadyExists(account.account_id) from exc
            raise StorageError(f"create_account failed: {_error_code(exc)}") from exc

    def update_account_settings(self, account_id: str, changes: Mapping[str, Any]) -> Account:
        """Change non-balance settings (status, thresholds, flags): no ledger entry needed."""
        if not changes:
            current = self.get_account(account_id, consistent=True)
            if current is None:
                raise StorageError("account vanished")
            return current
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {
            f":a{i}": _serializer.serialize(_plain(v)) for i, v in enumerate(changes.values())
        }
        assignments = ", ".join(f"#a{i} = :a{i}" for i in range(len(changes)))
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=_key(keys.account_pk(account_id), keys.ACCOUNT_SK),
                UpdateExpression=f"SET {assignments}",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise AccountMissing(account_id) from exc
            raise StorageError(f"update_account failed: {_error_code(exc)}") from exc
        return Account.model_validate(from_item(response["Attributes"]))

    # ------------------------------------------------------------ ledger writes
    def commit(self, write: LedgerWrite) -> None:
        """Apply one ledger write atomically, or raise a `WriteRefused` saying why."""
        items = [
            self._update_balance(write),
            self._put_entry(write.entry),
            self._put_idempotency(write.idempotency),
        ]
        if write.usage is not None:
            items.append(self._usage_update(write.entry.account_id, write.usage))
        refund_index = None
        if write.refund is not None:
            refund_index = len(items)
            items.append(self._refund_update(write.entry.account_id, write.refund))
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "TransactionCanceledException":
                raise self._cancellation(write, exc, refund_index) from exc
            if code in RETRYABLE_CODES:
                raise Contention(code) from exc
            if code == "IdempotentParameterMismatchException":
                raise Contention(code) from exc
            raise StorageError(f"ledger write failed: {code}") from exc
        except UNKNOWN_OUTCOME_ERRORS as exc:
            raise OutcomeUnknown(type(exc).__name__) from exc

    def _update_balance(self, write: LedgerWrite) -> TransactWriteItemTypeDef:
        after = write.after
        conditions = ["version = :version"]
        values = _values(
            version=write.before.version,
            next=after.version,
            balance=after.balance,
            reserved=after.reserved,
            used=after.used,
            total=after.total,
            requests=after.lifetime_requests,
            at=after.last_entry_at,
            updated=after.updated_at,
        )
        if write.require_active:
            conditions.append("#status = :active")
            values.update(_values(active="active"))
        if write.balance_floor is not None:
            conditions.append("balance >= :floor")
            values.update(_values(floor=write.balance_floor))
            # The floor counts the overdraft of `before`, and a settings change does not move
            # the version: pin the overdraft too, so a stale cached limit cannot overspend.
            conditions.append(
                "overdraftLimit = :overdraft"
                if write.before.overdraft_limit
                else "(attribute_not_exists(overdraftLimit) OR overdraftLimit = :overdraft)"
            )
            values.update(_values(overdraft=write.before.overdraft_limit))
        update: UpdateTypeDef = {
            "TableName": self.table_name,
            "Key": _key(keys.account_pk(after.account_id), keys.ACCOUNT_SK),
            "UpdateExpression": (
                "SET balance = :balance, reserved = :reserved, used = :used, #total = :total, "
                "version = :next, lifetimeRequests = :requests, lastEntryAt = :at, "
                "updatedAt = :updated"
            ),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": {"#total": "total"}
            | ({"#status": "status"} if write.require_active else {}),
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        return {"Update": update}

    def _put_entry(self, entry: LedgerEntry) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": to_item(
                    entry, pk=keys.ledger_pk(entry.account_id), sk=keys.ledger_sk(entry.created_at)
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _put_idempotency(self, record: IdempotencyRecord) -> TransactWriteItemTypeDef:
        # A record past its TTL may linger until DynamoDB deletes it: treat it as absent.
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": to_item(
                    record,
                    pk=keys.idempotency_pk(record.account_id, record.idempotency_key),
                    sk=keys.IDEMPOTENCY_SK,
                ),
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": _values(now=int(record.created_at.timestamp())),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _usage_update(self, account_id: str, usage: UsageIncrement) -> TransactWriteItemTypeDef:
        expression, names, values = _usage_expression(usage)
        update: UpdateTypeDef = {
            "TableName": self.table_name,
            "Key": _key(keys.usage_pk(account_id), keys.usage_sk(usage.day)),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return {"Update": update}

    def _refund_update(self, account_id: str, refund: RefundGuard) -> TransactWriteItemTypeDef:
        limit = refund.original_amount - refund.amount
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": _key(keys.refunds_pk(account_id, refund.transaction_id), keys.REFUNDS_SK),
                "UpdateExpression": "ADD refunded :amount SET originalAmount = :original",
                "ConditionExpression": "attribute_not_exists(refunded) OR refunded <= :limit",
                "ExpressionAttributeValues": _values(
                    amount=refund.amount, original=refund.original_amount, limit=limit
                ),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _cancellation(
        self, write: LedgerWrite, exc: ClientError, refund_index: int | None
    ) -> WriteRefused:
        reasons: Sequence[Mapping[str, Any]] = exc.response.get("CancellationReasons", [])
        codes = [str(reason.get("Code", "None")) for reason in reasons]
        account_reason, idem_reason = (reasons[0], reasons[2]) if len(reasons) >= 3 else ({}, {})
        if idem_reason.get("Code") == "ConditionalCheckFailed" and idem_reason.get("Item"):
            return IdempotencyKeyUsed(
                IdempotencyRecord.model_validate(from_item(idem_reason["Item"]))
            )
        if account_reason.get("Code") == "ConditionalCheckFailed":
            if not account_reason.get("Item"):
                return AccountMissing(write.before.account_id)
            current = Account.model_validate(from_item(account_reason["Item"]))
            if current.version != write.before.version:
                return VersionChanged(current)
            return ConditionRefused(current)
        refund_reason: Mapping[str, Any] = (
            reasons[refund_index]
            if refund_index is not None and refund_index < len(reasons)
            else {}
        )
        if refund_reason.get("Code") == "ConditionalCheckFailed":
            item = from_item(refund_reason.get("Item") or {})
            return RefundLimitReached(Decimal(item.get("refunded", 0)))
        if any(code in RETRYABLE_REASONS for code in codes):
            return Contention(",".join(codes))
        raise StorageError(f"ledger write cancelled: {codes}")

    # ------------------------------------------------------------ usage
    def record_failed_call(self, account_id: str, usage: UsageIncrement) -> None:
        """Count a declined call in the day's usage (not a ledger change: no entry)."""
        expression, names, values = _usage_expression(usage)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_key(keys.usage_pk(account_id), keys.usage_sk(usage.day)),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            raise StorageError(f"usage update failed: {_error_code(exc)}") from exc

    def query_usage(self, account_id: str, first: date, last: date) -> list[DailyUsage]:
        """Daily usage rows between two days inclusive: one Query (at most 366 small rows)."""
        rows: list[DailyUsage] = []
        for item in self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=_values(
                pk=keys.usage_pk(account_id),
                first=keys.usage_sk(first),
                last=keys.usage_sk(last),
            ),
        ):
            rows.append(_daily_usage(item))
        return rows

    # ------------------------------------------------------------ ledger reads
    def get_entry(self, account_id: str, transaction_id: str) -> LedgerEntry | None:
        sort_key = keys.ledger_sk_from_transaction_id(transaction_id)
        if sort_key is None:
            return None
        item = self._get(keys.ledger_pk(account_id), sort_key, consistent=True)
        return LedgerEntry.model_validate(item) if item else None

    def get_idempotency_record(
        self, account_id: str, idempotency_key: str
    ) -> IdempotencyRecord | None:
        item = self._get(
            keys.idempotency_pk(account_id, idempotency_key), keys.IDEMPOTENCY_SK, consistent=True
        )
        return IdempotencyRecord.model_validate(item) if item else None

    def refunded_so_far(self, account_id: str, transaction_id: str) -> Decimal:
        item = self._get(
            keys.refunds_pk(account_id, transaction_id), keys.REFUNDS_SK, consistent=True
        )
        return Decimal(item.get("refunded", 0)) if item else Decimal(0)

    def query_ledger(
        self,
        account_id: str,
        *,
        limit: int,
        newest_first: bool = True,
        start_after: str | None = None,
        first_sk: str | None = None,
        last_sk: str | None = None,
        entry_type: EntryType | None = None,
    ) -> tuple[list[LedgerEntry], str | None]:
        """A page of ledger entries and the sort key to continue after (None at the end).

        One Query per page unless a type filter leaves the page short; then it keeps
        reading until the page is full or the range is exhausted.
        """
        condition = "pk = :pk"
        values: dict[str, Any] = {"pk": keys.ledger_pk(account_id)}
        if first_sk is not None and last_sk is not None:
            condition += " AND sk BETWEEN :first AND :last"
            values.update(first=first_sk, last=last_sk)
        elif first_sk is not None:
            condition += " AND sk >= :first"
            values["first"] = first_sk
        elif last_sk is not None:
            condition += " AND sk <= :last"
            values["last"] = last_sk
        request: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ScanIndexForward": not newest_first,
        }
        if entry_type is not None:
            request["FilterExpression"] = "#type = :type"
            request["ExpressionAttributeNames"] = {"#type": "type"}
            values["type"] = entry_type.value
        request["ExpressionAttributeValues"] = _values(**values)
        pk = keys.ledger_pk(account_id)
        exclusive_start = _key(pk, start_after) if start_after else None
        entries: list[LedgerEntry] = []
        while True:
            # One item more than the page proves there is a next page without another call.
            try:
                page = self.client.query(
                    **request,
                    TableName=self.table_name,
                    Limit=limit + 1 - len(entries),
                    **_start_key(exclusive_start),
                )
            except ClientError as exc:
                raise StorageError(f"query failed: {_error_code(exc)}") from exc
            entries.extend(LedgerEntry.model_validate(from_item(i)) for i in page.get("Items", []))
            if len(entries) > limit:
                return entries[:limit], keys.ledger_sk(entries[limit - 1].created_at)
            exclusive_start = page.get("LastEvaluatedKey")
            if not exclusive_start:
                return entries, None

    # ------------------------------------------------------------ API keys, prices
    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item=to_item(mapping, pk=keys.apikey_pk(mapping.api_key_id), sk=keys.APIKEY_SK),
        )

    def get_api_key_mapping(self, api_key_id: str) -> ApiKeyMapping | None:
        item = self._get(keys.apikey_pk(api_key_id), keys.APIKEY_SK)
        return ApiKeyMapping.model_validate(item) if item else None

    def put_price_list(self, prices: PriceList) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item=to_item(prices, pk=keys.PRICES_PK, sk=keys.PRICES_CURRENT_SK),
        )

    def get_price_list(self) -> PriceList | None:
        item = self._get(keys.PRICES_PK, keys.PRICES_CURRENT_SK)
        return PriceList.model_validate(item) if item else None

    # ------------------------------------------------------------ helpers
    def _get(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(
                TableName=self.table_name, Key=_key(pk, sk), ConsistentRead=consistent
            )
        except ClientError as exc:
            raise StorageError(f"get_item failed: {_error_code(exc)}") from exc
        item = response.get("Item")
        return from_item(item) if item else None

    def _query(self, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            try:
                page = self.client.query(**request, TableName=self.table_name, **_start_key(start))
            except ClientError as exc:
                raise StorageError(f"query failed: {_error_code(exc)}") from exc
            items.extend(from_item(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items


TYPE_PREFIX = "type#"
ENDPOINT_CALLS_PREFIX = "endpoint#"
ENDPOINT_CREDITS_PREFIX = "endpointCredits#"


def _usage_expression(usage: UsageIncrement) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`ADD` counters as top-level attributes: `ADD a.b` fails while map `a` is missing."""
    additions: dict[str, Decimal | int] = {
        "calls": usage.calls,
        "failed": usage.failed,
        "creditsUsed": usage.credits_used,
    }
    additions.update({TYPE_PREFIX + k: v for k, v in usage.by_type.items()})
    additions.update({ENDPOINT_CALLS_PREFIX + k: v for k, v in usage.by_endpoint.items()})
    additions.update({ENDPOINT_CREDITS_PREFIX + k: v for k, v in usage.by_endpoint_credits.items()})
    names = {f"#u{i}": name for i, name in enumerate(additions)}
    values = {
        f":u{i}": _serializer.serialize(Decimal(value))
        for i, value in enumerate(additions.values())
    }
    names["#day"] = "day"
    values[":day"] = _serializer.serialize(usage.day.isoformat())
    clauses = ", ".join(f"#u{i} :u{i}" for i in range(len(additions)))
    return f"ADD {clauses} SET #day = :day", names, values


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
