"""`make run` itself: `python -m devtools.local_stack` as a developer starts it, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from devtools import dynamodb_local, local_demo, local_stack, template
from devtools.local_stack import LocalStack

pytestmark = pytest.mark.e2e

STATE_KEYS = {
    "apiUrl",
    "lambdaEndpoint",
    "apiKey",
    "accountId",
    "dynamodbEndpoint",
    "tableName",
}


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the stack exited early with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail("the stack did not become ready")
        time.sleep(0.2)


def test_the_command_starts_everything_describes_it_and_stops_cleanly(tmp_path: Path) -> None:
    state_file = tmp_path / "stack.json"
    log = (tmp_path / "stack.log").open("wb")
    environment = {
        **os.environ,
        # Ports by environment variable; 0 takes free ones. DynamoDB Local is its own.
        "CREDITS_API_PORT": "0",
        "CREDITS_LAMBDA_PORT": "0",
        "CREDITS_DYNAMODB_PORT": "0",
        "CREDITS_STACK_FILE": str(state_file),
    }
    environment.pop("CREDITS_DYNAMODB_ENDPOINT", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.local_stack"],
        cwd=template.PROJECT_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(state_file, process, timeout=90)
        described = json.loads(state_file.read_text())
        assert described.keys() >= STATE_KEYS
        assert state_file.stat().st_mode & 0o077 == 0  # it holds an API key

        balance = requests.get(
            f"{described['apiUrl']}/v1/credits/balance",
            headers={"X-API-Key": described["apiKey"]},
            timeout=10,
        )
        assert balance.status_code == 200, balance.text
        output = (tmp_path / "stack.log").read_text()
        assert described["apiKey"] in output
        assert f"curl -s -H 'x-api-key: {described['apiKey']}' {described['apiUrl']}" in output

        # The demo script drives the running stack from its description alone.
        lines = local_demo.run(described)
        assert lines[0].startswith(f"Balance of {described['accountId']}")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()

    assert returncode == 0
    assert not state_file.exists()
    assert "Stopped." in (tmp_path / "stack.log").read_text()
    dynamodb = dynamodb_local.client_for(described["dynamodbEndpoint"])
    with pytest.raises(Exception, match="Could not connect"):
        dynamodb.list_tables()


def test_the_demo_script_shows_the_balance_going_down(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.settings.state_file is not None
    before = json.loads(stack.settings.state_file.read_text())

    assert local_demo.main(["--state-file", str(stack.settings.state_file)]) == 0

    shown = capsys.readouterr().out
    assert "charged sms x 1: -1" in shown
    assert "Latest ledger entries (from the stream, " in shown
    assert "local demo: api_call" in shown  # the last charge's entry is listed
    lambda_client = boto3.client(
        "lambda",
        endpoint_url=before["lambdaEndpoint"],
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    assert (
        lambda_client.invoke(FunctionName="DebitFunction", InvocationType="DryRun")["StatusCode"]
        == 204
    )


def test_main_in_process_until_ctrl_c(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`main()` on the session's DynamoDB Local (a table of its own), stopped by SIGINT."""
    state_file = tmp_path / "main.json"

    def interrupt_when_ready() -> None:
        deadline = time.monotonic() + 60
        while not state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupter = threading.Thread(target=interrupt_when_ready, daemon=True)
    interrupter.start()
    try:
        code = local_stack.main(
            [
                "--api-port=0",
                "--lambda-port=0",
                f"--dynamodb-endpoint={stack.dynamodb_endpoint}",
                "--table-name=credits-e2e-main",
                f"--state-file={state_file}",
                "--plan=free",
                "--parameter-overrides",
                "FreePlanQuotaPerDay=5",
            ]
        )
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
        interrupter.join(timeout=5)

    assert code == 0
    assert not state_file.exists()
    shown = capsys.readouterr().out
    assert "Demo account:          acct_demo  (plan free)" in shown
    assert "table credits-e2e-main" in shown
    assert "Stopped." in shown
    # The package's stack got its environment back and still serves.
    assert requests.get(f"{stack.api_url}/v1/credits/balance", timeout=10).status_code == 403
