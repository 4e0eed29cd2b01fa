"""The single-table key layout. Each role has its own partition key, so a debit writes
exactly one item on the balance's partition (see DESIGN-NOTES.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

ACCOUNT_SK = "ACCOUNT"
IDEMPOTENCY_SK = "IDEMPOTENCY"
APIKEY_SK = "APIKEY"
REFUNDS_SK = "REFUNDS"
PRICES_PK = "PRICES"
PRICES_CURRENT_SK = "CURRENT"
DAY_PREFIX = "DAY#"
TRANSACTION_PREFIX = "txn_"
_TRANSACTION_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"  # after TRANSACTION_PREFIX in a transaction id


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def ledger_pk(account_id: str) -> str:
    return f"LEDGER#{account_id}"


def idempotency_pk(account_id: str, idempotency_key: str) -> str:
    return f"IDEMPOTENCY#{account_id}#{idempotency_key}"


def usage_pk(account_id: str) -> str:
    return f"USAGE#{account_id}"


def usage_sk(day: date) -> str:
    return f"{DAY_PREFIX}{day.isoformat()}"


def apikey_pk(api_key_id: str) -> str:
    return f"APIKEY#{api_key_id}"


def refunds_pk(account_id: str, transaction_id: str) -> str:
    return f"REFUNDS#{account_id}#{transaction_id}"


def ledger_sk(created_at: datetime) -> str:
    """Ledger sort key: a UTC timestamp with microseconds, strictly increasing per account."""
    return created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def transaction_id(created_at: datetime) -> str:
    """A time-sortable transaction id that maps back to the entry's sort key."""
    return TRANSACTION_PREFIX + created_at.strftime(_TRANSACTION_TIME_FORMAT)


def ledger_sk_from_transaction_id(value: str) -> str | None:
    """The sort key of `value`'s ledger entry, or None when `value` is not a transaction id."""

    if not value.startswith(TRANSACTION_PREFIX):
        return None
    try:
        moment = datetime.strptime(
            value[len(TRANSACTION_PREFIX) :], _TRANSACTION_TIME_FORMAT
        ).replace(tzinfo=UTC)
    except ValueError:
        return None
    return ledger_sk(moment)
