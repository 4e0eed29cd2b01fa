"""The single-table key layout. Each role has its own partition key, so a change writes
exactly one item on the account's partition (see docs/design-notes.md)."""

from __future__ import annotations

from datetime import date

ACCOUNT_PREFIX = "ACCOUNT#"
ACCOUNT_SK = "ACCOUNT"
IDEMPOTENCY_SK = "IDEMPOTENCY"
APIKEY_SK = "APIKEY"
REFUNDS_SK = "REFUNDS"
PRICES_PK = "PRICES"
PRICES_CURRENT_SK = "CURRENT"
DAY_PREFIX = "DAY#"
ENTRY_PREFIX = "SEQ#"  # ledger entries: SEQ#<12-digit sequence>, in sequence order
LEDGER_HEAD_SK = "HEAD"  # how far the materializer has written an account's ledger
SEQUENCE_DIGITS = 12


def account_pk(account_id: str) -> str:
    return f"{ACCOUNT_PREFIX}{account_id}"


def account_id_of(pk: str) -> str | None:
    return pk[len(ACCOUNT_PREFIX) :] if pk.startswith(ACCOUNT_PREFIX) else None


def ledger_pk(account_id: str) -> str:
    return f"LEDGER#{account_id}"


def entry_sk(sequence: int) -> str:
    return f"{ENTRY_PREFIX}{sequence:0{SEQUENCE_DIGITS}d}"


def sequence_of_sk(sort_key: str) -> int:
    return int(sort_key[len(ENTRY_PREFIX) :])


def idempotency_pk(account_id: str, idempotency_key: str) -> str:
    return f"IDEMPOTENCY#{account_id}#{idempotency_key}"


def usage_pk(account_id: str) -> str:
    return f"USAGE#{account_id}"


def usage_sk(day: date) -> str:
    return f"{DAY_PREFIX}{day.isoformat()}"


def apikey_pk(api_key_id: str) -> str:
    return f"APIKEY#{api_key_id}"


def account_keys_pk(account_id: str) -> str:
    """An account's API keys (sk: the key id). Not under ACCOUNT#: the stream's filter
    sends those items to the materializer."""
    return f"KEYS#{account_id}"


def refunds_pk(account_id: str, transaction_id: str) -> str:
    return f"REFUNDS#{account_id}#{transaction_id}"


def holds_pk(account_id: str) -> str:
    """An account's HOLD items (sk: the hold id), written from the stream: descriptions
    and closed holds. The account item's `holds` map is what decides."""
    return f"HOLDS#{account_id}"


def lots_pk(account_id: str) -> str:
    """An account's LOT items (sk: the lot id), written from the stream when a lot is
    opened: what the lot was granted as. The account item's `lots` map holds what is left."""
    return f"LOTS#{account_id}"


# The sparse index of what may need expiring (`ExpiryIndex` in template.yaml, and
# `storage.expiry_index`).
EXPIRY_INDEX = "ExpiryIndex"
