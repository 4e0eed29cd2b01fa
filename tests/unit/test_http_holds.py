"""GET /v1/credits/holds: the account's open holds, newest first, paged by signed cursor; and
what open holds do to GET /v1/credits/balance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import ApiAccount, ApiResponse, api_event, invoke, open_account
from functions.balance.app import lambda_handler
from functions.transactions.app import lambda_handler as transactions_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CaptureCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.models import ApiKeyMapping, utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.reads import holds as reads
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, assert_invalid

PATH = "/v1/credits/holds"
HOLD_FIELDS = {
    "holdId",
    "amount",
    "createdAt",
    "expiresAt",
    "expired",
    "description",
    "action",
    "endpoint",
    "metadata",
}


def get(account: ApiAccount, **query: str) -> ApiResponse:
    return invoke(lambda_handler, api_event(PATH, query, api_key_id=account.api_key_id))


def balance_of(account: ApiAccount) -> dict[str, Any]:
    response = invoke(
        lambda_handler, api_event("/v1/credits/balance", api_key_id=account.api_key_id)
    )
    assert response.status == 200, response.body
    body: dict[str, Any] = response.body
    return body


def whole_seconds(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@pytest.fixture
def clock() -> Clock:
    """The ledger's clock: now (so holds made on it are not expired), to the second."""
    return Clock(utc_now().replace(microsecond=0))


@pytest.fixture
def ledger(moto_store: CreditsStore, clock: Clock) -> Ledger:
    return wiring.build_ledger(moto_store, wiring.prices(), get_settings(), clock=clock)


@pytest.fixture
def account(moto_store: CreditsStore) -> ApiAccount:
    return open_account("acct_holds", opening_balance=1000)


def reserve(ledger: Ledger, key: str, amount: str = "10", **fields: Any) -> str:
    result = ledger.holds.reserve(
        ReserveCommand(
            account_id="acct_holds", idempotency_key=key, amount=Decimal(amount), **fields
        )
    )
    assert result.hold_id is not None
    return result.hold_id


# ---------------------------------------------------------------- listing
def test_open_holds_are_listed_newest_first_with_every_field(
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    ledger: Ledger,
    clock: Clock,
    account: ApiAccount,
) -> None:
    made = clock.now
    first = reserve(ledger, "r1", "12.5", description="call to +1", expires_in=600)
    clock.now += timedelta(seconds=3)
    second = ledger.holds.reserve(
        ReserveCommand(
            account_id="acct_holds",
            idempotency_key="r2",
            action="voice_call_minute",
            quantity=Decimal(4),
            endpoint="/v1/calls",
            description="4 minutes",
            metadata={"callId": "c-7", "attempt": 2, "retry": False},
        )
    ).hold_id
    materialize()  # the HOLD items (descriptions) come from the stream

    response = get(account)

    assert response.status == 200, response.body
    body = response.body
    assert set(body) == {"data", "hasMore", "nextCursor", "limit"}
    assert (body["hasMore"], body["nextCursor"], body["limit"]) == (False, None, 50)
    assert [hold["holdId"] for hold in body["data"]] == [second, first]
    newest, oldest = body["data"]
    assert set(newest) == set(oldest) == HOLD_FIELDS
    assert newest == {
        "holdId": second,
        "amount": 12,  # voice_call_minute = 3 credits x 4
        "createdAt": whole_seconds(made + timedelta(seconds=3)),
        "expiresAt": whole_seconds(made + timedelta(seconds=3 + 300)),  # the default expiry
        "expired": False,
        "description": "4 minutes",
        "action": "voice_call_minute",
        "endpoint": "/v1/calls",
        "metadata": {"callId": "c-7", "attempt": 2, "retry": False},
    }
    assert oldest == {
        "holdId": first,
        "amount": 12.5,
        "createdAt": whole_seconds(made),
        "expiresAt": whole_seconds(made + timedelta(seconds=600)),
        "expired": False,
        "description": "call to +1",
        "action": None,
        "endpoint": None,
        "metadata": {},
    }
    assert response.headers["X-Request-Id"]


def test_a_hold_is_listed_at_once_and_described_once_its_entry_is_written(
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    ledger: Ledger,
    account: ApiAccount,
) -> None:
    """The account item is the source of truth: stream lag only delays the description."""
    hold_id = reserve(ledger, "r1", description="transcription")

    (listed,) = get(account).body["data"]
    assert (listed["holdId"], listed["amount"]) == (hold_id, 10)
    assert (listed["description"], listed["metadata"], listed["action"]) == ("", {}, None)

    materialize()
    (described,) = get(account).body["data"]
    assert described["description"] == "transcription"
    assert {k: v for k, v in described.items() if k != "description"} == {
        k: v for k, v in listed.items() if k != "description"
    }


def test_captured_and_released_holds_leave_the_list_at_once(
    moto_store: CreditsStore, ledger: Ledger, account: ApiAccount
) -> None:
    kept, captured, released = (reserve(ledger, f"r{n}") for n in range(3))

    ledger.holds.capture(
        CaptureCommand(
            account_id="acct_holds", idempotency_key="c1", hold_id=captured, amount=Decimal(4)
        )
    )
    ledger.holds.release(
        ReleaseCommand(account_id="acct_holds", idempotency_key="x1", hold_id=released)
    )

    assert [hold["holdId"] for hold in get(account).body["data"]] == [kept]


def test_an_expired_hold_the_sweep_has_not_reached_is_listed_and_marked(
    moto_store: CreditsStore, ledger: Ledger, clock: Clock, account: ApiAccount
) -> None:
    """Until the ExpirerFunction releases it, an expired hold still counts in `reserved`."""
    clock.now -= timedelta(hours=1)
    overdue = reserve(ledger, "old", "7", expires_in=60)
    clock.now += timedelta(hours=1)
    live = reserve(ledger, "new", "3")

    body = get(account).body
    balance = balance_of(account)

    assert [(hold["holdId"], hold["expired"]) for hold in body["data"]] == [
        (live, False),
        (overdue, True),
    ]
    assert (balance["balance"], balance["reserved"], balance["available"]) == (1000, 10, 990)


def test_expired_is_judged_as_a_capture_judges_it(moto_store: CreditsStore, ledger: Ledger) -> None:
    """At its `expiresAt` second a hold can no longer be captured, so it shows expired."""
    open_account("acct_holds", opening_balance=100)
    hold_id = reserve(ledger, "r1", expires_in=60)
    account = moto_store.accounts.get("acct_holds", consistent=True)
    assert account is not None
    assert account.holds is not None
    expires = account.holds[hold_id].expires
    signer = CursorSigner(b"k" * 32)

    def expired_at(moment: datetime) -> bool:
        (view,) = reads.holds(moto_store, "acct_holds", signer, now=moment).data
        return view.expired

    assert expired_at(expires - timedelta(seconds=1)) is False
    assert expired_at(expires) is True


def test_an_account_without_holds(moto_store: CreditsStore, account: ApiAccount) -> None:
    body = get(account).body
    assert body == {"data": [], "hasMore": False, "nextCursor": None, "limit": 50}


# ---------------------------------------------------------------- balance with holds
def test_balance_shows_reserved_and_available_with_open_holds(
    moto_store: CreditsStore, ledger: Ledger, account: ApiAccount
) -> None:
    first = reserve(ledger, "r1", "100")
    reserve(ledger, "r2", "50.25")
    ledger.debit(DebitCommand(account_id="acct_holds", idempotency_key="d1", amount=Decimal(5)))

    held = balance_of(account)
    assert (held["balance"], held["reserved"], held["available"]) == (995, 150.25, 844.75)
    assert sum(hold["amount"] for hold in get(account).body["data"]) == held["reserved"]

    ledger.holds.capture(
        CaptureCommand(
            account_id="acct_holds", idempotency_key="c1", hold_id=first, amount=Decimal(60)
        )
    )

    captured = balance_of(account)
    assert (captured["balance"], captured["reserved"], captured["available"]) == (
        935,
        50.25,
        884.75,
    )
    assert captured["used"] == 65


# ---------------------------------------------------------------- paging
def walk(account: ApiAccount, limit: int) -> list[list[str]]:
    """Every page of holds ids, following `nextCursor`."""
    pages: list[list[str]] = []
    query = {"limit": str(limit)}
    while True:
        body = get(account, **query).body
        pages.append([hold["holdId"] for hold in body["data"]])
        assert body["limit"] == limit
        if not body["hasMore"]:
            assert body["nextCursor"] is None
            return pages
        query = {"limit": str(limit), "cursor": body["nextCursor"]}


def test_cursor_pages_walk_every_hold_newest_first(
    moto_store: CreditsStore, ledger: Ledger, clock: Clock, account: ApiAccount
) -> None:
    made = []
    for number in range(5):
        clock.now += timedelta(seconds=1)
        made.append(reserve(ledger, f"r{number}"))

    assert walk(account, 2) == [made[:2:-1], made[2:0:-1], made[:1]]
    assert walk(account, 5) == [made[::-1]]
    assert walk(account, 100) == [made[::-1]]


def test_holds_made_in_one_second_page_by_id(
    moto_store: CreditsStore, ledger: Ledger, account: ApiAccount
) -> None:
    """The creation time is whole seconds: the hold id breaks ties, so no hold is skipped
    or repeated."""
    made = [reserve(ledger, f"r{number}") for number in range(7)]  # the clock stands still

    pages = walk(account, 3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [hold_id for page in pages for hold_id in page] == sorted(made, reverse=True)


def test_pages_have_no_repeats_or_gaps_while_holds_come_and_go(
    moto_store: CreditsStore, ledger: Ledger, clock: Clock, account: ApiAccount
) -> None:
    made = []
    for number in range(6):
        clock.now += timedelta(seconds=1)
        made.append(reserve(ledger, f"r{number}"))
    first = get(account, limit="3").body
    assert [hold["holdId"] for hold in first["data"]] == made[:2:-1]

    clock.now += timedelta(seconds=1)
    newer = reserve(ledger, "r-new")  # made after the first page: not on the later ones
    ledger.holds.release(
        ReleaseCommand(account_id="acct_holds", idempotency_key="x1", hold_id=made[1])
    )
    ledger.holds.release(  # one already listed: the cursor does not depend on it
        ReleaseCommand(account_id="acct_holds", idempotency_key="x2", hold_id=made[3])
    )
    second = get(account, limit="3", cursor=first["nextCursor"]).body

    assert [hold["holdId"] for hold in second["data"]] == [made[2], made[0]]
    assert (second["hasMore"], second["nextCursor"]) == (False, None)
    assert newer in [hold["holdId"] for hold in get(account).body["data"]]


def test_the_limit_may_change_between_pages(
    moto_store: CreditsStore, ledger: Ledger, clock: Clock, account: ApiAccount
) -> None:
    for number in range(4):
        clock.now += timedelta(seconds=1)
        reserve(ledger, f"r{number}")
    cursor = get(account, limit="1").body["nextCursor"]
    assert len(get(account, limit="100", cursor=cursor).body["data"]) == 3


# ---------------------------------------------------------------- validation and tenants
@pytest.fixture
def paged(moto_store: CreditsStore, ledger: Ledger, account: ApiAccount) -> str:
    """Two holds, and the cursor after the first."""
    reserve(ledger, "r1")
    reserve(ledger, "r2")
    cursor: str = get(account, limit="1").body["nextCursor"]
    assert cursor
    return cursor


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "x" * 513}, "cursor"),
    ],
)
def test_parameter_validation_names_the_field(
    moto_store: CreditsStore, account: ApiAccount, query: dict[str, str], field: str
) -> None:
    assert_invalid(get(account, **query), field, 422)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "a.b", "eyJ2IjoxfQ.AAAA"])
def test_a_malformed_cursor_is_a_400_naming_it(
    moto_store: CreditsStore, account: ApiAccount, cursor: str
) -> None:
    assert_invalid(get(account, cursor=cursor), "cursor", 400)


def test_a_tampered_cursor_is_refused(
    moto_store: CreditsStore, account: ApiAccount, paged: str
) -> None:
    payload, signature = paged.split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    assert_invalid(get(account, cursor=forged), "cursor", 400)
    assert_invalid(get(account, cursor=paged[:-1]), "cursor", 400)


def test_cursors_do_not_cross_routes(
    moto_store: CreditsStore, materialize: Callable[[], int], account: ApiAccount, paged: str
) -> None:
    """A transactions cursor is not a holds cursor, nor the other way round."""
    materialize()
    transactions = invoke(
        transactions_handler,
        api_event("/v1/credits/transactions", {"limit": "1"}, api_key_id=account.api_key_id),
    ).body
    assert transactions["nextCursor"]

    assert_invalid(get(account, cursor=transactions["nextCursor"]), "cursor", 400)
    crossed = invoke(
        transactions_handler,
        api_event("/v1/credits/transactions", {"cursor": paged}, api_key_id=account.api_key_id),
    )
    assert_invalid(crossed, "cursor", 400)


def test_tenant_isolation(
    moto_store: CreditsStore, ledger: Ledger, account: ApiAccount, paged: str
) -> None:
    other = open_account("acct_other", opening_balance=50)
    theirs = ledger.holds.reserve(
        ReserveCommand(account_id="acct_other", idempotency_key="o1", amount=Decimal(5))
    ).hold_id

    mine = {hold["holdId"] for hold in get(account).body["data"]}
    listed = get(other, accountId="acct_holds").body["data"]

    assert [hold["holdId"] for hold in listed] == [theirs]
    assert theirs not in mine
    assert len(mine) == 2
    assert_invalid(get(other, cursor=paged), "cursor", 400)  # the signature binds the account


def test_without_a_signing_key_the_route_fails_closed(
    moto_store: CreditsStore, account: ApiAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURSOR_SIGNING_KEY")
    get_settings.cache_clear()
    try:
        response = get(account)
    finally:
        get_settings.cache_clear()
    assert response.status == 500
    assert response.body["error"]["code"] == "INTERNAL_ERROR"


def test_a_key_whose_account_is_gone_gets_404(moto_store: CreditsStore) -> None:
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id="orphan", account_id="acct_gone", plan="free", created_at=datetime.now(UTC)
        )
    )
    response = invoke(lambda_handler, api_event(PATH, api_key_id="orphan"))
    assert response.status == 404
    assert response.body["error"]["code"] == "ACCOUNT_NOT_FOUND"
