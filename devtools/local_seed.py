"""Accounts, API keys and demo history for the local stack, through the library.

Everything goes through `serverless_credits` (provisioning, the ledger's commands), as an
operator's tool would: no item is written by hand. The history's ledger entries come from
the table's stream, as every entry does: `provision` waits for the materializer (the local
stack's stream consumer, or a poller of its own) where the history needs an entry to exist
(a refund names its debit) and once at the end, so the seeded account is complete when it
returns. Keys come from
`devtools.memory_api_keys.InMemoryKeyIssuer`, which the local gateway reads as its key
store. The shared layer's directory is mounted first, so `python -m devtools.local_stack`
needs no PYTHONPATH.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from devtools import template
from devtools.local_lambda import mount_layers

mount_layers()

from devtools.memory_api_keys import InMemoryKeyIssuer  # noqa: E402
from devtools.streams import materializer_poller  # noqa: E402
from serverless_credits import wiring  # noqa: E402 - after the layer is mounted
from serverless_credits.config import get_settings  # noqa: E402
from serverless_credits.domain.commands import (  # noqa: E402
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import AccountAlreadyExists  # noqa: E402
from serverless_credits.domain.models import ApiKeyMapping  # noqa: E402
from serverless_credits.ledger.operations import Ledger  # noqa: E402
from serverless_credits.ledger.provisioning import (  # noqa: E402
    ApiKeyIssuer,
    Provisioner,
    Tier,
)

HISTORY_DAYS = 6
EVENTS_DIR = template.PROJECT_ROOT / "events"

Materialize = Callable[[], object]


class _Clock:
    """A clock the seeding moves forward by hand, so the history spans several days."""

    def __init__(self, start: datetime | None) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)

    def advance(self, **delta: float) -> None:
        if self.now is not None:
            self.now = min(self.now + timedelta(**delta), datetime.now(UTC))


def reset_service() -> None:
    """Forget the library's process-wide settings and clients (the environment changed)."""
    wiring.reset()


def event_api_key_ids(events_dir: Path = EVENTS_DIR) -> list[str]:
    """The `requestContext.identity.apiKeyId` values of the sample API events."""
    found = set()
    for path in sorted(events_dir.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        context = event.get("requestContext") if isinstance(event, dict) else None
        identity = (context or {}).get("identity") or {}
        if identity.get("apiKeyId"):
            found.add(str(identity["apiKeyId"]))
    return sorted(found)


def map_api_key(api_key_id: str, account_id: str, plan: str) -> None:
    """Map a key id to an account without issuing a key (for the sample events' ids)."""
    wiring.store().catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id=api_key_id, account_id=account_id, plan=plan, created_at=datetime.now(UTC)
        )
    )


def key_issuer() -> InMemoryKeyIssuer:
    """The local stack's API Gateway key store, also the provisioning's `ApiKeyIssuer`."""
    return InMemoryKeyIssuer(prefix="")


@dataclass(frozen=True)
class LocalAccount:
    account_id: str
    plan: str
    api_key_id: str
    api_key: str  # the key's value: local and random, printed for curl


def provision(
    account_id: str,
    *,
    plan: str,
    issuer: ApiKeyIssuer,
    opening_balance: Decimal = Decimal(0),
    history: bool = False,
    materialize: Materialize | None = None,
) -> LocalAccount:
    """Create the account and its key through `provisioning` (with a few days of history if
    asked). An account that exists already (a reused table) keeps its data and gets a new key.

    `materialize` brings the ledger up to date with the stream (the local stack passes its
    stream consumer's); without one, a poller of the process's table does it.
    """
    tier = Tier(plan)
    clock = _Clock(datetime.now(UTC) - timedelta(days=HISTORY_DAYS) if history else None)
    ledger = wiring.build_ledger(wiring.store(), wiring.prices(), get_settings(), clock=clock)
    command = CreateAccountCommand(
        account_id=account_id,
        currency="USD",
        credit_price=Decimal("0.01"),
        low_balance_threshold=Decimal(100),
        email=f"{account_id}@example.com",
        opening_balance=opening_balance,
    )
    try:
        provisioned = Provisioner(ledger, wiring.store().catalog).provision_account(
            command, tier, issuer=issuer
        )
    except AccountAlreadyExists:
        key = wiring.provisioner().issue_api_key(account_id, tier, issuer=issuer)
        return LocalAccount(account_id, plan, key.api_key_id, key.value.get_secret_value())
    if history:
        seed_history(ledger, clock, account_id, materialize or _poller_of_the_table())
    return LocalAccount(
        account_id, plan, provisioned.api_key_id, provisioned.api_key.get_secret_value()
    )


# (days after the start, action, quantity, endpoint)
DEMO_CALLS: tuple[tuple[float, str, int, str], ...] = (
    (1.0, "sms", 1, "/v1/sms/send"),
    (1.1, "voice_call_minute", 4, "/v1/calls"),
    (2.0, "transcription_minute", 12, "/v1/transcriptions"),
    (2.3, "sms", 1, "/v1/sms/send"),
    (3.0, "api_call", 1, "/v1/lookup"),
    (3.2, "voice_call_minute", 2, "/v1/calls"),
    (4.0, "sms", 1, "/v1/sms/send"),
    (5.0, "transcription_minute", 3, "/v1/transcriptions"),
    (5.5, "api_call", 1, "/v1/lookup"),
)


def _poller_of_the_table() -> Materialize:
    credits = wiring.store()
    return materializer_poller(credits.client, credits.table_name).drain


def seed_history(ledger: Ledger, clock: _Clock, account_id: str, materialize: Materialize) -> None:
    """A purchase, a grant, billable calls over several days, a refund and a correction,
    each at its time in the past (the clock); the ledger is materialized when it returns."""
    ledger.top_up(
        CreditCommand(
            account_id=account_id,
            idempotency_key="seed-topup-1",
            amount=Decimal(500),
            description="Starter pack",
            reference="po_demo_0001",
        )
    )
    clock.advance(hours=1)
    ledger.grant(
        CreditCommand(
            account_id=account_id,
            idempotency_key="seed-grant-1",
            amount=Decimal(50),
            description="Welcome bonus",
        )
    )
    elapsed = 0.0
    first_call = ""
    for number, (day, action, quantity, endpoint) in enumerate(DEMO_CALLS, start=1):
        clock.advance(days=day - elapsed)
        elapsed = day
        result = ledger.debit(
            DebitCommand(
                account_id=account_id,
                idempotency_key=f"seed-debit-{number}",
                action=action,
                quantity=Decimal(quantity),
                endpoint=endpoint,
                description=f"{action.replace('_', ' ')} x {quantity}",
            )
        )
        first_call = first_call or result.transaction_id
    clock.advance(hours=1)
    materialize()  # the refund reads its debit's ledger entry
    ledger.refund(
        RefundCommand(
            account_id=account_id,
            idempotency_key="seed-refund-1",
            transaction_id=first_call,
            reason="Message was not delivered",
            failed_call=True,
        )
    )
    ledger.top_up(
        CreditCommand(
            account_id=account_id,
            idempotency_key="seed-topup-2",
            amount=Decimal(250),
            description="Top-up",
            reference="po_demo_0002",
        )
    )
    ledger.adjust(
        AdjustmentCommand(
            account_id=account_id,
            idempotency_key="seed-adjustment-1",
            amount=Decimal(-5),
            reason="Goodwill credit reversed",
        )
    )
    materialize()
