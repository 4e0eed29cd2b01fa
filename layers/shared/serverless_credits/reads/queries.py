"""Read views of an account for the customer HTTP API: balance, transactions, stats and
summary (the credit lots of `/balances` are `reads.lots`).

Every view costs a fixed number of DynamoDB requests, whatever the size of the ledger
(SPEC "Non-functional targets"):
- balance: one GetItem of the account item;
- transactions: one Query of the ledger partition per page, at most `MAX_QUERIES` when a
  filter leaves it short, examining at most `MAX_SCANNED` entries (plus the `offset`
  compatibility mode's skipped ones, at most `MAX_OFFSET`): a sparse filter gets a partial
  page and a cursor to continue, never a scan of the ledger;
- stats, summary: one GetItem (credit price, balance) and one Query of the daily usage
  aggregates (at most `MAX_RANGE_DAYS` small rows), never the ledger.

Amounts are exact `Decimal`s, normalised, and travel as JSON numbers (`money.Credits`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field

from serverless_credits.domain.errors import AccountNotFound, ValidationFailed
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    CamelModel,
    DailyUsage,
    EntryType,
    LedgerEntry,
    ReleaseReason,
    SubscriptionStatus,
    utc_now,
)
from serverless_credits.domain.money import Credits, format_cost, jsonable, normalize
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.storage import ledger_entries
from serverless_credits.storage.ledger_entries import EntryRange
from serverless_credits.storage.store import CreditsStore

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_OFFSET = 1_000
MAX_SCANNED = 1_000  # ledger entries one transactions page may examine, beyond `offset`
MAX_QUERIES = ledger_entries.MAX_QUERIES
DEFAULT_DAYS = 30
MAX_DAYS = 90
MAX_RANGE_DAYS = 366
MIN_YEAR, MAX_YEAR = 1970, 9998

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


# ---------------------------------------------------------------- parameters
def _instant(value: Any) -> Any:
    """ISO 8601 only: a day (`2025-02-01`) or a moment (`2025-02-01T10:00:00Z`, UTC if no
    offset). Numbers and other formats are refused rather than guessed."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or date-time")
    text = value.strip()
    try:
        parsed: date | datetime
        if _DATE.match(text):
            parsed = date.fromisoformat(text)
        elif _DATETIME.match(text):
            moment = datetime.fromisoformat(text.upper().replace(" ", "T").replace("Z", "+00:00"))
            parsed = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        else:
            raise ValueError("format")
    except (ValueError, OverflowError):
        raise ValueError(
            "must be an ISO 8601 date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SSZ)"
        ) from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return parsed


DateOrTime = Annotated[date | datetime, BeforeValidator(_instant)]
"""A query parameter naming a day or a moment (ISO 8601); days are UTC days."""


class Period(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"
    YEARLY = "yearly"


# ---------------------------------------------------------------- response models
class AutoReload(CamelModel):
    enabled: bool
    threshold: Credits | None = None
    amount: Credits | None = None


class BalanceView(CamelModel):
    """GET /v1/credits/balance."""

    balance: Credits = Field(description="Credits held: the sum of every ledger entry")
    reserved: Credits = Field(description="Credits held back by open reservations")
    available: Credits = Field(description="balance - reserved: what a debit may use")
    used: Credits = Field(
        description="Credits used over the account's lifetime: debits and captures, net of "
        "refunds and voids (adjustments and expiries are not use). The lifetime sum of the "
        "stats' `totalUsed`"
    )
    total: Credits = Field(description="Credits added over the account's lifetime: top-ups, grants")
    adjusted: Credits = Field(
        description="Net of operators' adjustments (either way) and expired credits, lifetime: "
        "balance = total - used + adjusted"
    )
    currency: str = Field(description="Currency of the credit price (ISO 4217)")
    credit_price: Credits = Field(description="Price of one credit in `currency`")
    low_balance: bool = Field(description="available is at or below the low-balance threshold")
    low_balance_threshold: Credits | None = None
    auto_reload: AutoReload
    status: AccountStatus
    subscription_status: SubscriptionStatus
    subscription_id: str | None = None
    flagged: bool
    fraud_warning: str | None = None
    last_updated: AwareDatetime


class TransactionView(CamelModel):
    id: str = Field(description="Transaction id: txn_<sequence>_<operation>, unique")
    type: EntryType
    amount: Credits = Field(description="Signed: negative for debits")
    balance_after: Credits
    available_after: Credits | None = Field(
        default=None, description="available (balance - reserved) after this entry"
    )
    sequence: int = Field(description="Gapless per-account sequence number")
    description: str = ""
    reference: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    action: str | None = None
    quantity: Credits | None = None
    endpoint: str | None = None
    refund_of: str | None = None
    actor: str | None = Field(default=None, description="Who made an operator's change")
    hold_id: str | None = Field(
        default=None, description="The hold a hold, capture or release entry belongs to"
    )
    held: Credits | None = Field(
        default=None,
        description="Signed change of `reserved`: +amount held on a hold, -amount on its "
        "capture or release",
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="On a hold entry: when the hold expires; on an entry that opened a credit "
        "lot: when the lot expires",
    )
    reason: ReleaseReason | None = Field(
        default=None, description="On a release entry: `released`, or `expired` (the expirer)"
    )
    lots: dict[str, Credits] | None = Field(
        default=None,
        description="Which credit lots (`balanceId`) paid (negative) or received (positive) "
        "how much: a debit's or capture's lots in burn order, a credit's new lot, a refund's "
        "returns, an expiry's lot",
    )
    lot_id: str | None = Field(
        default=None,
        description="The credit lot this entry opened (top-up, grant, adjustment, refund) or "
        "expired (expiry)",
    )
    priority: int | None = Field(
        default=None, description="On an entry that opened a credit lot: its priority"
    )
    created_at: AwareDatetime


class TransactionsPage(CamelModel):
    """GET /v1/credits/transactions: a page, most recent first."""

    data: list[TransactionView]
    has_more: bool = Field(
        description="More entries may follow: read them with `nextCursor` (false on the last page)"
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to read the next page (null on the last page)"
    )
    partial: bool = Field(
        default=False,
        description=f"The page stopped early: a filter matched fewer than `limit` of the "
        f"{MAX_SCANNED:,} entries one page may examine. `data` may be short or empty; "
        "`hasMore` is true and `nextCursor` continues where the page stopped",
    )
    limit: int
    offset: int


class UsageRow(CamelModel):
    day: str = Field(alias="date", description="YYYY-MM-DD, YYYY-MM or YYYY, by period")
    calls: int
    successful_requests: int
    failed_requests: int
    credits_used: Credits
    cost: str


class UsageTotal(CamelModel):
    calls: int
    credits_used: Credits
    cost: str


class StatsView(CamelModel):
    """GET /v1/credits/stats, from the daily usage aggregates."""

    period: Period
    period_start: date
    period_end: date
    currency: str
    credit_price: Credits
    total_used: Credits = Field(
        description="Credits used in the range: debits and captures, net of refunds and voids "
        "(netted on the day of the call they undo); adjustments and expiries are not use. "
        "Over the account's whole life it equals the balance's `used`"
    )
    total_calls: int = Field(description="Billable calls attempted, declined ones included")
    successful_requests: int = Field(
        description="totalCalls - failedRequests: calls charged and not refunded as failed"
    )
    failed_requests: int = Field(description="Declined calls and calls refunded as failed")
    total_cost: str
    total: UsageTotal
    usage: list[UsageRow] = Field(description="One row per day, month or year, most recent first")
    by_type: dict[str, Credits] = Field(description="Net credits by billable action")
    by_endpoint: dict[str, int] = Field(description="Calls by endpoint")
    by_endpoint_credits: dict[str, Credits] = Field(description="Net credits by endpoint")


class Subscription(CamelModel):
    status: SubscriptionStatus
    id: str | None = None
    plan: str


class SummaryView(CamelModel):
    """GET /v1/account/summary."""

    account_id: str
    email: str | None = None
    plan: str
    status: AccountStatus
    balance: BalanceView
    subscription: Subscription
    usage_this_month: StatsView
    total_requests_all_time: int = Field(
        description="Successful billable requests over the account's lifetime: calls charged "
        "(debits, captures) less those refunded as failed (voids, refunds flagged failed). "
        "The lifetime sum of the stats' `successfulRequests`; declined calls are not in it"
    )
    account_created_at: AwareDatetime


# ---------------------------------------------------------------- balance
def _account(store: CreditsStore, account_id: str) -> Account:
    account = store.accounts.get(account_id, consistent=True)
    if account is None:
        raise AccountNotFound(account_id)
    return account


def _n(value: Decimal | None) -> Decimal | None:
    return None if value is None else normalize(value)


def balance_view(account: Account) -> BalanceView:
    return BalanceView(
        balance=normalize(account.balance),
        reserved=normalize(account.reserved),
        available=normalize(account.available),
        used=normalize(account.used),
        total=normalize(account.total),
        adjusted=normalize(account.adjusted),
        currency=account.currency,
        credit_price=normalize(account.credit_price),
        low_balance=account.low_balance,
        low_balance_threshold=_n(account.low_balance_threshold),
        auto_reload=AutoReload(
            enabled=account.auto_reload_enabled,
            threshold=_n(account.auto_reload_threshold),
            amount=_n(account.auto_reload_amount),
        ),
        status=account.status,
        subscription_status=account.subscription_status,
        subscription_id=account.subscription_id,
        flagged=account.flagged,
        fraud_warning=account.fraud_warning,
        last_updated=account.updated_at,
    )


def balance(store: CreditsStore, account_id: str) -> BalanceView:
    """The account's balance: one strongly consistent GetItem."""
    return balance_view(_account(store, account_id))


# ---------------------------------------------------------------- transactions
def _start_of(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


def _end_of(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time.max, tzinfo=UTC)


def transaction_view(entry: LedgerEntry) -> TransactionView:
    """A ledger entry as the API shows it (the transactions route, the operators' ledger)."""
    return TransactionView(
        id=entry.transaction_id,
        type=entry.type,
        amount=normalize(entry.amount),
        balance_after=normalize(entry.balance_after),
        available_after=_n(entry.available_after),
        sequence=entry.sequence,
        description=entry.description,
        reference=entry.reference,
        metadata=jsonable(entry.metadata),  # DynamoDB numbers come back as Decimal
        action=entry.action,
        quantity=_n(entry.quantity),
        endpoint=entry.endpoint,
        refund_of=entry.refund_of,
        actor=entry.actor,
        hold_id=entry.hold_id,
        held=_n(entry.held),
        expires_at=entry.expires_at,
        reason=entry.reason,
        lots={lot: normalize(moved) for lot, moved in entry.lots.items()} if entry.lots else None,
        lot_id=entry.lot_id,
        priority=entry.priority,
        created_at=entry.created_at,
    )


def _scope(entry_type: EntryType | None, first: datetime | None, last: datetime | None) -> str:
    """The filters a cursor is bound to, in canonical form."""
    return (
        f"type={entry_type.value if entry_type else ''}"
        f"&from={first.isoformat() if first else ''}&to={last.isoformat() if last else ''}"
    )


EARLIEST_DAY, LATEST_DAY = date(MIN_YEAR, 1, 1), date(MAX_YEAR, 12, 31)


def _sequence_range(
    store: CreditsStore, account_id: str, first: datetime | None, last: datetime | None
) -> EntryRange | None:
    """The ledger sequences a time range can hold, from the first and last sequence of the
    first and last day of the range with entries (two Queries of a few small rows, however
    long the range); None when no entry falls on those days."""
    bounds = store.usage.sequence_bounds(
        account_id,
        first.date() if first else EARLIEST_DAY,
        last.date() if last else LATEST_DAY,
    )
    if bounds is None:
        return None
    return EntryRange(first_sequence=bounds[0], last_sequence=bounds[1])


def transactions(
    store: CreditsStore,
    account_id: str,
    signer: CursorSigner,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    cursor: str | None = None,
    entry_type: EntryType | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
) -> TransactionsPage:
    """A page of the ledger, most recent first, optionally filtered by type and time.

    `cursor` (the previous page's `nextCursor`) is the fast path: one Query that starts
    right after the previous page, so entries added meanwhile cause no gaps or repeats.
    `offset` is kept for compatibility: it reads and discards `offset` entries first.
    A time range is first narrowed to a sequence range by the daily usage items.

    Every page examines at most `offset + MAX_SCANNED` entries in at most `MAX_QUERIES`
    Queries: a filter (`type`, the exact times) that matches too few of them returns a
    partial page (`partial`, `hasMore`, a cursor after the last entry examined). An
    `offset` that the budget cannot reach under a filter is refused (use the cursor).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", {"field": "limit"})
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationFailed(
            f"offset must be between 0 and {MAX_OFFSET}: use the cursor to page further",
            {"field": "offset"},
        )
    first = _start_of(start) if start is not None else None
    last = _end_of(end) if end is not None else None
    if first is not None and last is not None and first > last:
        raise ValidationFailed("'from' must not be after 'to'", {"field": "from"})
    scope = _scope(entry_type, first, last)
    after: int | None = None
    if cursor is not None:
        if offset:
            raise ValidationFailed("Use either 'offset' or 'cursor', not both", {"field": "offset"})
        after = int(signer.verify(cursor, account_id=account_id, scope=scope))
    entry_range = EntryRange(entry_type=entry_type)
    if first is not None or last is not None:
        sequences = _sequence_range(store, account_id, first, last)
        if sequences is None:
            return TransactionsPage(data=[], has_more=False, limit=limit, offset=offset)
        entry_range = EntryRange(
            first_sequence=sequences.first_sequence,
            last_sequence=sequences.last_sequence,
            created_from=first,
            created_to=last,
            entry_type=entry_type,
        )
    found = store.entries.read_page(
        account_id,
        limit=limit,
        skip=offset,
        after_sequence=after,
        scope=entry_range,
        max_scanned=offset + max(MAX_SCANNED, limit + 1),
        max_queries=MAX_QUERIES,
    )
    if found.stopped_early and found.skipped < offset:
        raise ValidationFailed(
            f"offset {offset} is out of reach: fewer than {offset} entries match these "
            f"filters among the {found.scanned:,} one page may examine; page with the cursor",
            {"field": "offset"},
        )
    next_sequence = found.next_sequence
    return TransactionsPage(
        data=[transaction_view(entry) for entry in found.entries],
        has_more=next_sequence is not None,
        next_cursor=(
            signer.sign(account_id=account_id, scope=scope, position=str(next_sequence))
            if next_sequence
            else None
        ),
        partial=found.stopped_early,
        limit=limit,
        offset=offset,
    )


# ---------------------------------------------------------------- stats
def _day(value: date | datetime) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value


def _either(first: Any, second: Any, names: tuple[str, str]) -> Any:
    if first is not None and second is not None:
        raise ValidationFailed(
            f"Give either '{names[0]}' or '{names[1]}', not both", {"field": names[1]}
        )
    return first if first is not None else second


def stats_range(
    *,
    days: int | None,
    start: date | datetime | None,
    end: date | datetime | None,
    today: date,
) -> tuple[date, date]:
    """The inclusive UTC days a stats request covers (default: the last `DEFAULT_DAYS`)."""
    if days is not None:
        if start is not None or end is not None:
            raise ValidationFailed("Give either 'days' or 'from'/'to', not both", {"field": "days"})
        if not 1 <= days <= MAX_DAYS:
            raise ValidationFailed(f"days must be between 1 and {MAX_DAYS}", {"field": "days"})
        return today - timedelta(days=days - 1), today
    last = _day(end) if end is not None else today
    first = _day(start) if start is not None else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ValidationFailed("'from' must not be after 'to'", {"field": "from"})
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed(
            f"The range may cover at most {MAX_RANGE_DAYS} days", {"field": "from"}
        )
    return first, last


def _label(day: date, period: Period) -> str:
    if period is Period.DAILY:
        return day.isoformat()
    if period is Period.MONTHLY:
        return f"{day.year:04d}-{day.month:02d}"
    return f"{day.year:04d}"


def _buckets(first: date, last: date, period: Period) -> Iterator[str]:
    """Every bucket label of the range, most recent first (zero rows included, for charts)."""
    seen: set[str] = set()
    day = last
    while day >= first:
        label = _label(day, period)
        if label not in seen:
            seen.add(label)
            yield label
        if period is Period.DAILY:
            day -= timedelta(days=1)
        elif period is Period.MONTHLY:
            day = day.replace(day=1) - timedelta(days=1)
        else:
            day = day.replace(month=1, day=1) - timedelta(days=1)


def _sum_maps(maps: Iterable[dict[str, Decimal]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for mapping in maps:
        for name, value in mapping.items():
            total[name] = total.get(name, Decimal(0)) + value
    return {name: normalize(value) for name, value in sorted(total.items())}


def stats_view(
    account: Account, rows: list[DailyUsage], first: date, last: date, period: Period
) -> StatsView:
    def cost(credits: Decimal) -> str:
        return format_cost(credits, account.credit_price, account.currency)

    calls: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    credits: dict[str, Decimal] = {}
    for row in rows:
        label = _label(row.day, period)
        calls[label] += row.calls
        failed[label] += row.failed
        credits[label] = credits.get(label, Decimal(0)) + row.credits_used
    usage = [
        UsageRow(
            day=label,
            calls=calls[label],
            successful_requests=max(calls[label] - failed[label], 0),
            failed_requests=failed[label],
            credits_used=normalize(credits.get(label, Decimal(0))),
            cost=cost(credits.get(label, Decimal(0))),
        )
        for label in _buckets(first, last, period)
    ]
    total_calls = sum(row.calls for row in rows)
    total_failed = sum(row.failed for row in rows)
    total_used = normalize(sum((row.credits_used for row in rows), Decimal(0)))
    by_endpoint: Counter[str] = Counter()
    for row in rows:
        by_endpoint.update(row.by_endpoint)
    return StatsView(
        period=period,
        period_start=first,
        period_end=last,
        currency=account.currency,
        credit_price=normalize(account.credit_price),
        total_used=total_used,
        total_calls=total_calls,
        successful_requests=max(total_calls - total_failed, 0),
        failed_requests=total_failed,
        total_cost=cost(total_used),
        total=UsageTotal(calls=total_calls, credits_used=total_used, cost=cost(total_used)),
        usage=usage,
        by_type=_sum_maps(row.by_type for row in rows),
        by_endpoint=dict(sorted(by_endpoint.items())),
        by_endpoint_credits=_sum_maps(row.by_endpoint_credits for row in rows),
    )


def stats(
    store: CreditsStore,
    account_id: str,
    *,
    days: int | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    start_date: date | datetime | None = None,
    end_date: date | datetime | None = None,
    period: Period = Period.DAILY,
    today: date | None = None,
) -> StatsView:
    """Usage over `days` (1..90) or `from`/`to` (alias `startDate`/`endDate`), per day, month
    or year: one GetItem (credit price) and one Query of the daily aggregates."""
    first, last = stats_range(
        days=days,
        start=_either(start, start_date, ("from", "startDate")),
        end=_either(end, end_date, ("to", "endDate")),
        today=today or utc_now().date(),
    )
    account = _account(store, account_id)
    return stats_view(account, store.usage.daily(account_id, first, last), first, last, period)


# ---------------------------------------------------------------- summary
def summary(store: CreditsStore, account_id: str, *, today: date | None = None) -> SummaryView:
    """Balance, subscription, this month's usage (to today), lifetime requests."""
    last = today or utc_now().date()
    first = last.replace(day=1)
    account = _account(store, account_id)
    month = stats_view(
        account, store.usage.daily(account_id, first, last), first, last, Period.MONTHLY
    )
    return SummaryView(
        account_id=account.account_id,
        email=account.email,
        plan=account.plan,
        status=account.status,
        balance=balance_view(account),
        subscription=Subscription(
            status=account.subscription_status, id=account.subscription_id, plan=account.plan
        ),
        usage_this_month=month,
        total_requests_all_time=account.lifetime_requests,
        account_created_at=account.created_at,
    )


__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_LIMIT",
    "MAX_DAYS",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_QUERIES",
    "MAX_RANGE_DAYS",
    "MAX_SCANNED",
    "BalanceView",
    "DateOrTime",
    "Period",
    "StatsView",
    "SummaryView",
    "TransactionsPage",
    "balance",
    "stats",
    "summary",
    "transactions",
]
