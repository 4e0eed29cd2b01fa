"""Example billable function: every call costs one `api_call` credit, charged through the
Debit function with the shared client; a call that fails has its debit voided. A refusal
(no credits, suspended, ...) or an unavailable Debit function is answered as an API Gateway
proxy response (402, 403, 409, 503 with Retry-After...: `transport.consumer`), never an
unhandled error."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from serverless_credits.integrations.client import CreditsClient, charge_per_call
from serverless_credits.transport.consumer import answer_refusals

logger = Logger()
credits = CreditsClient()  # resolves DEBIT_FUNCTION_NAME and its boto3 client on first use


class EchoRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    account_id: str = Field(alias="accountId")
    message: str = Field(default="", max_length=1000)


def _account_of(event: dict[str, Any]) -> str:
    return EchoRequest.model_validate(event).account_id


def _credits_client() -> CreditsClient:
    return credits


@logger.inject_lambda_context(clear_state=True)
@answer_refusals
@charge_per_call(
    _credits_client, account_id=_account_of, action="api_call", endpoint="example/echo"
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = EchoRequest.model_validate(event)
    return {"echo": request.message}
