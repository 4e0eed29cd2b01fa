"""The real `credits-admin` executable (the venv's console script) against the local stack,
as an operator runs it from another terminal: `credits-admin --local --json ...` in a
directory whose `.local/stack.json` describes the running stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_stack import LocalStack
from serverless_credits.domain.errors import AccountSuspended
from serverless_credits.domain.events import BalanceEvent, BalanceLowDetail, FailedEvent
from serverless_credits.integrations.client import CreditsClient
from serverless_credits.integrations.eventbridge import SqsReplayQueue
from tests.e2e.support import Api, eventually

pytestmark = pytest.mark.e2e

EXECUTABLE = Path(sys.executable).with_name("credits-admin")
TIMEOUT = 60


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def body(self) -> Any:
        assert self.out.strip(), f"no stdout (exit {self.code}); stderr: {self.err}"
        return json.loads(self.out)  # exactly one JSON object, or this fails


Admin = Callable[..., Outcome]


@pytest.fixture(scope="module")
def operator_directory(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose `.local/stack.json` is the test stack's description."""
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} is missing: run `make install` (pip install -e .)")
    assert stack.settings.state_file is not None
    directory = tmp_path_factory.mktemp("operator")
    (directory / ".local").mkdir()
    (directory / ".local" / "stack.json").symlink_to(stack.settings.state_file)
    return directory


@pytest.fixture
def admin(operator_directory: Path) -> Admin:
    def run(*argv: str, json_output: bool = True) -> Outcome:
        command = [str(EXECUTABLE), "--local", *(["--json"] if json_output else []), *argv]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            command,
            cwd=operator_directory,
            env=environment,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def account(admin: Admin) -> dict[str, Any]:
    created = admin(
        "accounts",
        "create",
        "--name",
        f"E2E {uuid.uuid4().hex[:6]}",
        "--plan",
        "pro",
        "--credits",
        "100",
    )
    assert created.code == 0, created.err
    body: dict[str, Any] = created.body
    return body


def balance_of(admin: Admin, account_id: str) -> Decimal:
    shown = admin("accounts", "show", account_id)
    assert shown.code == 0, shown.err
    return Decimal(str(shown.body["account"]["balance"]))


def test_create_an_account_and_call_the_api_with_the_printed_key(
    admin: Admin, stack: LocalStack
) -> None:
    created = admin(
        "accounts", "create", "--name", "Voxpria Ltd", "--plan", "pro", "--credits", "250.5"
    )

    assert created.code == 0, created.err
    body = created.body
    assert set(body) >= {"accountId", "apiKey", "apiKeyId", "plan"}
    assert body["plan"] == "pro"
    response = Api(stack.api_url, body["apiKey"]).get("/v1/credits/balance")
    assert response.status_code == 200, response.text
    assert Decimal(str(response.json()["balance"])) == Decimal("250.5")
    listed = admin("accounts", "list", "--limit", "1000")
    assert body["accountId"] in {a["accountId"] for a in listed.body["accounts"]}
    keys = admin("keys", "list", body["accountId"])
    assert [k["apiKeyId"] for k in keys.body["keys"]] == [body["apiKeyId"]]
    assert "apiKey" not in json.dumps(keys.body).replace("apiKeyId", "")


def test_top_up_twice_with_one_key_charges_once(admin: Admin, account: dict[str, Any]) -> None:
    account_id = account["accountId"]
    topup = ("credits", "topup", account_id, "25", "--reference", "po_1", "--idempotency-key")

    first = admin(*topup, "topup-1")
    second = admin(*topup, "topup-1")
    conflict = admin("credits", "topup", account_id, "26", "--idempotency-key", "topup-1")

    assert (first.code, second.code) == (0, 0), first.err + second.err
    assert first.body["replayed"] is False
    assert second.body["replayed"] is True
    assert second.body["transactionId"] == first.body["transactionId"]
    assert conflict.code == 1
    assert "IDEMPOTENCY_CONFLICT" in conflict.err
    assert balance_of(admin, account_id) == 125


def test_a_generated_idempotency_key_is_printed_and_retries_safely(
    admin: Admin, account: dict[str, Any]
) -> None:
    account_id = account["accountId"]
    grant = ("credits", "grant", account_id, "5", "--expires-at", "2030-01-31", "--priority", "5")

    first = admin(*grant)
    retried = admin(*grant, "--idempotency-key", first.body["idempotencyKey"])
    human = admin("credits", "topup", account_id, "1", json_output=False)

    assert first.code == 0, first.err
    assert first.body["idempotencyKey"].startswith("adm-")
    assert retried.body == {**first.body, "replayed": True}
    assert human.code == 0, human.err
    assert "idempotency key: adm-" in human.err
    assert "transactionId" in human.out
    assert balance_of(admin, account_id) == 106


def test_credits_open_lots_an_operator_lists_in_burn_order(
    admin: Admin, account: dict[str, Any]
) -> None:
    """A grant with a priority and an expiry and a purchase order: each result names its lot;
    `lots list` shows them in burn order (the opening grant, priority 60, between), what each
    was granted as once the stream recorded it, and sums to the balance."""
    account_id = account["accountId"]
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    promo = admin(
        "credits",
        "grant",
        account_id,
        "20",
        "--priority",
        "90",
        "--expires-at",
        expires.isoformat(),
        "--description",
        "Goodwill",
    )
    order = admin("credits", "topup", account_id, "50", "--reference", "po_e2e", "--priority", "10")
    too_soon = admin("credits", "grant", account_id, "5", "--expires-in", "2m")

    assert (promo.code, order.code) == (0, 0), promo.err + order.err
    assert promo.body["lots"] == {promo.body["lotId"]: 20}
    assert too_soon.code == 1
    assert too_soon.body["error"]["code"] == "VALIDATION_ERROR"

    def recorded() -> dict[str, Any] | None:
        listed = admin("lots", "list", account_id)
        assert listed.code == 0, listed.err
        lots = listed.body["lots"]
        return listed.body if all(lot["initialAmount"] is not None for lot in lots) else None

    listed = eventually(recorded, what="the LOT items recorded from the stream")
    lots = listed["lots"]
    assert [lot["lotId"] for lot in lots][::2] == [promo.body["lotId"], order.body["lotId"]]
    assert [(lot["priority"], lot["source"], lot["remaining"]) for lot in lots] == [
        (90, "grant", 20),
        (60, "grant", 100),  # the opening balance
        (10, "topup", 50),
    ]
    assert lots[0]["expiresAt"] == expires.isoformat().replace("+00:00", "Z")
    assert (lots[0]["description"], lots[2]["reference"]) == ("Goodwill", "po_e2e")
    assert {lot["status"] for lot in lots} == {"active"}
    assert listed["balance"] == sum(lot["remaining"] for lot in lots) == 170
    table = admin("lots", "list", account_id, json_output=False)
    assert table.code == 0, table.err
    assert "po_e2e" in table.out
    assert table.out.index(promo.body["lotId"]) < table.out.index(order.body["lotId"])
    nothing_expired = admin("lots", "expire", account_id)
    assert nothing_expired.body["expiries"] == []
    assert nothing_expired.body["balance"] == 170


def test_refund_part_of_a_debit_twice_with_one_key_then_more_than_is_left(
    admin: Admin, account: dict[str, Any], credits_client: CreditsClient
) -> None:
    account_id = account["accountId"]
    charge = credits_client.debit(
        account_id=account_id, amount=Decimal(10), idempotency_key="call-1"
    )
    refund = ("credits", "refund", account_id, charge.transaction_id)

    first = admin(*refund, "--amount", "4", "--reason", "dropped", "--idempotency-key", "r-1")
    second = admin(*refund, "--amount", "4", "--reason", "dropped", "--idempotency-key", "r-1")
    too_much = admin(*refund, "--amount", "7", "--idempotency-key", "r-2")

    assert first.code == 0, first.err
    assert first.body["amount"] == 4
    assert second.body == {**first.body, "replayed": True}
    assert too_much.code == 1
    assert too_much.body["error"]["code"] == "REFUND_NOT_ALLOWED"
    assert "REFUND_NOT_ALLOWED" in too_much.err
    assert balance_of(admin, account_id) == 94  # 100 - 10 + 4


def test_suspend_refuses_debits_and_keeps_reads_then_reactivate(
    admin: Admin, account: dict[str, Any], credits_client: CreditsClient, stack: LocalStack
) -> None:
    account_id = account["accountId"]
    api = Api(stack.api_url, account["apiKey"])

    suspended = admin("accounts", "suspend", account_id, "--reason", "chargeback")
    with pytest.raises(AccountSuspended):
        credits_client.debit(account_id=account_id, amount=Decimal(1), idempotency_key="s-1")
    read = api.get("/v1/credits/balance")
    reactivated = admin("accounts", "reactivate", account_id)
    charged = credits_client.debit(account_id=account_id, amount=Decimal(1), idempotency_key="s-2")

    assert suspended.code == 0, suspended.err
    assert suspended.body["account"]["status"] == "suspended"
    assert suspended.body["account"]["statusReason"] == "chargeback"
    assert read.status_code == 200, read.text
    assert reactivated.body["account"]["status"] == "active"
    assert charged.balance_after == 99


def test_rotate_and_revoke_keys(admin: Admin, account: dict[str, Any], stack: LocalStack) -> None:
    account_id, old_key = account["accountId"], account["apiKey"]

    rotated = admin("keys", "rotate", account_id)

    assert rotated.code == 0, rotated.err
    new_key = rotated.body["apiKey"]
    assert rotated.body["revoked"] == [account["apiKeyId"]]
    assert Api(stack.api_url, old_key).get("/v1/credits/balance").status_code == 403
    assert Api(stack.api_url, new_key).get("/v1/credits/balance").status_code == 200

    extra = admin("keys", "create", account_id)
    assert Api(stack.api_url, extra.body["apiKey"]).get("/v1/credits/balance").status_code == 200
    revoked = admin("keys", "revoke", account_id, extra.body["apiKeyId"])
    assert revoked.body == {
        "accountId": account_id,
        "apiKeyId": extra.body["apiKeyId"],
        "revoked": True,
    }
    assert Api(stack.api_url, extra.body["apiKey"]).get("/v1/credits/balance").status_code == 403
    assert Api(stack.api_url, new_key).get("/v1/credits/balance").status_code == 200


UNCHANGED_BY_A_SETTING = (
    "lowBalanceThreshold",
    "lowBalance",
    "updatedAt",
    "lastUpdated",
    "updatedBy",
    "version",
)


def settings_of(account: dict[str, Any]) -> dict[str, Any]:
    """Everything but the changed setting and what any change moves (time, who, version)."""
    return {k: v for k, v in account.items() if k not in UNCHANGED_BY_A_SETTING}


def test_a_misspelt_or_invalid_setting_changes_nothing(
    admin: Admin, account: dict[str, Any]
) -> None:
    account_id = account["accountId"]
    before = admin("accounts", "show", account_id).body["account"]

    misspelt = admin("accounts", "set", account_id, "--low-balance-treshold", "5")
    invalid = admin("accounts", "set", account_id, "--overdraft-limit", "-5")
    not_a_switch = admin("accounts", "set", account_id, "--auto-reload", "maybe")
    changed = admin("accounts", "set", account_id, "--low-balance-threshold", "20")

    assert misspelt.code == 2
    assert "--low-balance-treshold" in misspelt.err
    assert invalid.code == 1
    assert "overdraftLimit" in invalid.err
    assert invalid.body["error"]["code"] == "VALIDATION_ERROR"
    assert not_a_switch.code == 2
    assert "--auto-reload" in not_a_switch.err
    after = changed.body["account"]
    assert after["lowBalanceThreshold"] == 20
    assert settings_of(after) == settings_of(before)  # the refused commands changed nothing
    assert before["lowBalanceThreshold"] is None


def test_flag_adjust_ledger_and_reconcile(admin: Admin, account: dict[str, Any]) -> None:
    account_id = account["accountId"]

    flagged = admin("accounts", "flag", account_id, "--warning", "card testing")
    unflagged = admin("accounts", "unflag", account_id)
    adjusted = admin("credits", "adjust", account_id, "-2.5", "--reason", "double charge")
    ledger = admin("ledger", account_id, "--limit", "5")
    reconciled = admin("reconcile", account_id)

    assert flagged.body["account"]["flagged"] is True
    assert flagged.body["account"]["fraudWarning"] == "card testing"
    assert unflagged.body["account"]["flagged"] is False
    assert adjusted.body["amount"] == 2.5
    assert adjusted.body["balanceAfter"] == 97.5
    newest = ledger.body["entries"][0]
    assert (newest["type"], newest["amount"]) == ("adjustment", -2.5)
    assert newest["actor"]
    assert reconciled.code == 0, reconciled.err
    assert reconciled.body["inconsistent"] == []


def test_events_replay_publishes_a_refused_event_from_the_local_replay_queue(
    admin: Admin, stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event the bus refused, as the EventPublisherFunction leaves it in the replay queue
    (SendMessageBatch to the stack's SQS emulator), goes to the bus again with its eventId;
    the queue is empty afterwards."""
    events_file, replay_file = tmp_path / "events.jsonl", tmp_path / "event-replay.jsonl"
    monkeypatch.setattr(stack.events, "events_file", events_file)
    monkeypatch.setattr(stack.events, "replay_file", replay_file)
    event = BalanceEvent(
        detail=BalanceLowDetail.model_validate(
            {
                "event_id": "acct_e2e_replay:4:balance-low",
                "account_id": "acct_e2e_replay",
                "version": 4,
                "occurred_at": datetime(2025, 1, 1, tzinfo=UTC),
                "available": Decimal(3),
                "balance": Decimal(3),
                "threshold": Decimal(5),
                "previous_available": Decimal(8),
            }
        )
    )
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.lambda_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    queue_url = stack.runtime.environment()["EVENT_REPLAY_QUEUE_URL"] if stack.runtime else ""
    SqsReplayQueue(sqs, queue_url).send([FailedEvent(event, "InternalFailure", "try again")])
    assert len(replay_file.read_text().splitlines()) == 1

    replayed = admin("events", "replay")

    assert replayed.code == 0, replayed.err
    assert replayed.body == {
        "received": 1,
        "republished": 1,
        "failed": 0,
        "unreplayable": 0,
        "remaining": 0,
    }
    published = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [(e["id"], e["detail-type"]) for e in published] == [(event.id, "Balance Low")]
    assert published[0]["detail"] == event.envelope()["detail"]
    assert replay_file.read_text() == ""
    again = admin("events", "replay")
    assert again.body["received"] == 0
