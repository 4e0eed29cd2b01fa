"""Charge credits from other Lambda functions, through the Debit function.

    credits = CreditsClient()                      # DEBIT_FUNCTION_NAME from the environment
    charge = credits.debit(account_id="acct_1", action="sms", idempotency_key=request_id)

Refusals raise the same typed errors the ledger raises (`errors.InsufficientCredits`
with `.available`, `errors.AccountSuspended`, ...). Because every charge carries an
idempotency key, the client retries a failed invocation safely.

This module and `store` are the only ones that talk to AWS.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from serverless_credits.domain.errors import CreditsError, error_for_code
from serverless_credits.domain.models import OperationResult
from serverless_credits.domain.money import json_number

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient


class CreditsUnavailable(Exception):
    """The Debit function failed unexpectedly (after retries): not a refusal."""


class ClientSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    debit_function_name: str = Field(alias="DEBIT_FUNCTION_NAME", min_length=1)


@functools.cache
def _client_settings() -> ClientSettings:
    return ClientSettings.model_validate(dict(os.environ))


class LambdaContextLike(Protocol):
    @property
    def aws_request_id(self) -> str: ...


class CreditsClient:
    def __init__(
        self,
        function_name: str | None = None,
        lambda_client: LambdaClient | None = None,
        *,
        attempts: int = 3,
    ) -> None:
        self._function_name = function_name
        self._lambda = lambda_client
        self._attempts = attempts

    @property
    def function_name(self) -> str:
        return self._function_name or _client_settings().debit_function_name

    @property
    def lambda_client(self) -> LambdaClient:
        if self._lambda is None:
            self._lambda = boto3.client(
                "lambda", config=Config(retries={"mode": "standard", "max_attempts": 3})
            )
        return self._lambda

    def debit(
        self,
        *,
        account_id: str,
        idempotency_key: str,
        amount: Decimal | int | None = None,
        action: str | None = None,
        quantity: Decimal | int | None = None,
        description: str = "",
        endpoint: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> OperationResult:
        request: dict[str, Any] = {
            "accountId": account_id,
            "idempotencyKey": idempotency_key,
            "description": description,
            "metadata": metadata or {},
        }
        if amount is not None:
            request["amount"] = json_number(amount)
        if action is not None:
            request["action"] = action
        if quantity is not None:
            request["quantity"] = json_number(quantity)
        if endpoint is not None:
            request["endpoint"] = endpoint
        return self._call(request)

    def void(self, *, account_id: str, idempotency_key: str, reason: str = "") -> OperationResult:
        """Cancel this service's own debit made with `idempotency_key`, in full, within the
        void window (15 minutes); the call counts as failed in usage. Voiding again
        replays. Partial or later refunds are an operator's (`credits-admin credits refund`).
        """
        return self._call(
            {
                "operation": "void",
                "accountId": account_id,
                "idempotencyKey": idempotency_key,
                "reason": reason,
            }
        )

    def _call(self, request: dict[str, Any]) -> OperationResult:
        payload = json.dumps(request).encode()
        failure = "no attempt made"
        for _ in range(self._attempts):
            try:
                response = self.lambda_client.invoke(
                    FunctionName=self.function_name,
                    InvocationType="RequestResponse",
                    Payload=payload,
                )
                body = json.loads(response["Payload"].read() or b"null")
            except (BotoCoreError, ClientError, ValueError) as exc:
                failure = f"invoke failed: {exc}"
                continue
            if response.get("FunctionError"):
                # Safe to retry: the same idempotency key cannot charge twice.
                failure = f"Debit function error: {body}"
                continue
            if isinstance(body, dict) and "error" in body:
                error = body["error"]
                raise error_for_code(str(error.get("code"))).from_payload(
                    str(error.get("message")), error.get("details")
                )
            return OperationResult.model_validate(body)
        raise CreditsUnavailable(failure)


P = ParamSpec("P")
R = TypeVar("R")
Handler = Callable[[dict[str, Any], Any], R]


def charge_per_call(
    client: CreditsClient | Callable[[], CreditsClient],
    *,
    account_id: Callable[[dict[str, Any]], str],
    amount: Decimal | None = None,
    action: str | None = None,
    quantity: Callable[[dict[str, Any]], Decimal] | None = None,
    endpoint: str | None = None,
    idempotency_key: Callable[[dict[str, Any], LambdaContextLike], str] | None = None,
) -> Callable[[Handler[R]], Handler[R]]:
    """Charge credits for each call of a Lambda handler: debit before, void if it fails.

    The idempotency key defaults to the invocation's request id, so Lambda's own retries
    of one invocation charge once. A failed call's debit is voided (in full, and counted as
    failed in usage) before its exception propagates; a retry of that same invocation then
    replays the voided charge and is not charged again. Pass `idempotency_key` to tie the
    charge to your own request instead.
    """

    def decorate(handler: Handler[R]) -> Handler[R]:
        @functools.wraps(handler)
        def charged(event: dict[str, Any], context: Any) -> R:
            credits = client if isinstance(client, CreditsClient) else client()
            key = idempotency_key(event, context) if idempotency_key else context.aws_request_id
            account = account_id(event)
            charge = credits.debit(
                account_id=account,
                idempotency_key=key,
                amount=amount,
                action=action,
                quantity=quantity(event) if quantity else None,
                endpoint=endpoint,
                description=f"{endpoint or handler.__name__} call",
            )
            try:
                return handler(event, context)
            except Exception:
                credits.void(
                    account_id=account,
                    idempotency_key=key,
                    reason=f"Void of {charge.transaction_id}: the charged call failed",
                )
                raise

        return charged

    return decorate


__all__ = ["CreditsClient", "CreditsError", "CreditsUnavailable", "charge_per_call"]
