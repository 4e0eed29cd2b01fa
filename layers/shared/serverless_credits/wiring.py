"""Process-wide wiring: the one place that builds storage and use cases, once per Lambda
execution environment, on first use (nothing happens at import time).

Each function uses one or two of the builders below; the use cases only some functions
need (materializer, reconciler, provisioner) are imported by their builders, so that a
function's cold start does not import the others' code.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from serverless_credits.config import Settings, get_settings
from serverless_credits.domain.models import utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.reads.cursor import CursorSigner, CursorSigningKeyMissing
from serverless_credits.storage.store import CreditsStore

if TYPE_CHECKING:
    from serverless_credits.ledger.admin import Administration
    from serverless_credits.ledger.event_replay import EventReplayer
    from serverless_credits.ledger.events import EventPublisher
    from serverless_credits.ledger.materializer import Materializer
    from serverless_credits.ledger.provisioning import Provisioner
    from serverless_credits.ledger.reconciler import Reconciler


@functools.cache
def store() -> CreditsStore:
    return CreditsStore.connect(get_settings().table_name)


@functools.cache
def prices() -> PriceCatalog:
    return PriceCatalog(store().catalog, get_settings().cache_seconds)


def build_ledger(
    credits: CreditsStore,
    catalog: PriceCatalog | None = None,
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> Ledger:
    """A ledger over `credits` (tests and benchmarks pass their own clock or settings)."""
    return Ledger(
        accounts=credits.accounts,
        records=credits.idempotency,
        entries=credits.entries,
        usage=credits.usage,
        refunds=credits.refunds,
        holds=credits.holds,
        lots=credits.lots,
        prices=catalog or PriceCatalog(credits.catalog, (settings or get_settings()).cache_seconds),
        settings=settings or get_settings(),
        clock=clock,
        sleep=sleep,
    )


@functools.cache
def ledger() -> Ledger:
    return build_ledger(store(), prices())


def cursor_signer() -> CursorSigner:
    """The pagination cursors' signer. In AWS the key is the `CURSOR_SIGNING_SECRET_ARN`
    secret, read through Powertools Parameters on first use and cached `SECRET_CACHE_SECONDS`
    (a rotated key is picked up within that); without a secret named (local development,
    tests) the `CURSOR_SIGNING_KEY` setting. Raises `CursorSigningKeyMissing` without a key."""
    settings = get_settings()
    if not settings.cursor_signing_secret_arn:
        return CursorSigner.from_settings(settings)
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - paged routes only

    value = parameters.get_secret(
        settings.cursor_signing_secret_arn, max_age=settings.secret_cache_seconds
    )
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise CursorSigningKeyMissing("the cursor signing secret is not a string")
    return CursorSigner.from_key(value, source="the cursor signing secret")


@functools.cache
def provisioner() -> Provisioner:
    from serverless_credits.ledger.provisioning import Provisioner  # noqa: PLC0415 - see above

    return Provisioner(ledger(), store().catalog)


@functools.cache
def materializer() -> Materializer:
    from serverless_credits.ledger.materializer import Materializer  # noqa: PLC0415 - see above

    credits = store()
    return Materializer(
        credits.idempotency,
        credits.entries,
        credits.usage,
        get_settings(),
        holds=credits.holds,
        lots=credits.lots,
    )


@functools.cache
def reconciler() -> Reconciler:
    from serverless_credits.ledger.reconciler import Reconciler  # noqa: PLC0415 - see above

    credits = store()
    return Reconciler(
        accounts=credits.accounts,
        records=credits.idempotency,
        entries=credits.entries,
        usage=credits.usage,
        holds=credits.holds,
        lots=credits.lots,
        expire_hold=ledger().holds.expire,
        expire_lot=ledger().lots.expire,
        settings=get_settings(),
    )


@functools.cache
def event_publisher() -> EventPublisher:
    """Balance events from the stream to the EventBridge bus (EventPublisherFunction)."""
    from datetime import timedelta  # noqa: PLC0415 - see above

    from serverless_credits.integrations.eventbridge import (  # noqa: PLC0415
        EventBridgeBus,
        SqsReplayQueue,
    )
    from serverless_credits.ledger.events import EventPublisher  # noqa: PLC0415

    settings = get_settings()
    if not settings.event_bus_name:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    credits = store()
    queue = settings.event_replay_queue_url
    return EventPublisher(
        EventBridgeBus.connect(settings.event_bus_name),
        credits.accounts,
        credits.idempotency,
        SqsReplayQueue.connect(queue) if queue else None,
        auto_reload_timeout=timedelta(seconds=settings.auto_reload_timeout_seconds),
    )


@functools.cache
def event_replayer() -> EventReplayer:
    """The replay queue's events back to the bus (AdminFunction's `events.replay`)."""
    from serverless_credits.integrations.eventbridge import (  # noqa: PLC0415 - see above
        EventBridgeBus,
        SqsReplayQueue,
    )
    from serverless_credits.ledger.event_replay import EventReplayer  # noqa: PLC0415

    settings = get_settings()
    if not settings.event_bus_name or not settings.event_replay_queue_url:
        raise RuntimeError("EVENT_BUS_NAME and EVENT_REPLAY_QUEUE_URL must be set")
    return EventReplayer(
        EventBridgeBus.connect(settings.event_bus_name),
        SqsReplayQueue.connect(settings.event_replay_queue_url),
    )


@functools.cache
def admin() -> Administration:
    """The operators' use cases (AdminFunction); API Gateway's client is built on first use."""
    from serverless_credits.integrations.apigateway_keys import (  # noqa: PLC0415 - see above
        ApiGatewayKeyIssuer,
    )
    from serverless_credits.ledger.admin import Administration  # noqa: PLC0415
    from serverless_credits.storage.api_keys import ApiKeyStore  # noqa: PLC0415
    from serverless_credits.storage.directory import AccountDirectory  # noqa: PLC0415
    from serverless_credits.storage.items import Table  # noqa: PLC0415

    credits = store()
    table = Table(credits.client, credits.table_name)
    return Administration(
        ledger=ledger(),
        accounts=credits.accounts,
        directory=AccountDirectory(table),
        keys=ApiKeyStore(table),
        issuer=functools.cache(ApiGatewayKeyIssuer.from_settings),
        entries=credits.entries,
        reconciler=reconciler,
        replayer=event_replayer,
    )


def reset() -> None:
    """Forget settings, clients and caches (tests change the environment between cases)."""
    for cached in (
        get_settings,
        store,
        prices,
        ledger,
        provisioner,
        materializer,
        reconciler,
        event_publisher,
        event_replayer,
        admin,
    ):
        cached.cache_clear()
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

        # Forgets the providers: the cached secret and the Secrets Manager client.
        parameters.clear_caches()  # type: ignore[no-untyped-call]
