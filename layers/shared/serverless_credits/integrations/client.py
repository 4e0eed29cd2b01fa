"""Charge credits from other Lambda functions, through the Debit function.

    credits = CreditsClient()                      # DEBIT_FUNCTION_NAME from the environment
    charge = credits.debit(account_id="acct_1", action="sms", idempotency_key=request_id)

    # Work of unknown cost: hold an estimate, take what was used, give the rest back.
    with credits.hold("acct_1", Decimal(10), idempotency_key=request_id) as hold:
        minutes = transcribe(audio)
        hold.capture(Decimal(minutes))            # never captured: released on exit

Refusals raise the same typed errors the ledger raises (`errors.InsufficientCredits`
with `.available`, `errors.AccountSuspended`, `errors.HoldNotOpen`, ...). Because every
charge carries an idempotency key, the client retries a failed invocation safely.

One retry layer: the client's own. Its boto3 Lambda client makes one attempt per call
(botocore's retries off), and `_call` makes at most `attempts` invocations (default 3), with
jittered exponential backoff, on what is transient: Lambda throttling or a server error, a
timeout or a dropped connection, the Debit function's unhandled error, and its typed
`SERVICE_BUSY`. Then it raises `CreditsUnavailable` (also a `CreditsError`, code
`SERVICE_BUSY`). A Lambda client you pass in should make one attempt too
(`Config(retries={"total_max_attempts": 1})`), or its retries multiply ours.

This module and `store` are the only ones that talk to AWS.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from serverless_credits.domain.errors import (
    CreditsError,
    CreditsUnavailable,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    ValidationFailed,
    VoidNotAllowed,
    error_for_code,
)
from serverless_credits.domain.idempotency import MAX_KEY_LENGTH, derived_key
from serverless_credits.domain.models import OperationResult
from serverless_credits.domain.money import json_number

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

logger = logging.getLogger(__name__)

# The steps that settle a hold, named in the idempotency keys derived from the reserve's.
CAPTURE_STEP = "capture"
RELEASE_STEP = "release"
# The charge of a retried call whose earlier attempt failed (its charge voided or released).
RECHARGE_STEP = "recharge"
IDEMPOTENCY_KEY_HEADER = "idempotency-key"


# Lambda API errors worth another attempt (the rest are a misconfiguration: fail at once).
RETRYABLE_INVOKE_ERRORS = frozenset(
    {
        "TooManyRequestsException",
        "ServiceException",
        "ResourceNotReadyException",
        "EC2ThrottledException",
        "ThrottlingException",
    }
)
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._function_name = function_name
        self._lambda = lambda_client
        self._attempts = attempts
        self._sleep = sleep

    @property
    def function_name(self) -> str:
        return self._function_name or _client_settings().debit_function_name

    @property
    def lambda_client(self) -> LambdaClient:
        if self._lambda is None:
            # One attempt per call: `_call` is the one retry layer (module docstring).
            self._lambda = boto3.client(
                "lambda", config=Config(retries={"mode": "standard", "total_max_attempts": 1})
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
        return self._call(
            _charge_request(
                account_id=account_id,
                idempotency_key=idempotency_key,
                amount=amount,
                action=action,
                quantity=quantity,
                description=description,
                endpoint=endpoint,
                metadata=metadata,
            )
        )

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

    # ------------------------------------------------------------ holds
    def reserve(
        self,
        account_id: str,
        amount: Decimal | int | None = None,
        *,
        idempotency_key: str,
        action: str | None = None,
        quantity: Decimal | int | None = None,
        expires_in: int | None = None,
        description: str = "",
        endpoint: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> OperationResult:
        """Set `amount` (or `action` x `quantity` from the price list) aside for work of
        unknown cost, for `expires_in` seconds (the Debit function's default: 300). Refused
        like a debit (`InsufficientCredits`, `AccountSuspended`) and past the account's cap
        on open holds (`TooManyOpenHolds`). The result carries `hold_id`, `amount` (held)
        and `expires_at`; the same key again replays it: the same hold, not a second one.
        Prefer `hold`, which cannot leave a hold open when the work fails."""
        request = _charge_request(
            account_id=account_id,
            idempotency_key=idempotency_key,
            amount=amount,
            action=action,
            quantity=quantity,
            description=description,
            endpoint=endpoint,
            metadata=metadata,
        )
        request["operation"] = "reserve"
        if expires_in is not None:
            request["expiresIn"] = expires_in
        return self._call(request)

    def capture(
        self,
        account_id: str,
        hold_id: str,
        amount: Decimal | int | None = None,
        *,
        idempotency_key: str,
        description: str = "",
    ) -> OperationResult:
        """Take all of the hold (no `amount`) or part of it (positive, at most what it
        holds); the rest returns to `available` (`released`). A hold captured, released or
        expired is `HoldNotOpen`; another account's or an unknown one, `HoldNotFound`."""
        request: dict[str, Any] = {
            "operation": "capture",
            "accountId": account_id,
            "holdId": hold_id,
            "idempotencyKey": idempotency_key,
            "description": description,
        }
        if amount is not None:
            request["amount"] = json_number(amount)
        return self._call(request)

    def release(
        self, account_id: str, hold_id: str, *, idempotency_key: str, description: str = ""
    ) -> OperationResult:
        """Give all of the hold back to `available` (`released`); errors as `capture`'s."""
        return self._call(
            {
                "operation": "release",
                "accountId": account_id,
                "holdId": hold_id,
                "idempotencyKey": idempotency_key,
                "description": description,
            }
        )

    def hold(
        self,
        account_id: str,
        amount: Decimal | int | None = None,
        *,
        idempotency_key: str,
        action: str | None = None,
        quantity: Decimal | int | None = None,
        expires_in: int | None = None,
        description: str = "",
        endpoint: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CreditHold:
        """A hold for the length of a `with` block (see `CreditHold`): reserved on entry
        with `idempotency_key`, captured by `hold.capture(...)`, released on exit when the
        block raised or never captured.

            with credits.hold(account_id, Decimal(10), idempotency_key=request_id) as hold:
                used = do_the_work()
                hold.capture(used)  # all of it with no amount; capture(0) releases
        """
        reserve = functools.partial(
            self.reserve,
            account_id,
            amount,
            idempotency_key=idempotency_key,
            action=action,
            quantity=quantity,
            expires_in=expires_in,
            description=description,
            endpoint=endpoint,
            metadata=metadata,
        )
        return CreditHold(self, account_id, idempotency_key, reserve)

    def _call(self, request: dict[str, Any]) -> OperationResult:
        """At most `attempts` invocations; retrying is safe: the same idempotency key
        cannot charge twice."""
        payload = json.dumps(request).encode()
        for attempt in range(self._attempts):
            if attempt:
                ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                self._sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security
            try:
                return self._invoke_once(payload)
            except _Transient as transient:
                failure = transient.reason
        logger.warning("Debit function unavailable after %d attempt(s): %s", attempt + 1, failure)
        raise CreditsUnavailable()

    def _invoke_once(self, payload: bytes) -> OperationResult:
        try:
            response = self.lambda_client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=payload,
            )
            # Figures are exact JSON numbers (docs/http-api.md, "Numbers and limits"):
            # read as Decimal, never through a float.
            body = json.loads(response["Payload"].read() or b"null", parse_float=Decimal)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in RETRYABLE_INVOKE_ERRORS:
                raise CreditsUnavailable() from exc  # permissions, no such function...
            raise _Transient(f"invoke failed: {code}") from exc
        except (BotoCoreError, ValueError) as exc:
            raise _Transient(f"invoke failed: {exc}") from exc
        if response.get("FunctionError"):
            raise _Transient(f"Debit function error: {body}")
        if isinstance(body, dict) and "error" in body:
            error = body["error"]
            refusal = error_for_code(str(error.get("code"))).from_payload(
                str(error.get("message")), error.get("details")
            )
            if isinstance(refusal, CreditsUnavailable):
                raise _Transient("Debit function busy")
            raise refusal
        return OperationResult.model_validate(body)


class _Transient(Exception):
    """One invocation failed in a way another attempt may not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _charge_request(
    *,
    account_id: str,
    idempotency_key: str,
    amount: Decimal | int | None,
    action: str | None,
    quantity: Decimal | int | None,
    description: str,
    endpoint: str | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """The request of a debit or a reserve: by `amount`, or `action` x `quantity`."""
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
    return request


class CreditHold:
    """A hold for the length of a `with` block, from `CreditsClient.hold`.

    Entering reserves (the typed refusal propagates, and the block does not run). In the
    block, `capture(amount)` takes `amount` (all of the hold with none; `capture(0)`
    releases instead, as a capture must be positive) and `release()` gives it all back.
    On exit, a hold neither captured nor released is released, whether the block ended or
    raised; the block's exception always propagates, and a release that fails is logged,
    never raised: the hold then expires on its own (`expires_in`). A capture made before
    the block raised stands.

    The capture and release carry keys derived from the reserve's (`<key>:capture`,
    `<key>:release`; hashed when too long), so a retry of the whole block with the same key
    gets the same hold (`replayed`), and the same capture replays rather than charging
    again. A retry that settles differently than the first run gets the ledger's answer:
    `HoldNotOpen` (released or captured already) or `IdempotencyConflict` (captured
    already, another amount).
    """

    def __init__(
        self,
        client: CreditsClient,
        account_id: str,
        idempotency_key: str,
        reserve: Callable[[], OperationResult],
    ) -> None:
        self.account_id = account_id
        self.idempotency_key = idempotency_key
        self._client = client
        self._reserve = reserve
        self._reservation: OperationResult | None = None
        self._closed = False
        # The capture's or release's result, once one succeeded.
        self.settlement: OperationResult | None = None

    @property
    def reservation(self) -> OperationResult:
        if self._reservation is None:
            raise RuntimeError("the hold is reserved on entering its `with` block")
        return self._reservation

    @property
    def hold_id(self) -> str:
        hold_id = self.reservation.hold_id
        if hold_id is None:  # pragma: no cover - a reserve's result always names its hold
            raise RuntimeError("the reserve's result names no hold")
        return hold_id

    @property
    def amount(self) -> Decimal:
        """What the hold holds: the most a capture may take."""
        return self.reservation.amount

    @property
    def replayed(self) -> bool:
        """Whether the reserve replayed an earlier one with the same key (a retry)."""
        return self.reservation.replayed

    @property
    def open(self) -> bool:
        """Neither captured nor released through this object (nor found closed)."""
        return self._reservation is not None and not self._closed

    def capture(self, amount: Decimal | int | None = None) -> OperationResult:
        """Take `amount` of the hold (all of it with none); 0 releases it instead."""
        if amount is not None and Decimal(amount) == 0:
            return self.release()
        return self._settle(
            lambda: self._client.capture(
                self.account_id,
                self.hold_id,
                amount,
                idempotency_key=derived_key(self.idempotency_key, CAPTURE_STEP),
            )
        )

    def release(self) -> OperationResult:
        """Give all of the hold back to `available`."""
        return self._settle(
            lambda: self._client.release(
                self.account_id,
                self.hold_id,
                idempotency_key=derived_key(self.idempotency_key, RELEASE_STEP),
            )
        )

    def _settle(self, step: Callable[[], OperationResult]) -> OperationResult:
        try:
            result = step()
        except (HoldNotFound, HoldNotOpen, IdempotencyConflict):
            self._closed = True  # settled already (an earlier run's step): nothing to release
            raise
        self._closed = True
        self.settlement = result
        return result

    def __enter__(self) -> CreditHold:
        self._reservation = self._reserve()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.open:
            return
        try:
            self.release()
        except Exception:
            # Never instead of the block's own exception: the hold expires on its own.
            logger.warning(
                "hold not released; it expires at %s",
                self.reservation.expires_at,
                exc_info=True,
                extra={"accountId": self.account_id, "holdId": self.hold_id},
            )


P = ParamSpec("P")
R = TypeVar("R")
Handler = Callable[[dict[str, Any], Any], R]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def idempotency_key_of(event: Any) -> str | None:
    """The business id of the request an event carries, as `charge_per_call`'s default
    idempotency key, or None when it carries none. Stable across every delivery and retry
    of the same request, and different for different requests:

    - an SQS event of ONE record: `sqs:<messageId>` (a redelivery keeps its messageId);
      a batch of several has no single id (charge per message, or pass a key);
    - an EventBridge event: `events:<id>` (a retry of the delivery keeps its id);
    - an API Gateway proxy event: `http:<Idempotency-Key header>` when the caller sent one
      (its retries then charge once), else `apigw:<requestContext.requestId>`;
    - a direct invocation whose payload names one: its `idempotencyKey` field.

    Never the invocation's `aws_request_id`: SQS redelivers a message in a new invocation."""
    if not isinstance(event, dict):
        return None
    records = event.get("Records")
    if isinstance(records, list):
        sqs = [r for r in records if isinstance(r, dict) and r.get("eventSource") == "aws:sqs"]
        message_id = _text(sqs[0].get("messageId")) if len(records) == len(sqs) == 1 else None
        return f"sqs:{message_id}" if message_id else None
    if "detail-type" in event and _text(event.get("id")):
        return f"events:{event['id']}"
    context = event.get("requestContext")
    if isinstance(context, dict) and ("httpMethod" in event or "routeKey" in event):
        headers = event.get("headers") if isinstance(event.get("headers"), dict) else {}
        sent = {str(k).lower(): v for k, v in (headers or {}).items()}
        header = _text(sent.get(IDEMPOTENCY_KEY_HEADER))
        if header:
            return f"http:{header}"
        request_id = _text(context.get("requestId"))
        return f"apigw:{request_id}" if request_id else None
    return _text(event.get("idempotencyKey"))


def _key_for(
    event: dict[str, Any],
    context: Any,
    choose: Callable[[dict[str, Any], LambdaContextLike], str] | None,
) -> str:
    key = choose(event, context) if choose else idempotency_key_of(event)
    if not key:
        raise ValidationFailed(
            "charge_per_call needs the request's business id as its idempotency key: pass "
            "idempotency_key=..., or invoke with an event idempotency_key_of recognises",
            {"field": "idempotencyKey"},
        )
    if len(key) > MAX_KEY_LENGTH:  # a long business id: still one key per request
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def charge_per_call(
    client: CreditsClient | Callable[[], CreditsClient],
    *,
    account_id: Callable[[dict[str, Any]], str],
    amount: Decimal | None = None,
    action: str | None = None,
    quantity: Callable[[dict[str, Any]], Decimal] | None = None,
    endpoint: str | None = None,
    idempotency_key: Callable[[dict[str, Any], LambdaContextLike], str] | None = None,
    estimate: Decimal | Callable[[dict[str, Any]], Decimal] | None = None,
    usage: Callable[[Any], Decimal | int] | None = None,
    expires_in: int | None = None,
) -> Callable[[Handler[R]], Handler[R]]:
    """Charge credits for each call of a Lambda handler.

    A fixed cost (`amount`, or `action` x `quantity` from the price list) is debited before
    the handler runs and voided if it raises. A cost known only afterwards is held first:
    give `estimate` (the most a call may cost: credits, or a function of the event) and
    `usage`, which reads what the call used from the handler's return value. The decorator
    reserves the estimate (refused: the handler does not run, the typed error propagates),
    runs the handler, and captures `usage(result)`; 0 releases the hold, more than the
    estimate captures all of it (logged). If the handler or `usage` raises, the hold is
    released and the exception propagates.

        @charge_per_call(
            credits,
            account_id=lambda event: event["accountId"],
            estimate=lambda event: Decimal(event["maxMinutes"]) * 3,
            usage=lambda result: result["creditsUsed"],
            expires_in=900,  # longer than the handler can run
        )
        def lambda_handler(event, context):
            minutes = transcribe(event["audioUrl"], limit=event["maxMinutes"])
            return {"minutes": minutes, "creditsUsed": Decimal(minutes) * 3}

    The idempotency key is the business id of the request: `idempotency_key(event,
    context)` when given, else `idempotency_key_of(event)` (an SQS message's id, an
    EventBridge event's id, API Gateway's `Idempotency-Key` header or request id, a direct
    invocation's `idempotencyKey`); with neither, the call is refused (`ValidationFailed`)
    before anything is charged. Never the invocation's `aws_request_id`: an SQS redelivery
    of one message comes in a new invocation and must not charge twice.

    Every delivery and retry of one request therefore charges once: the debit, or the
    reserve and its capture, replay. A failed call's debit is voided (in full, and counted
    as failed in usage) or its hold released before its exception propagates; when a later
    attempt of the same request succeeds, it is charged then, under `<key>:recharge`
    (a retry does not run free): a replayed debit is voided (a replay if the failed attempt
    voided it) and charged again under that key, a replayed hold that was released has the
    call's usage debited under it. Either way exactly one charge stands per request, however
    many attempts ran.
    """
    if (estimate is None) != (usage is None):
        raise TypeError("charge_per_call: give both 'estimate' and 'usage' to hold, or neither")
    if estimate is not None and (amount is not None or action is not None or quantity is not None):
        raise TypeError("charge_per_call: 'estimate' and 'usage' replace 'amount' and 'action'")

    def decorate(handler: Handler[R]) -> Handler[R]:
        description = f"{endpoint or handler.__name__} call"

        @functools.wraps(handler)
        def charged(event: dict[str, Any], context: Any) -> R:
            credits = client if isinstance(client, CreditsClient) else client()
            key = _key_for(event, context, idempotency_key)
            account = account_id(event)
            if usage is not None and estimate is not None:
                most = estimate(event) if callable(estimate) else estimate
                with credits.hold(
                    account,
                    most,
                    idempotency_key=key,
                    expires_in=expires_in,
                    endpoint=endpoint,
                    description=description,
                ) as hold:
                    result = handler(event, context)
                    _capture_usage(hold, usage(result))
                return result
            charge = credits.debit(
                account_id=account,
                idempotency_key=key,
                amount=amount,
                action=action,
                quantity=quantity(event) if quantity else None,
                endpoint=endpoint,
                description=description,
            )
            try:
                result = handler(event, context)
            except Exception:
                credits.void(
                    account_id=account,
                    idempotency_key=key,
                    reason=f"Void of {charge.transaction_id}: the charged call failed",
                )
                raise
            if charge.replayed:
                _recharge_if_voided(credits, account, key, charge)
            return result

        return charged

    return decorate


def _recharge_if_voided(
    credits: CreditsClient, account: str, key: str, charge: OperationResult
) -> None:
    """A successful attempt whose debit replayed an earlier attempt's: make sure exactly one
    charge stands. Voiding `key` replays when the earlier attempt failed (voided), or voids
    a charge that stood (an earlier success: a redelivery); either way the call is then
    charged under `<key>:recharge`, which replays on any later attempt. Past the void
    window the earlier charge stands (a void of it would have replayed): nothing to do."""
    try:
        credits.void(
            account_id=account,
            idempotency_key=key,
            reason=f"Void of {charge.transaction_id}: charged again under its retry",
        )
    except VoidNotAllowed:
        return
    credits.debit(
        account_id=account,
        idempotency_key=derived_key(key, RECHARGE_STEP),
        amount=charge.amount,
        description=f"Retry of {charge.transaction_id}",
    )


def _capture_usage(hold: CreditHold, used: Decimal | int) -> None:
    """Capture what a call used, at most its hold. A retried invocation whose earlier
    attempt captured the hold already is not charged again (the capture replays, or is
    refused and logged); one whose earlier attempt failed and released the hold has the
    usage debited under `<key>:recharge` instead (a retry does not run free)."""
    taken: Decimal | int | None = used
    if used > hold.amount:
        logger.warning(
            "the call used %s, more than its estimate: capturing all of the hold",
            used,
            extra={"accountId": hold.account_id, "holdId": hold.hold_id, "held": hold.amount},
        )
        taken = None
    try:
        hold.capture(taken)
    except (HoldNotFound, HoldNotOpen, IdempotencyConflict) as refused:
        if not hold.replayed:
            raise
        status = (refused.details or {}).get("status")
        if isinstance(refused, HoldNotOpen) and status != "captured" and used > 0:
            hold._client.debit(
                account_id=hold.account_id,
                idempotency_key=derived_key(hold.idempotency_key, RECHARGE_STEP),
                amount=min(Decimal(used), hold.amount),
                description=f"Retry of hold {hold.hold_id}",
            )
            return
        logger.warning(
            "hold settled by an earlier attempt of this invocation: %r",
            refused,
            extra={"accountId": hold.account_id, "holdId": hold.hold_id},
        )


__all__ = [
    "CreditHold",
    "CreditsClient",
    "CreditsError",
    "CreditsUnavailable",
    "charge_per_call",
    "idempotency_key_of",
]
