"""Holds through the Lambda client: `reserve`, `capture`, `release`, the `hold()` context
manager and the charge decorator's hold-then-capture mode, with the Debit function run
in-process behind a fake Lambda API (tests/unit/test_client.py) and the materializer run
before each invocation, as the stream does in AWS."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.domain import errors
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.holds import MAX_OPEN_HOLDS
from serverless_credits.domain.idempotency import MAX_KEY_LENGTH
from serverless_credits.domain.models import Account
from serverless_credits.domain.money import normalize
from serverless_credits.integrations.client import CreditsClient, charge_per_call
from serverless_credits.storage.store import CreditsStore
from tests.unit.test_client import FakeContext, InProcessLambda, client_with


@dataclass
class FailingLambda(InProcessLambda):
    """Fails every invocation of the named operations, as an unreachable Debit function."""

    failing: set[str] = field(default_factory=set)

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        if json.loads(Payload).get("operation") in self.failing:
            body = {"errorMessage": "boom", "errorType": "RuntimeError"}
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(body).encode())}
        return super().invoke(
            FunctionName=FunctionName, InvocationType=InvocationType, Payload=Payload
        )


@pytest.fixture
def account_id(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_holds", opening_balance=Decimal(5))
    )
    return "acct_holds"


@pytest.fixture
def fake(materialize: Callable[[], int]) -> InProcessLambda:
    return InProcessLambda(materialize=materialize)


@pytest.fixture
def credits(fake: InProcessLambda) -> CreditsClient:
    return client_with(fake)


def account(account_id: str) -> Account:
    return wiring.ledger().account(account_id)


def figures(*amounts: Decimal | None) -> tuple[str | None, ...]:
    """Amounts as their shortest text, to compare with literals: `figures(x) == ("1.5",)`."""
    return tuple(None if amount is None else str(normalize(amount)) for amount in amounts)


def money(account_id: str) -> tuple[str | None, ...]:
    """(balance, reserved, available) of the account item."""
    state = account(account_id)
    return figures(state.balance, state.reserved, state.available)


def operations(fake: InProcessLambda) -> list[tuple[str, str]]:
    return [(call.get("operation", "debit"), call["idempotencyKey"]) for call in fake.calls]


# ---------------------------------------------------------------- reserve, capture, release
def test_reserve_then_capture_part_returns_the_rest(
    credits: CreditsClient, account_id: str
) -> None:
    held = credits.reserve(account_id, Decimal(3), idempotency_key="r1", expires_in=60)

    assert held.hold_id is not None
    assert held.hold_id.startswith("hold_")
    assert figures(held.amount, held.available, held.balance_after) == ("3", "2", "5")
    assert held.expires_at is not None
    assert money(account_id) == ("5", "3", "2")

    taken = credits.capture(account_id, held.hold_id, Decimal("1.25"), idempotency_key="c1")

    assert figures(taken.amount, taken.released, taken.balance_after, taken.available) == (
        "1.25",
        "1.75",
        "3.75",
        "3.75",
    )
    assert money(account_id) == ("3.75", "0", "3.75")


def test_capture_without_an_amount_takes_all_of_the_hold(
    credits: CreditsClient, account_id: str
) -> None:
    held = credits.reserve(account_id, 2, idempotency_key="r1")
    assert held.hold_id is not None

    taken = credits.capture(account_id, held.hold_id, idempotency_key="c1")

    assert figures(taken.amount, taken.released) == ("2", "0")
    assert money(account_id) == ("3", "0", "3")


def test_release_gives_all_of_the_hold_back(credits: CreditsClient, account_id: str) -> None:
    held = credits.reserve(account_id, action="sms", quantity=2, idempotency_key="r1")
    assert held.hold_id is not None
    assert held.amount == 2

    released = credits.release(account_id, held.hold_id, idempotency_key="x1")

    assert figures(released.amount, released.released, released.available) == ("2", "2", "5")
    assert money(account_id) == ("5", "0", "5")


def test_each_step_replays_under_its_key(credits: CreditsClient, account_id: str) -> None:
    first = credits.reserve(account_id, 3, idempotency_key="r1")
    again = credits.reserve(account_id, 3, idempotency_key="r1")
    assert first.hold_id is not None
    taken = credits.capture(account_id, first.hold_id, 1, idempotency_key="c1")
    taken_again = credits.capture(account_id, first.hold_id, 1, idempotency_key="c1")

    assert (again.hold_id, again.replayed) == (first.hold_id, True)
    assert (taken_again.transaction_id, taken_again.replayed) == (taken.transaction_id, True)
    assert money(account_id) == ("4", "0", "4")


def test_refusals_raise_the_typed_hold_errors(credits: CreditsClient, account_id: str) -> None:
    with pytest.raises(errors.InsufficientCredits) as refused:
        credits.reserve(account_id, 9, idempotency_key="too-much")
    assert refused.value.available == 5

    held = credits.reserve(account_id, 1, idempotency_key="r1")
    assert held.hold_id is not None
    with pytest.raises(errors.ValidationFailed):  # more than the hold holds
        credits.capture(account_id, held.hold_id, 2, idempotency_key="c-over")
    credits.release(account_id, held.hold_id, idempotency_key="x1")
    with pytest.raises(errors.HoldNotOpen) as not_open:
        credits.capture(account_id, held.hold_id, idempotency_key="c1")
    assert not_open.value.details == {"holdId": held.hold_id, "status": "released"}

    with pytest.raises(errors.HoldNotFound):
        credits.release(account_id, "hold_0123456789abcdef", idempotency_key="x2")


def test_a_hold_past_the_cap_is_too_many_open_holds(account_id: str) -> None:
    for number in range(MAX_OPEN_HOLDS):  # straight to the ledger: only the refusal matters
        wiring.ledger().holds.reserve(
            ReserveCommand(
                account_id=account_id, amount=Decimal("0.01"), idempotency_key=f"r{number}"
            )
        )

    with pytest.raises(errors.TooManyOpenHolds) as refused:
        client_with(InProcessLambda()).reserve(
            account_id, Decimal("0.01"), idempotency_key="one-too-many"
        )

    assert refused.value.details == {"accountId": account_id, "limit": MAX_OPEN_HOLDS}


# ---------------------------------------------------------------- the hold() context manager
def test_the_block_captures_what_it_used(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    with credits.hold(account_id, 3, idempotency_key="job-1", description="transcribe") as hold:
        assert money(account_id) == ("5", "3", "2")
        assert figures(hold.amount) == ("3",)
        assert (hold.replayed, hold.open) == (False, True)
        taken = hold.capture(Decimal("2.5"))

    assert figures(taken.amount, taken.released) == ("2.5", "0.5")
    assert (hold.settlement, hold.open) == (taken, False)
    assert money(account_id) == ("2.5", "0", "2.5")
    assert operations(fake) == [("reserve", "job-1"), ("capture", "job-1:capture")]


def test_the_block_that_raises_releases_the_hold_and_the_error_propagates(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    with (
        pytest.raises(RuntimeError, match="work failed"),
        credits.hold(account_id, 3, idempotency_key="job-1"),
    ):
        raise RuntimeError("work failed")

    assert money(account_id) == ("5", "0", "5")
    assert operations(fake) == [("reserve", "job-1"), ("release", "job-1:release")]


def test_a_block_that_ends_without_a_capture_releases_the_hold(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    with credits.hold(account_id, 3, idempotency_key="job-1") as hold:
        pass

    assert money(account_id) == ("5", "0", "5")
    assert hold.settlement is not None
    assert hold.settlement.released == 3
    assert operations(fake)[-1] == ("release", "job-1:release")


def test_capture_of_zero_releases(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    with credits.hold(account_id, 3, idempotency_key="job-1") as hold:
        released = hold.capture(0)

    assert figures(released.amount, released.released) == ("3", "3")
    assert money(account_id) == ("5", "0", "5")
    assert [name for name, _ in operations(fake)] == ["reserve", "release"]  # once, not on exit


def test_capture_of_everything_by_default(credits: CreditsClient, account_id: str) -> None:
    with credits.hold(account_id, action="sms", quantity=3, idempotency_key="job-1") as hold:
        hold.capture()

    assert money(account_id) == ("2", "0", "2")


def test_a_refused_hold_does_not_run_the_block(credits: CreditsClient, account_id: str) -> None:
    ran: list[bool] = []
    with (
        pytest.raises(errors.InsufficientCredits),
        credits.hold(account_id, 9, idempotency_key="job-1"),
    ):
        ran.append(True)

    assert ran == []
    assert money(account_id) == ("5", "0", "5")


def test_a_refused_capture_releases_the_hold_and_propagates(
    credits: CreditsClient, account_id: str
) -> None:
    """Capturing more than held is the caller's error: the hold is not left open for it."""
    with (
        pytest.raises(errors.ValidationFailed),
        credits.hold(account_id, 3, idempotency_key="job-1") as hold,
    ):
        hold.capture(4)

    assert money(account_id) == ("5", "0", "5")


def test_a_failed_release_never_masks_the_blocks_error(
    materialize: Callable[[], int], account_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The Debit function unreachable for the release: the block's own exception is what
    the caller sees, the failure is logged, and the hold stays open until its expiry."""
    fake = FailingLambda(materialize=materialize, failing={"release"})
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(KeyError, match="lost"),
        client_with(fake).hold(account_id, 3, idempotency_key="job-1") as hold,
    ):
        raise KeyError("lost")

    assert money(account_id) == ("5", "3", "2")
    assert hold.hold_id in (account(account_id).holds or {})
    assert "hold not released" in caplog.text


def test_a_failed_release_after_a_clean_block_is_logged_not_raised(
    materialize: Callable[[], int], account_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FailingLambda(materialize=materialize, failing={"release"})
    with (
        caplog.at_level(logging.WARNING),
        client_with(fake).hold(account_id, 3, idempotency_key="job-1"),
    ):
        pass

    assert money(account_id) == ("5", "3", "2")
    assert "hold not released" in caplog.text


def test_a_retried_block_gets_the_same_hold_and_is_charged_once(
    credits: CreditsClient, account_id: str
) -> None:
    def job() -> tuple[str, bool, bool]:
        with credits.hold(account_id, 3, idempotency_key="job-1") as hold:
            taken = hold.capture(2)
        return hold.hold_id, hold.replayed, taken.replayed

    first = job()
    retried = job()

    assert retried == (first[0], True, True)
    assert first[1:] == (False, False)
    assert money(account_id) == ("3", "0", "3")


def test_a_retry_of_a_released_block_is_refused_its_capture(
    credits: CreditsClient, account_id: str
) -> None:
    """The first run released the hold (it failed); the retry gets that same hold, closed:
    the ledger's answer propagates and nothing is charged or released twice."""
    with pytest.raises(RuntimeError), credits.hold(account_id, 3, idempotency_key="job-1"):
        raise RuntimeError("first attempt failed")

    def retry() -> None:
        with credits.hold(account_id, 3, idempotency_key="job-1") as hold:
            assert hold.replayed
            hold.capture(1)

    with pytest.raises(errors.HoldNotOpen):
        retry()

    assert money(account_id) == ("5", "0", "5")


def test_keys_near_the_limit_derive_step_keys_that_fit(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    long_key = "k" * MAX_KEY_LENGTH
    with credits.hold(account_id, 3, idempotency_key=long_key) as hold:
        hold.capture(1)
    with credits.hold(account_id, 1, idempotency_key=long_key[:-1] + "j"):
        pass

    (_, capture_key), (_, release_key) = operations(fake)[1], operations(fake)[3]
    assert capture_key.startswith("capture:")
    assert release_key.startswith("release:")
    assert len(capture_key) <= MAX_KEY_LENGTH
    assert len(release_key) <= MAX_KEY_LENGTH
    assert money(account_id) == ("4", "0", "4")


# ---------------------------------------------------------------- the decorator's hold mode
def metered(
    credits: CreditsClient, ran: list[dict[str, Any]], **options: Any
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A handler that reports what it used in its result (`creditsUsed`), as the event
    asks, and fails when the event says so."""

    @charge_per_call(
        credits,
        account_id=lambda event: event["accountId"],
        usage=lambda result: result["creditsUsed"],
        endpoint="/v1/transcribe",
        **{"estimate": Decimal(3), **options},
    )
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ran.append(event)
        if event.get("fail"):
            raise RuntimeError("transcription failed")
        return {"text": "...", "creditsUsed": Decimal(str(event["used"]))}

    return handler


def test_hold_mode_captures_the_reported_usage_once_per_request(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    ran: list[dict[str, Any]] = []
    handler = metered(credits, ran)
    event = {"idempotencyKey": "r1", "accountId": account_id, "used": "1.5"}

    assert handler(event, FakeContext("r1"))["creditsUsed"] == Decimal("1.5")
    assert money(account_id) == ("3.5", "0", "3.5")
    handler(event, FakeContext("r1"))  # Lambda's retry of the same invocation

    assert money(account_id) == ("3.5", "0", "3.5")
    assert len(ran) == 2
    assert operations(fake)[:2] == [("reserve", "r1"), ("capture", "r1:capture")]
    assert fake.calls[0]["amount"] == 3
    assert fake.calls[0]["endpoint"] == "/v1/transcribe"


def test_hold_mode_releases_when_the_handler_fails(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    handler = metered(credits, [])

    with pytest.raises(RuntimeError, match="transcription failed"):
        handler({"idempotencyKey": "r1", "accountId": account_id, "fail": True}, FakeContext("r1"))

    assert money(account_id) == ("5", "0", "5")
    assert operations(fake) == [("reserve", "r1"), ("release", "r1:release")]


def test_a_retry_after_a_released_failure_is_charged_once_not_free(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    """The first attempt failed and released its hold; the retry (an async retry, an SQS
    redelivery: the same business id) gets that released hold back, so its usage is debited
    under `<key>:recharge`, once: a further delivery replays that debit (issue 15: "a Lambda
    async retry must not run free")."""
    handler = metered(credits, [])
    with pytest.raises(RuntimeError):
        handler({"idempotencyKey": "r1", "accountId": account_id, "fail": True}, FakeContext("r1"))

    result = handler(
        {"idempotencyKey": "r1", "accountId": account_id, "used": 2}, FakeContext("r2")
    )
    again = handler({"idempotencyKey": "r1", "accountId": account_id, "used": 2}, FakeContext("r3"))

    assert result["creditsUsed"] == again["creditsUsed"] == 2
    assert money(account_id) == ("3", "0", "3")
    recharges = [key for operation, key in operations(fake) if key == "r1:recharge"]
    assert recharges == ["r1:recharge", "r1:recharge"]  # the second replayed


def test_hold_mode_does_not_run_the_handler_when_the_estimate_is_refused(
    credits: CreditsClient, account_id: str
) -> None:
    ran: list[dict[str, Any]] = []
    handler = metered(credits, ran, estimate=Decimal(9))

    with pytest.raises(errors.InsufficientCredits) as refused:
        handler({"idempotencyKey": "r1", "accountId": account_id, "used": 1}, FakeContext("r1"))

    assert refused.value.available == 5
    assert ran == []
    assert money(account_id) == ("5", "0", "5")


def test_hold_mode_usage_of_zero_releases_and_above_the_estimate_takes_it_all(
    credits: CreditsClient, account_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = metered(credits, [])

    handler({"idempotencyKey": "r-free", "accountId": account_id, "used": 0}, FakeContext("r-free"))
    assert money(account_id) == ("5", "0", "5")
    with caplog.at_level(logging.WARNING):
        handler(
            {"idempotencyKey": "r-over", "accountId": account_id, "used": 4}, FakeContext("r-over")
        )

    assert money(account_id) == ("2", "0", "2")  # the estimate, 3: the most a call may cost
    assert "more than its estimate" in caplog.text


def test_hold_mode_estimates_from_the_event(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    handler = metered(credits, [], estimate=lambda event: Decimal(event["maxMinutes"]) * 2)

    handler(
        {"idempotencyKey": "r1", "accountId": account_id, "maxMinutes": 2, "used": 3},
        FakeContext("r1"),
    )

    assert [call["amount"] for call in fake.calls] == [4, 3]  # reserved, captured
    assert money(account_id) == ("2", "0", "2")


def test_a_failing_usage_extractor_releases_the_hold(
    credits: CreditsClient, account_id: str
) -> None:
    """What the call cost cannot be told: nothing is charged, and the error propagates."""

    @charge_per_call(
        credits,
        account_id=lambda event: event["accountId"],
        estimate=Decimal(3),
        usage=lambda result: result["creditsUsed"],
    )
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"text": "..."}

    with pytest.raises(KeyError, match="creditsUsed"):
        handler({"idempotencyKey": "r1", "accountId": account_id}, FakeContext("r1"))

    assert money(account_id) == ("5", "0", "5")


def test_hold_mode_needs_an_estimate_and_a_usage_and_no_fixed_cost(
    credits: CreditsClient,
) -> None:
    with pytest.raises(TypeError, match="both"):
        charge_per_call(credits, account_id=lambda e: "a", usage=lambda r: 1)
    with pytest.raises(TypeError, match="both"):
        charge_per_call(credits, account_id=lambda e: "a", estimate=Decimal(1))
    with pytest.raises(TypeError, match="replace"):
        charge_per_call(
            credits,
            account_id=lambda e: "a",
            action="api_call",
            estimate=Decimal(1),
            usage=lambda r: 1,
        )


def test_a_hold_closed_under_a_first_attempt_is_the_ledgers_answer(
    credits: CreditsClient, account_id: str
) -> None:
    """Only a retry is excused a refused capture: a first attempt whose hold closed while
    the handler ran (here released behind its back, as an expiry would) propagates it."""

    @charge_per_call(
        credits,
        account_id=lambda event: event["accountId"],
        estimate=Decimal(3),
        usage=lambda result: result,
    )
    def handler(event: dict[str, Any], context: Any) -> Decimal:
        (hold_id,) = account(account_id).holds or {}
        wiring.ledger().holds.release(
            ReleaseCommand(account_id=account_id, hold_id=hold_id, idempotency_key="behind")
        )
        return Decimal(1)

    with pytest.raises(errors.HoldNotOpen):
        handler({"idempotencyKey": "r1", "accountId": account_id}, FakeContext("r1"))

    assert money(account_id) == ("5", "0", "5")


def test_a_hold_is_reserved_only_on_entering_its_block(
    credits: CreditsClient, fake: InProcessLambda, account_id: str
) -> None:
    hold = credits.hold(account_id, 3, idempotency_key="job-1")

    assert not hold.open
    with pytest.raises(RuntimeError, match="entering"):
        hold.capture()
    assert fake.calls == []
