"""The cold-start baseline: the Debit function as a user would write it with Powertools and
pydantic alone, with no library of ours.

Logger, Tracer and Metrics decorators, a pydantic request model, a boto3 DynamoDB client,
and Powertools' idempotency utility (`idempotent_function` + `DynamoDBPersistenceLayer` on
its own table) around one conditional `UpdateItem` of the account's balance: the same
debit as the Powertools peer of the throughput benchmark (bench/baselines.py), as a
function module. It writes no ledger entry, no usage and no `balanceAfter` chain.

Environment: `TABLE_NAME` (the account items, ours) and `IDEMPOTENCY_TABLE_NAME` (the
table Powertools' documentation asks for: key `id`, TTL `expiration`). The tracer patches
botocore only, as functions/debit/app.py does, so the two differ by what they do, not by
how they are traced.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()

TABLE_NAME = os.environ["TABLE_NAME"]
client = boto3.client("dynamodb")
persistence = DynamoDBPersistenceLayer(
    table_name=os.environ["IDEMPOTENCY_TABLE_NAME"], boto3_client=client
)
config = IdempotencyConfig(event_key_jmespath="idempotencyKey", raise_on_no_idempotency_key=True)


class DebitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    account_id: str = Field(alias="accountId", min_length=1, max_length=128)
    idempotency_key: str = Field(alias="idempotencyKey", min_length=1, max_length=128)
    action: str = Field(default="api_call", min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    endpoint: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=256)


class Declined(Exception):
    """The account's balance does not cover the debit."""


@idempotent_function(  # type: ignore[untyped-decorator]
    data_keyword_argument="request", persistence_store=persistence, config=config
)
def charge(request: dict[str, Any]) -> dict[str, Any]:
    try:
        response = client.update_item(
            TableName=TABLE_NAME,
            Key={"pk": {"S": f"ACCOUNT#{request['accountId']}"}, "sk": {"S": "ACCOUNT"}},
            UpdateExpression="SET balance = balance - :amount",
            ConditionExpression="balance >= :amount",
            ExpressionAttributeValues={":amount": {"N": str(request["quantity"])}},
            ReturnValues="UPDATED_NEW",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise Declined from exc
        raise
    return {
        "accountId": request["accountId"],
        "amount": request["quantity"],
        "balanceAfter": response["Attributes"]["balance"]["N"],
    }


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    try:
        request = DebitRequest.model_validate(event)
    except ValidationError as exc:
        return {"error": {"code": "VALIDATION_ERROR", "message": str(exc)}}
    try:
        result: dict[str, Any] = charge(request=request.model_dump(by_alias=True))
    except Declined:
        metrics.add_metric(name="DebitsDeclined", unit=MetricUnit.Count, value=1)
        return {"error": {"code": "INSUFFICIENT_CREDITS"}}
    metrics.add_metric(name="CreditsDebited", unit=MetricUnit.Count, value=result["amount"])
    return result
