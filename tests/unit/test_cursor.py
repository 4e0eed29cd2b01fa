"""Signed pagination cursors."""

from __future__ import annotations

import base64
import json

import pytest

from serverless_credits.config import Settings
from serverless_credits.reads.cursor import CursorSigner, CursorSigningKeyMissing, InvalidCursor

POSITION = "42"  # the ledger sequence a page ended at
SIGNER = CursorSigner(b"k" * 32)


def test_round_trip() -> None:
    token = SIGNER.sign(account_id="acct_a", scope="type=&from=&to=", position=POSITION)
    assert SIGNER.verify(token, account_id="acct_a", scope="type=&from=&to=") == POSITION
    assert "acct_a" not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(
    ("account_id", "scope", "signer"),
    [
        ("acct_b", "s", SIGNER),  # another account
        ("acct_a", "t", SIGNER),  # another query
        ("acct_a", "s", CursorSigner(b"x" * 32)),  # another key (rotation invalidates)
    ],
)
def test_a_cursor_is_bound_to_account_scope_and_key(
    account_id: str, scope: str, signer: CursorSigner
) -> None:
    token = SIGNER.sign(account_id="acct_a", scope="s", position=POSITION)
    with pytest.raises(InvalidCursor):
        signer.verify(token, account_id=account_id, scope=scope)


def forge(payload: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    genuine = SIGNER.sign(account_id="a", scope="s", position=POSITION)
    return f"{body}.{genuine.split('.')[1]}"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "a.b.c",
        "!!!.???",
        "e30.AAAA",
        "x" * 600,
        forge({"v": 1, "p": "999999"}),
        forge([1, 2]),
    ],
)
def test_malformed_or_forged_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        SIGNER.verify(token, account_id="a", scope="s")
    assert refused.value.details == {"field": "cursor"}


def test_a_signed_payload_must_still_be_a_position() -> None:
    for payload in (
        {"v": 2, "p": POSITION},
        {"v": 1, "p": "LEDGER#other"},
        {"v": 1},
        ["x"],
        {"v": 1, "p": 42},  # a sequence, but not as the signer writes it
        {"v": 1, "p": "0"},  # sequences start at 1
        {"v": 1, "p": "042"},
        {"v": 1, "p": "1" * 13},  # beyond the 12-digit sort key
        {"v": 1, "p": "2025-02-01T09:00:00.000001Z"},  # a time position (the old cursor)
    ):
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        token = (
            f"{body}.{base64.urlsafe_b64encode(SIGNER._mac('a', 's', body)).rstrip(b'=').decode()}"
        )
        with pytest.raises(InvalidCursor):
            SIGNER.verify(token, account_id="a", scope="s")


@pytest.mark.parametrize("key", [None, "", "short"])
def test_a_missing_or_weak_key_fails_closed(key: str | None) -> None:
    settings = Settings.model_validate({"TABLE_NAME": "credits", "CURSOR_SIGNING_KEY": key})
    with pytest.raises(CursorSigningKeyMissing, match="CURSOR_SIGNING_KEY"):
        CursorSigner.from_settings(settings)


def test_the_key_never_shows() -> None:
    signer = CursorSigner.from_settings(
        Settings.model_validate(
            {"TABLE_NAME": "credits", "CURSOR_SIGNING_KEY": "super-secret-signing-key"}
        )
    )
    assert "super-secret" not in repr(signer)
    assert "super-secret" not in str(signer)
