"""`credits-admin` against a fake AdminFunction: parsing, each command's request, output
modes and exit codes (the real executable runs against the local stack in tests/e2e)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from credits_admin import cli, targets, values
from credits_admin.output import human
from credits_admin.targets import InvokeFailed, Target, TargetError

ACTOR = "ops@example"
RESULT = {
    "transactionId": "txn_7_0123456789ab",
    "amount": Decimal("12.5"),
    "balanceAfter": Decimal("112.5"),
    "available": Decimal("112.5"),
    "replayed": False,
}


@dataclass
class FakeAdmin:
    """Records what it is asked; answers with `response` (or raises `failure`)."""

    response: Any = field(default_factory=lambda: dict(RESULT))
    failure: Exception | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def connect(self, target: Target) -> FakeAdmin:
        self.targets.append(target)
        if isinstance(self.failure, TargetError):
            raise self.failure
        return self

    def invoke(self, payload: dict[str, Any]) -> Any:
        json.dumps(payload)  # what goes on the wire is plain JSON
        self.requests.append(payload)
        if self.failure is not None:
            raise self.failure
        return self.response

    def default_actor(self) -> str:
        return "me@host"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(admin: FakeAdmin, *argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), connect_to=admin.connect, stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def request_of(*argv: str) -> dict[str, Any]:
    admin = FakeAdmin()
    result = run(admin, "--local", "--actor", ACTOR, *argv)
    assert result.code == 0, result.err
    assert len(admin.requests) == 1
    return admin.requests[0]


# ---------------------------------------------------------------- every command's request
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["accounts", "create", "--name", "Voxpria"],
            {"operation": "accounts.create", "name": "Voxpria"},
        ),
        (
            [
                "accounts",
                "create",
                "--name",
                "Voxpria Ltd",
                "--plan",
                "pro",
                "--credits",
                "1000.50",
                "--currency",
                "EUR",
                "--credit-price",
                "0.015",
            ],
            {
                "operation": "accounts.create",
                "name": "Voxpria Ltd",
                "plan": "pro",
                "credits": 1000.5,
                "currency": "EUR",
                "creditPrice": 0.015,
            },
        ),
        (["accounts", "show", "acct_1"], {"operation": "accounts.show", "accountId": "acct_1"}),
        (["accounts", "list"], {"operation": "accounts.list"}),
        (["accounts", "list", "--limit", "5"], {"operation": "accounts.list", "limit": 5}),
        (
            ["accounts", "suspend", "acct_1", "--reason", "chargeback"],
            {"operation": "accounts.suspend", "accountId": "acct_1", "reason": "chargeback"},
        ),
        (
            ["accounts", "reactivate", "acct_1"],
            {"operation": "accounts.reactivate", "accountId": "acct_1"},
        ),
        (
            ["accounts", "reactivate", "acct_1", "--reason", "paid"],
            {"operation": "accounts.reactivate", "accountId": "acct_1", "reason": "paid"},
        ),
        (
            ["accounts", "flag", "acct_1", "--warning", "card testing"],
            {"operation": "accounts.flag", "accountId": "acct_1", "warning": "card testing"},
        ),
        (["accounts", "unflag", "acct_1"], {"operation": "accounts.unflag", "accountId": "acct_1"}),
        (
            [
                "accounts",
                "set",
                "acct_1",
                "--low-balance-threshold",
                "50",
                "--auto-reload",
                "on",
                "--auto-reload-threshold",
                "20",
                "--auto-reload-amount",
                "500.25",
                "--overdraft-limit",
                "0",
                "--plan",
                "pro",
            ],
            {
                "operation": "accounts.set",
                "accountId": "acct_1",
                "lowBalanceThreshold": 50,
                "autoReload": True,
                "autoReloadThreshold": 20,
                "autoReloadAmount": 500.25,
                "overdraftLimit": 0,
                "plan": "pro",
            },
        ),
        (
            ["accounts", "set", "acct_1", "--auto-reload", "OFF"],
            {"operation": "accounts.set", "accountId": "acct_1", "autoReload": False},
        ),
        (["keys", "create", "acct_1"], {"operation": "keys.create", "accountId": "acct_1"}),
        (["keys", "list", "acct_1"], {"operation": "keys.list", "accountId": "acct_1"}),
        (["keys", "rotate", "acct_1"], {"operation": "keys.rotate", "accountId": "acct_1"}),
        (
            ["keys", "revoke", "acct_1", "k_123"],
            {"operation": "keys.revoke", "accountId": "acct_1", "apiKeyId": "k_123"},
        ),
        (
            [
                "credits",
                "topup",
                "acct_1",
                "100",
                "--reference",
                "po_1",
                "--description",
                "March",
                "--idempotency-key",
                "t-1",
            ],
            {
                "operation": "credits.topup",
                "accountId": "acct_1",
                "amount": 100,
                "reference": "po_1",
                "description": "March",
                "idempotencyKey": "t-1",
            },
        ),
        (
            [
                "credits",
                "grant",
                "acct_1",
                "25.000001",
                "--priority",
                "10",
                "--expires-at",
                "2030-01-31",
                "--idempotency-key",
                "g-1",
            ],
            {
                "operation": "credits.grant",
                "accountId": "acct_1",
                "amount": 25.000001,
                "priority": 10,
                "expiresAt": "2030-01-31T00:00:00Z",
                "idempotencyKey": "g-1",
            },
        ),
        (
            [
                "credits",
                "adjust",
                "acct_1",
                "-7.5",
                "--reason",
                "double charge",
                "--idempotency-key",
                "a-1",
            ],
            {
                "operation": "credits.adjust",
                "accountId": "acct_1",
                "amount": -7.5,
                "reason": "double charge",
                "idempotencyKey": "a-1",
            },
        ),
        (
            ["credits", "refund", "acct_1", "txn_3_0123456789ab", "--idempotency-key", "r-1"],
            {
                "operation": "credits.refund",
                "accountId": "acct_1",
                "transactionId": "txn_3_0123456789ab",
                "idempotencyKey": "r-1",
            },
        ),
        (
            [
                "credits",
                "refund",
                "acct_1",
                "txn_3_0123456789ab",
                "--amount",
                "2",
                "--reason",
                "dropped call",
                "--idempotency-key",
                "r-2",
            ],
            {
                "operation": "credits.refund",
                "accountId": "acct_1",
                "transactionId": "txn_3_0123456789ab",
                "amount": 2,
                "reason": "dropped call",
                "idempotencyKey": "r-2",
            },
        ),
        (
            [
                "credits",
                "topup",
                "acct_1",
                "10000",
                "--reference",
                "po_9",
                "--priority",
                "0",
                "--expires-at",
                "2031-06-30T12:00:00+02:00",
                "--idempotency-key",
                "t-2",
            ],
            {
                "operation": "credits.topup",
                "accountId": "acct_1",
                "amount": 10000,
                "reference": "po_9",
                "priority": 0,
                "expiresAt": "2031-06-30T10:00:00Z",
                "idempotencyKey": "t-2",
            },
        ),
        (["lots", "list", "acct_1"], {"operation": "lots.list", "accountId": "acct_1"}),
        (["lots", "expire", "acct_1"], {"operation": "lots.expire", "accountId": "acct_1"}),
        (["ledger", "acct_1"], {"operation": "ledger.list", "accountId": "acct_1"}),
        (
            ["ledger", "acct_1", "--limit", "50"],
            {"operation": "ledger.list", "accountId": "acct_1", "limit": 50},
        ),
        (["reconcile", "acct_1"], {"operation": "reconcile", "accountId": "acct_1"}),
        (["reconcile", "--all"], {"operation": "reconcile", "all": True}),
        (["events", "replay"], {"operation": "events.replay"}),
        (["events", "replay", "--limit", "100"], {"operation": "events.replay", "limit": 100}),
    ],
)
def test_each_command_sends_its_operation(argv: list[str], expected: dict[str, Any]) -> None:
    assert request_of(*argv) == {**expected, "actor": ACTOR}


@pytest.mark.parametrize("command", ["grant", "topup"])
def test_a_lot_expires_in_is_a_time_from_now(command: str) -> None:
    before = datetime.now(UTC)
    sent = request_of("credits", command, "acct_1", "5", "--expires-in", "30d")
    expires = datetime.fromisoformat(sent["expiresAt"].replace("Z", "+00:00"))

    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    assert sent["expiresAt"].endswith("Z")


@pytest.mark.parametrize("command", ["topup", "grant", "adjust", "refund"])
def test_a_money_command_without_a_key_gets_one_and_prints_it(command: str) -> None:
    argv = {
        "topup": ["credits", "topup", "acct_1", "5"],
        "grant": ["credits", "grant", "acct_1", "5"],
        "adjust": ["credits", "adjust", "acct_1", "5", "--reason", "fix"],
        "refund": ["credits", "refund", "acct_1", "txn_1_0123456789ab"],
    }[command]
    admin = FakeAdmin()

    human_run = run(admin, "--local", *argv)
    json_run = run(admin, "--local", "--json", *argv)

    first, second = (request["idempotencyKey"] for request in admin.requests)
    assert first != second  # a new key per invocation: retry with the printed one
    assert first.startswith("adm-")
    assert f"--idempotency-key {first}" in human_run.err
    assert first not in human_run.out
    assert json_run.json()["idempotencyKey"] == second
    assert json_run.err == ""


def test_the_result_key_wins_over_the_generated_one_in_json() -> None:
    admin = FakeAdmin(response={**RESULT, "idempotencyKey": "from-function"})
    result = run(admin, "--local", "--json", "credits", "topup", "acct_1", "5")
    assert result.json()["idempotencyKey"] == "from-function"


def test_actor_defaults_to_the_targets_identity() -> None:
    admin = FakeAdmin()
    run(admin, "--local", "accounts", "show", "acct_1")
    assert admin.requests[0]["actor"] == "me@host"


# ---------------------------------------------------------------- targets
def test_targets_from_the_global_options(tmp_path: Path) -> None:
    admin = FakeAdmin()
    run(admin, "--local", "ledger", "a_1")
    run(admin, "--stack-file", str(tmp_path / "s.json"), "ledger", "a_1")
    run(admin, "--stack-name", "credits-prod", "--region", "eu-west-1", "ledger", "a_1")

    assert admin.targets == [
        Target(local=True),
        Target(local=True, stack_file=tmp_path / "s.json"),
        Target(local=False, stack_name="credits-prod", region="eu-west-1"),
    ]


def test_local_stack_file_is_read_for_the_lambda_endpoint(tmp_path: Path) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(
        json.dumps(
            {
                "lambdaEndpoint": "http://127.0.0.1:3999",
                "region": "us-east-1",
                "functions": ["AdminFunction", "DebitFunction"],
            }
        )
    )
    invoker = targets.connect(Target(local=True, stack_file=stack))
    assert isinstance(invoker, targets.LambdaInvoker)
    assert invoker.function_name == "AdminFunction"
    assert invoker.default_actor() == targets.local_actor()
    assert "@" in invoker.default_actor()

    stack.write_text(json.dumps({"lambdaEndpoint": "http://x", "functions": ["DebitFunction"]}))
    with pytest.raises(TargetError, match="no AdminFunction"):
        targets.connect(Target(local=True, stack_file=stack))
    stack.write_text(json.dumps({"apiUrl": "http://x"}))
    with pytest.raises(TargetError, match="no lambdaEndpoint"):
        targets.connect(Target(local=True, stack_file=stack))
    stack.write_text("{")
    with pytest.raises(TargetError, match="not JSON"):
        targets.connect(Target(local=True, stack_file=stack))


def test_a_missing_stack_file_is_an_error_saying_how_to_start_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    result = run(FakeAdmin(failure=None), "--stack-file", str(missing), "accounts", "list")
    assert result.code == 0  # the fake never reads it; the real connect does:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--json", "--stack-file", str(missing), "accounts", "list"], stdout=out, stderr=err
    )
    assert code == 1
    assert "make run" in err.getvalue()
    assert json.loads(out.getvalue())["error"]["code"] == "UNAVAILABLE"


class FakeLambda:
    def __init__(self, body: bytes, function_error: bool = False) -> None:
        self.body, self.function_error = body, function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.body)}
        if self.function_error:
            response["FunctionError"] = "Unhandled"
        return response


def test_the_lambda_invoker_keeps_amounts_exact_and_reports_function_errors() -> None:
    client = FakeLambda(b'{"amount": 0.1, "balanceAfter": 12345678.000001}')
    invoker = targets.LambdaInvoker(client, "Admin", lambda: "arn:aws:iam::1:user/ops")

    body = invoker.invoke({"operation": "accounts.list", "actor": "x"})

    assert body == {"amount": Decimal("0.1"), "balanceAfter": Decimal("12345678.000001")}
    assert json.loads(client.calls[0]["Payload"]) == {"operation": "accounts.list", "actor": "x"}
    assert client.calls[0]["FunctionName"] == "Admin"
    assert invoker.default_actor() == "arn:aws:iam::1:user/ops"
    with pytest.raises(InvokeFailed, match="boom"):
        targets.LambdaInvoker(FakeLambda(b'{"errorMessage": "boom"}', True), "A").invoke({})
    with pytest.raises(InvokeFailed, match="no JSON"):
        targets.LambdaInvoker(FakeLambda(b"<html>"), "A").invoke({})


def test_the_deployed_stack_output_names_the_function() -> None:
    class Session:
        def client(self, name: str) -> Any:
            assert name == "cloudformation"
            return self

        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            outputs = [{"OutputKey": "AdminFunctionName", "OutputValue": f"{StackName}-Admin"}]
            return {"Stacks": [{"Outputs": outputs}]}

    assert targets.stack_output(Session(), "prod", "AdminFunctionName") == "prod-Admin"
    with pytest.raises(TargetError, match="no output Missing"):
        targets.stack_output(Session(), "prod", "Missing")


# ---------------------------------------------------------------- output and exit codes
def test_json_mode_prints_exactly_one_object() -> None:
    result = run(FakeAdmin(), "--local", "--json", "credits", "topup", "a_1", "12.5")

    assert result.code == 0
    document = result.json()
    assert isinstance(document, dict)
    assert document["amount"] == 12.5
    assert document["balanceAfter"] == 112.5


def test_human_mode_prints_a_table_of_a_list() -> None:
    accounts = {
        "accounts": [
            {
                "accountId": "acct_1",
                "name": "Voxpria",
                "plan": "pro",
                "status": "active",
                "balance": Decimal("1000.5"),
                "available": Decimal("1000.5"),
            },
            {
                "accountId": "acct_22",
                "name": "Other",
                "plan": "free",
                "status": "suspended",
                "balance": Decimal(0),
                "available": Decimal(0),
            },
        ]
    }
    result = run(FakeAdmin(response=accounts), "--local", "accounts", "list")

    lines = result.out.splitlines()
    assert lines[0].split() == ["accountId", "name", "plan", "status", "balance", "available"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["acct_1", "Voxpria", "pro", "active", "1000.5", "1000.5"]
    assert lines[3].split() == ["acct_22", "Other", "free", "suspended", "0", "0"]


LISTED: list[dict[str, Any]] = [
    {
        "lotId": "lot_0a1h3xk2o0m5t2a9xc5e1f2",
        "status": "active",
        "remaining": Decimal("17.5"),
        "initialAmount": Decimal(20),
        "units": "credits",
        "priority": 90,
        "expiresAt": "2030-01-31T00:00:00Z",
        "grantedAt": "2025-03-01T12:00:00.123000Z",
        "reference": None,
        "source": "grant",
        "description": "Promo",
        "grantedBy": "txn_4_0123456789ab",
    },
    {
        "lotId": "lot_1szzzzzzzm5t2a9xc0000",
        "status": "active",
        "remaining": Decimal(105),
        "initialAmount": None,
        "units": "credits",
        "priority": 50,
        "expiresAt": None,
        "grantedAt": "2025-01-01T00:00:00Z",
        "reference": None,
        "source": "opening",
        "description": "",
        "grantedBy": None,
    },
    {
        "lotId": "overdraft",
        "status": "overdraft",
        "remaining": Decimal(-5),
        "initialAmount": None,
        "units": "credits",
        "priority": None,
        "expiresAt": None,
        "grantedAt": None,
        "reference": None,
        "source": None,
        "description": "",
        "grantedBy": None,
    },
]
LOTS = {
    "accountId": "acct_1",
    "balance": Decimal("117.5"),
    "available": Decimal("107.5"),
    "reserved": Decimal(10),
    "lots": LISTED,
}


def test_lots_list_shows_the_balance_then_a_table_of_the_lots_in_burn_order() -> None:
    result = run(FakeAdmin(response=LOTS), "--local", "lots", "list", "acct_1")

    assert result.code == 0, result.err
    summary, table = result.out.split("\n\n")
    assert summary.splitlines() == [
        "accountId  acct_1",
        "balance    117.5",
        "available  107.5",
        "reserved   10",
    ]
    lines = table.splitlines()
    assert lines[0] == "lots:"
    assert lines[1].split() == [
        "lotId",
        "status",
        "remaining",
        "initialAmount",
        "priority",
        "expiresAt",
        "grantedAt",
        "source",
        "reference",
    ]
    assert lines[3].split() == [
        "lot_0a1h3xk2o0m5t2a9xc5e1f2",
        "active",
        "17.5",
        "20",
        "90",
        "2030-01-31T00:00:00Z",
        "2025-03-01T12:00:00.123000Z",
        "grant",
        "-",
    ]
    assert [line.split()[0] for line in lines[3:]] == [lot["lotId"] for lot in LISTED]
    assert lines[5].split()[:3] == ["overdraft", "overdraft", "-5"]


def test_lots_list_in_json_is_the_response_exactly() -> None:
    result = run(FakeAdmin(response=LOTS), "--local", "--json", "lots", "list", "acct_1")

    assert json.loads(result.out, parse_float=Decimal) == LOTS


def test_lots_expire_shows_what_each_expired_lot_lost() -> None:
    expired = {
        "accountId": "acct_1",
        "balance": Decimal(100),
        "available": Decimal(90),
        "reserved": Decimal(10),
        "expiries": [
            {
                "lotId": "lot_0a1h3xk2o0m5t2a9xc5e1f2",
                "remaining": Decimal("17.5"),
                "expired": Decimal("17.5"),
                "transactionId": "txn_9_0123456789ab",
            },
            {
                "lotId": "lot_0a1h3xk2o0m5t2a9xc5e1f3",
                "remaining": Decimal(10),
                "expired": None,
                "transactionId": None,
            },
        ],
    }
    result = run(FakeAdmin(response=expired), "--local", "lots", "expire", "acct_1")

    lines = result.out.split("\n\n")[1].splitlines()
    assert lines[1].split() == ["lotId", "remaining", "expired", "transactionId"]
    assert lines[3].split() == ["lot_0a1h3xk2o0m5t2a9xc5e1f2", "17.5", "17.5", "txn_9_0123456789ab"]
    assert lines[4].split() == ["lot_0a1h3xk2o0m5t2a9xc5e1f3", "10", "-", "-"]


def test_human_mode_shows_an_object_as_names_and_values() -> None:
    account = {"account": {"accountId": "acct_1", "flagged": True, "statusReason": None}}
    result = run(FakeAdmin(response=account), "--local", "accounts", "show", "acct_1")

    assert result.out.splitlines() == [
        "accountId     acct_1",
        "flagged       yes",
        "statusReason  -",
    ]


def test_a_new_api_key_comes_with_a_warning_to_store_it() -> None:
    created = {"accountId": "acct_1", "apiKey": "secret-value", "apiKeyId": "k1", "plan": "free"}
    result = run(FakeAdmin(response=created), "--local", "accounts", "create", "--name", "X")

    assert "apiKey     secret-value" in result.out
    assert "shown only now" in result.err


def test_reconcile_output_has_its_summary_and_inconsistent_accounts() -> None:
    report = {
        "accounts": 2,
        "filled": 1,
        "inconsistent": [{"accountId": "acct_9", "balance": Decimal(5), "ledgerSum": 4}],
    }
    text = human(report)
    assert text.splitlines()[0].split() == ["accounts", "2"]
    assert "inconsistent:" in text
    assert "acct_9" in text


REPLAYED = {
    "received": 3,
    "republished": 1,
    "failed": 1,
    "unreplayable": 1,
    "remaining": 2,
    "note": "unreplayable messages are Lambda's on-failure records (...)",
}


def test_events_replay_shows_its_counts_and_the_note_on_stderr() -> None:
    result = run(FakeAdmin(response=dict(REPLAYED)), "--local", "events", "replay")

    assert result.code == 0
    assert result.out.splitlines() == [
        "received      3",
        "republished   1",
        "failed        1",
        "unreplayable  1",
        "remaining     2",
    ]
    assert "on-failure records" in result.err


def test_events_replay_in_json_is_the_one_object_with_its_note() -> None:
    result = run(FakeAdmin(response=dict(REPLAYED)), "--local", "--json", "events", "replay")

    assert result.code == 0
    assert result.json() == REPLAYED
    assert result.err == ""


def test_a_refusal_exits_1_with_the_message_on_stderr() -> None:
    refusal = {
        "error": {
            "code": "REFUND_NOT_ALLOWED",
            "message": "Refund exceeds what remains refundable",
            "details": {"transactionId": "txn_1_0123456789ab", "refundable": 3},
        }
    }
    admin = FakeAdmin(response=refusal)
    human_run = run(admin, "--local", "credits", "refund", "a_1", "txn_1_0123456789ab")
    json_run = run(
        admin,
        "--local",
        "--json",
        "credits",
        "refund",
        "a_1",
        "txn_1_0123456789ab",
        "--idempotency-key",
        "r",
    )

    assert human_run.code == json_run.code == 1
    assert human_run.out == ""
    assert "REFUND_NOT_ALLOWED: Refund exceeds what remains refundable" in human_run.err
    assert "refundable" in human_run.err
    assert json_run.json() == {
        "error": {
            **refusal["error"],
            "details": {"transactionId": "txn_1_0123456789ab", "refundable": 3},
        }
    }
    assert "REFUND_NOT_ALLOWED" in json_run.err


def test_a_validation_error_names_the_field() -> None:
    refusal = {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Invalid request: overdraftLimit",
            "details": {"fields": [{"field": "overdraftLimit", "message": "must be >= 0"}]},
        }
    }
    result = run(
        FakeAdmin(response=refusal), "--local", "accounts", "set", "a_1", "--overdraft-limit", "-1"
    )
    assert result.code == 1
    assert "overdraftLimit: must be >= 0" in result.err


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (InvokeFailed("AdminFunction failed: boom"), "FUNCTION_ERROR"),
        (TargetError("down"), "UNAVAILABLE"),
    ],
)
def test_failures_exit_1_and_keep_the_generated_key(failure: Exception, code: str) -> None:
    result = run(FakeAdmin(failure=failure), "--local", "--json", "credits", "topup", "a_1", "5")

    assert result.code == 1
    document = result.json()
    assert document["error"]["code"] == code
    assert document["idempotencyKey"].startswith("adm-")


def test_an_unexpected_response_is_an_error() -> None:
    result = run(FakeAdmin(response=["not", "an", "object"]), "--local", "accounts", "list")
    assert result.code == 1
    assert "unexpected response" in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["accounts", "list"], "choose a target"),
        (["--local", "--stack-name", "s", "accounts", "list"], "choose one target"),
        (["--local"], "required"),
        (["--local", "accounts"], "required"),
        (["--local", "accounts", "set", "a_1"], "at least one setting"),
        (["--local", "accounts", "set", "a_1", "--low-balance-treshold", "5"], "unrecognized"),
        (["--local", "accounts", "set", "a_1", "--low-bal", "5"], "unrecognized"),
        (["--local", "accounts", "set", "a_1", "--auto-reload", "maybe"], "use on or off"),
        (["--local", "accounts", "set", "a_1", "--plan", "gold"], "invalid choice"),
        (["--local", "accounts", "create"], "--name"),
        (["--local", "accounts", "suspend", "a_1"], "--reason"),
        (["--local", "credits", "topup", "a_1", "ten"], "not a number"),
        (["--local", "credits", "topup", "a_1", "NaN"], "not a finite number"),
        (["--local", "credits", "topup", "a_1", "1.0000001"], "at most 6 decimal places"),
        (["--local", "credits", "adjust", "a_1", "5"], "--reason"),
        (["--local", "credits", "grant", "a_1", "5", "--priority", "101"], "0..100"),
        (["--local", "credits", "grant", "a_1", "5", "--expires-in", "soon"], "not a duration"),
        (["--local", "credits", "grant", "a_1", "5", "--expires-in", "0d"], "positive"),
        (["--local", "credits", "grant", "a_1", "5", "--expires-at", "tomorrow"], "ISO 8601"),
        (["--local", "credits", "topup", "a_1", "5", "--priority", "-1"], "0..100"),
        (["--local", "credits", "topup", "a_1", "5", "--priority", "high"], "not an integer"),
        (["--local", "credits", "topup", "a_1", "5", "--expires-at", "soon"], "ISO 8601"),
        (
            [
                "--local",
                "credits",
                "topup",
                "a_1",
                "5",
                "--expires-at",
                "2030-01-01",
                "--expires-in",
                "3d",
            ],
            "not allowed with",
        ),
        (["--local", "lots"], "required"),
        (["--local", "lots", "list"], "ID"),
        (["--local", "lots", "list", "a_1", "--limit", "5"], "unrecognized arguments"),
        (["--local", "lots", "expire"], "ID"),
        (
            [
                "--local",
                "credits",
                "grant",
                "a_1",
                "5",
                "--expires-at",
                "2030-01-01",
                "--expires-in",
                "3d",
            ],
            "not allowed with",
        ),
        (["--local", "reconcile"], "required"),
        (["--local", "reconcile", "a_1", "--all"], "not allowed with"),
        (["--local", "ledger", "a_1", "--limit", "0"], "at least 1"),
        (["--local", "keys", "revoke", "a_1"], "KEY_ID"),
        (["accounts", "list", "--local"], "unrecognized arguments: --local"),  # globals first
        (["--local", "--json", "keys"], "required"),
        (["--local", "events"], "required"),
        (["--local", "events", "replay", "--limit", "0"], "at least 1"),
        (["--local", "events", "replay", "--limit", "ten"], "not an integer"),
        (["--local", "events", "replay", "acct_1"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin()
    code = cli.main(argv, connect_to=admin.connect)

    assert code == 2
    assert admin.requests == []
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "credits-admin" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2W", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert values.duration(text) == expected


def test_amounts_are_exact() -> None:
    assert values.amount("0.1") == Decimal("0.1")
    assert values.amount("-7.500000") == Decimal("-7.5")
    assert values.json_number(Decimal("100.000")) == 100
    assert isinstance(values.json_number(Decimal("100.000")), int)
    assert Decimal(str(values.json_number(Decimal("999999999.999999")))) == Decimal(
        "999999999.999999"
    )
    assert values.timestamp("2030-01-31T12:00:00+02:00") == datetime(2030, 1, 31, 10, tzinfo=UTC)


class _ClosedPipe(io.StringIO):
    """stdout whose reader went away (`credits-admin ... | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_stops_the_output_quietly() -> None:
    admin = FakeAdmin()
    err = io.StringIO()

    code = cli.main(
        ["--local", "accounts", "list"], connect_to=admin.connect, stdout=_ClosedPipe(), stderr=err
    )

    assert code == 0
    assert len(admin.requests) == 1  # the request was made; only its output went unread
    assert err.getvalue() == ""
