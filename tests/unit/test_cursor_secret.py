"""The cursor signing key is read at runtime from Secrets Manager (Powertools Parameters,
cached), never taken from an environment variable in AWS; `CURSOR_SIGNING_KEY` is the local
and test stand-in, used only when no secret is named (docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devtools import template
from serverless_credits import wiring
from serverless_credits.reads.cursor import CursorSigningKeyMissing
from serverless_credits.storage.store import CreditsStore

SECRET_VALUE = "a-secret-from-secrets-manager-0123456789"
SIGNED = {"account_id": "acct_1", "scope": "transactions", "position": "7"}


@pytest.fixture
def secret(moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A secret in moto's Secrets Manager, named by CURSOR_SIGNING_SECRET_ARN."""
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="cursor-key", SecretString=SECRET_VALUE)["ARN"]
    monkeypatch.setenv("CURSOR_SIGNING_SECRET_ARN", arn)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    wiring.reset()
    yield client, arn
    wiring.reset()


def test_the_key_is_the_secret_not_the_local_variable(secret: Any) -> None:
    """With a secret named, CURSOR_SIGNING_KEY (set for every test) is ignored."""
    assert wiring.cursor_signer().key == SECRET_VALUE.encode()


def test_the_secret_is_read_once_and_cached(secret: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page of cursors must not cost a Secrets Manager call each: the value is cached
    (SECRET_CACHE_SECONDS, default 300 s); a rotated key is picked up after that."""
    client, arn = secret
    first = wiring.cursor_signer().sign(**SIGNED)
    client.put_secret_value(SecretId=arn, SecretString="a-rotated-key-0123456789abcdef")
    assert wiring.cursor_signer().sign(**SIGNED) == first  # still the cached key

    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")
    wiring.reset()
    assert wiring.cursor_signer().key == b"a-rotated-key-0123456789abcdef"


def test_a_short_secret_fails_closed(secret: Any) -> None:
    client, arn = secret
    client.put_secret_value(SecretId=arn, SecretString="short")
    wiring.reset()
    with pytest.raises(CursorSigningKeyMissing, match="cursor signing secret"):
        wiring.cursor_signer()


def test_without_a_secret_the_local_key_is_used(moto_store: CreditsStore) -> None:
    """Tests and the local stack: no secret named, CURSOR_SIGNING_KEY (tests/conftest.py)."""
    assert wiring.cursor_signer().key == b"test-signing-key-0123456789"


def test_the_template_passes_the_secret_by_name_and_grants_only_it() -> None:
    """No function environment resolves a secret into a variable; each function naming the
    cursor secret may read that secret, and only that one."""
    for name, spec in template.functions().items():
        for variable, value in spec.environment.items():
            assert "{{resolve:" not in value, f"{name}.{variable}"
    readers = []
    for name in template.functions():
        properties = template.resource(name)["Properties"]
        statements = [
            s for p in properties.get("Policies", []) if "Statement" in p for s in p["Statement"]
        ]
        grants = [s for s in statements if "secretsmanager" in str(s["Action"])]
        variables = properties.get("Environment", {}).get("Variables", {})
        if "CURSOR_SIGNING_SECRET_ARN" in variables:
            readers.append(name)
            assert variables["CURSOR_SIGNING_SECRET_ARN"] == {"Ref": "CursorSigningSecret"}
            assert variables.get("CURSOR_SIGNING_KEY", "") == ""
            assert grants == [
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": {"Ref": "CursorSigningSecret"},
                }
            ], name
        else:
            assert not grants, name
    assert sorted(readers) == ["BalanceFunction", "TransactionsFunction"]
