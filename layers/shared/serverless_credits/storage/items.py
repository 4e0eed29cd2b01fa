"""Conversions between domain models and DynamoDB attribute values, and the pieces every
storage module shares: keys, expression values, error codes, the client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

from serverless_credits.domain.errors import ServiceBusy, StorageError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Refusals that botocore gave up retrying: the request was not applied; retry later.
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
)
# Server errors: transient too, but a write answered so may or may not have been applied.
SERVER_ERROR_CODES = frozenset({"InternalServerError", "ServiceUnavailable"})
TRANSIENT_CODES = THROTTLING_CODES | SERVER_ERROR_CODES
# The request may or may not have been applied.
UNKNOWN_OUTCOME_ERRORS = (
    ReadTimeoutError,
    ConnectTimeoutError,
    ConnectionClosedError,
    EndpointConnectionError,
)


def plain(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    """A model or value as plain Python that DynamoDB's serializer accepts."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump(by_alias=True, exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def serialize(value: Any) -> dict[str, Any]:
    return cast(dict[str, Any], _serializer.serialize(plain(value)))


def to_item(model: BaseModel, **key: str) -> dict[str, Any]:
    """A model as DynamoDB attribute values, with its key attributes."""
    values = {**cast(dict[str, Any], plain(model)), **key}
    return {name: _serializer.serialize(value) for name, value in values.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    # An empty map arrives as `{}` instead of `{"M": {}}` in DynamoDB Local's stream
    # records (an account's `holds` with no hold open): read it as the empty map it is.
    return {name: _deserializer.deserialize(value) if value else {} for name, value in item.items()}


def values(**named: Any) -> dict[str, Any]:
    """`ExpressionAttributeValues` from keyword arguments (`:name` for each)."""
    return {f":{name}": serialize(value) for name, value in named.items()}


def assignments(attributes: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`#a0 = :a0, #a1 = :a1, ...` for a SET of `attributes`, with its expression names and
    values (every name a placeholder: any attribute may be a reserved word)."""
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    assigned = {f":a{i}": serialize(value) for i, value in enumerate(attributes.values())}
    return ", ".join(f"#a{i} = :a{i}" for i in range(len(attributes))), names, assigned


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def start_key(last: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"ExclusiveStartKey": last} if last else {}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def storage_failure(operation: str, exc: ClientError) -> Exception:
    """A failure no storage module expects: throttling that outlived botocore's retries is
    transient (503 with Retry-After), anything else a storage error."""
    code = error_code(exc)
    if code in TRANSIENT_CODES:
        return ServiceBusy(f"{operation}: {code}")
    return StorageError(f"{operation} failed: {code}")


def old_image(exc: ClientError) -> dict[str, Any] | None:
    """The item a failed condition saw (`ReturnValuesOnConditionCheckFailure: ALL_OLD`)."""
    item = cast(Mapping[str, Any], exc.response).get("Item")
    return from_item(item) if item else None


def connect() -> DynamoDBClient:
    """A DynamoDB client. The endpoint comes from boto3's own configuration
    (`AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local), never from a setting of ours."""
    return boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=5,
            tcp_keepalive=True,
        ),
    )


BATCH_GET_LIMIT = 100


class Table:
    """The client and table name every storage module works on."""

    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(
                TableName=self.name, Key=key(pk, sk), ConsistentRead=consistent
            )
        except ClientError as exc:
            raise storage_failure("get_item", exc) from exc
        item = response.get("Item")
        return from_item(item) if item else None

    def get_many(self, pk: str, sort_keys: Iterable[str]) -> list[dict[str, Any]]:
        """The items of one partition that exist among `sort_keys` (one BatchGetItem per
        hundred, unprocessed keys asked again)."""
        wanted = sorted(set(sort_keys))
        found: list[dict[str, Any]] = []
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            request: dict[str, Any] = {self.name: {"Keys": [key(pk, sk) for sk in chunk]}}
            while request:
                try:
                    response = self.client.batch_get_item(RequestItems=request)
                except ClientError as exc:
                    raise storage_failure("batch_get_item", exc) from exc
                found.extend(map(from_item, response.get("Responses", {}).get(self.name, [])))
                request = dict(response.get("UnprocessedKeys") or {})
        return found

    def query(self, **request: Any) -> list[dict[str, Any]]:
        """Every item a Query matches (following its pages)."""
        items: list[dict[str, Any]] = []
        last: dict[str, Any] | None = None
        while True:
            try:
                page = self.client.query(**request, TableName=self.name, **start_key(last))
            except ClientError as exc:
                raise storage_failure("query", exc) from exc
            items.extend(from_item(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items

    def scan(self, **request: Any) -> list[dict[str, Any]]:
        """Every item a Scan matches: for offline audits only, never on a request path."""
        items: list[dict[str, Any]] = []
        last: dict[str, Any] | None = None
        while True:
            try:
                page = self.client.scan(**request, TableName=self.name, **start_key(last))
            except ClientError as exc:
                raise storage_failure("scan", exc) from exc
            items.extend(from_item(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
