"""Scheduled functions for the local stack: each `Type: Schedule` (EventBridge rule) and
`Type: ScheduleV2` (EventBridge Scheduler) event in `template.yaml` runs its function on its
period, on a background thread, as EventBridge would invoke it.

- Only `rate(N minute|minutes|hour|hours|day|days)` is run (with EventBridge's rule: the
  unit is singular for 1, plural otherwise). `cron(...)`, `at(...)` or anything else fails the
  stack's start with a clear error instead of being skipped without a word.
- The first run comes one period after the start, then one each period (a run that overruns
  its period skips the ticks it missed; runs of one function never overlap).
- The event is EventBridge's "Scheduled Event" (`id`, `detail-type`, `source: aws.events`,
  `time`, `resources: [the rule's ARN]`, `detail: {}`), or the schedule's `Input` when it sets
  one; a `ScheduleV2` without `Input` sends `{}`, as EventBridge Scheduler does.
- `CREDITS_SCHEDULE_SCALE` multiplies every period (0.02: `rate(1 minute)` every 1.2 s, as the
  end-to-end tests run it); 0 turns the schedules off.
- A run that did something prints one short line (`expirer: released 1 expired hold(s)`);
  a run that did nothing prints nothing; a failed run is logged with its error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.local_lambda import FunctionBusyError, Invocation
from devtools.template import ScheduleSource

LOGGER = logging.getLogger("devtools.schedules")
SCALE_VARIABLE = "CREDITS_SCHEDULE_SCALE"

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}

Invoke = Callable[[str, Any], Invocation]


class UnsupportedScheduleError(ValueError):
    """A schedule expression the local stack cannot run (or that EventBridge would refuse)."""


def parse_rate(expression: str) -> timedelta:
    """`rate(5 minutes)` -> 5 minutes. Anything else is an `UnsupportedScheduleError`."""
    text = expression.strip()
    match = _RATE.fullmatch(text)
    if match is None:
        if text.startswith(("cron(", "at(")):
            raise UnsupportedScheduleError(
                f"{text!r}: the local stack runs only rate(...) schedules, not "
                f"{text.split('(', 1)[0]}(...) (devtools/schedules.py)"
            )
        raise UnsupportedScheduleError(
            f"{text!r} is not a schedule expression: rate(N minute|minutes|hour|hours|day|days)"
        )
    value, unit = int(match.group(1)), match.group(2)
    singular = unit.removesuffix("s")
    if singular not in _UNITS:
        raise UnsupportedScheduleError(
            f"{text!r}: the unit must be minute(s), hour(s) or day(s), not {unit!r}"
        )
    if value < 1:
        raise UnsupportedScheduleError(f"{text!r}: the rate must be a positive whole number")
    if (value == 1) != (unit == singular):
        # EventBridge refuses `rate(1 minutes)` and `rate(5 minute)`.
        wanted = singular if value == 1 else f"{singular}s"
        raise UnsupportedScheduleError(f"{text!r}: EventBridge wants rate({value} {wanted})")
    return timedelta(seconds=value * _UNITS[singular])


def scale_from_environment(environ: Mapping[str, str] | None = None) -> float:
    """`CREDITS_SCHEDULE_SCALE` (default 1): the factor every period is multiplied by;
    0 turns the schedules off. Anything but a number >= 0 is an error, not a default."""
    raw = (os.environ if environ is None else environ).get(SCALE_VARIABLE, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_VARIABLE}={raw!r} is not a number") from None
    if not scale >= 0 or scale == float("inf"):  # also refuses NaN
        raise ValueError(f"{SCALE_VARIABLE}={raw!r}: want a number >= 0 (0: no schedules)")
    return scale


def rule_arn(source: ScheduleSource, *, account: str, region: str) -> str:
    """The ARN of the rule (or Scheduler schedule) SAM would create for the event."""
    name = f"{source.function}{source.event}"
    if source.kind == "ScheduleV2":
        return f"arn:aws:scheduler:{region}:{account}:schedule/default/{name}"
    return f"arn:aws:events:{region}:{account}:rule/{name}"


def scheduled_event(source: ScheduleSource, now: datetime, *, account: str, region: str) -> Any:
    """What the function receives: the schedule's `Input`, or EventBridge's Scheduled Event
    (`{}` for a ScheduleV2 without `Input`, as EventBridge Scheduler sends)."""
    if source.input is not None:
        return json.loads(source.input)
    if source.kind == "ScheduleV2":
        return {}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn(source, account=account, region=region)],
        "detail": {},
    }


# ---------------------------------------------------------------- what a run did
def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _expirer_summary(result: Any) -> str | None:
    expired, failed = int(result.get("expired", 0)), int(result.get("failed", 0))
    said = []
    if expired:
        said.append(f"released {expired} expired hold(s)")
    if failed:
        said.append(f"{failed} due hold(s) left for the next run")
    lots = result.get("lots") or {}
    if int(lots.get("expired", 0)):
        said.append(f"expired credits of {int(lots['expired'])} lot(s)")
    if int(lots.get("pinned", 0)):
        said.append(f"{int(lots['pinned'])} expired lot(s) held by open holds")
    if int(lots.get("failed", 0)):
        said.append(f"{int(lots['failed'])} due lot(s) left for the next run")
    return "expirer: " + "; ".join(said) if said else None


def _reconciler_summary(result: Any) -> str | None:
    filled, inconsistent = int(result.get("filled", 0)), len(result.get("inconsistent", []))
    if not filled and not inconsistent:
        return None
    accounts = _plural(int(result.get("accounts", 0)), "account")
    entries = "1 ledger entry" if filled == 1 else f"{filled} ledger entries"
    return f"reconciler: {accounts} checked, {entries} filled, {inconsistent} inconsistent"


# A function's result -> a line, or None when the run did nothing worth a line.
SUMMARIES: dict[str, Callable[[Any], str | None]] = {
    "ExpirerFunction": _expirer_summary,
    "ReconcilerFunction": _reconciler_summary,
}


def summary(function: str, invocation: Invocation) -> str | None:
    """One line for a scheduled run that did something (or failed); None otherwise."""
    if invocation.failed:
        try:
            error = invocation.json()
            reason = f"{error.get('errorType')}: {error.get('errorMessage')}"
        except ValueError:
            reason = invocation.error_type or "Unhandled"
        return f"{function}: scheduled run failed ({reason})"
    result = invocation.json()
    summarize = SUMMARIES.get(function)
    if summarize is not None and isinstance(result, dict):
        return summarize(result)
    return None if not result else f"{function}: {json.dumps(result)}"


# ---------------------------------------------------------------- running them
def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when the console is a pipe or a file


class ScheduledFunction:
    """One schedule event of the template, run on its own thread every `period` seconds."""

    def __init__(
        self,
        source: ScheduleSource,
        period: float,
        invoke: Invoke,
        *,
        account: str,
        region: str,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        if period <= 0:
            raise ValueError(f"{source.function}.{source.event}: the period must be positive")
        self.source = source
        self.period = period
        self.account = account
        self.region = region
        self._invoke = invoke
        self._announce = announce or _say
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"schedule:{source.function}", daemon=True
        )

    def run_once(self) -> Invocation:
        """Invoke the function now with the scheduled event; say what it did."""
        event = scheduled_event(
            self.source, datetime.now(UTC), account=self.account, region=self.region
        )
        invocation = self._invoke(self.source.function, event)
        line = summary(self.source.function, invocation)
        if invocation.failed:
            LOGGER.error("%s", line)
        elif line:
            self._announce(line)
        return invocation

    def _loop(self) -> None:
        due = time.monotonic() + self.period
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.run_once()
            except FunctionBusyError:
                LOGGER.warning("%s: scheduled run skipped, the function stayed busy", self.name)
            except Exception:  # keep the schedule going, as EventBridge would
                LOGGER.exception("%s: scheduled run failed", self.name)
            due += self.period
            now = time.monotonic()
            if due < now:  # overran: skip the missed ticks, keep the cadence
                due += ((now - due) // self.period + 1) * self.period

    @property
    def name(self) -> str:
        return f"{self.source.function}.{self.source.event}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


def scheduled_functions(
    sources: list[ScheduleSource],
    invoke: Invoke,
    *,
    scale: float,
    account: str,
    region: str,
    functions: Mapping[str, Any] | None = None,
    announce: Callable[[str], None] | None = None,
) -> list[ScheduledFunction]:
    """A runner for every enabled schedule (none when `scale` is 0). Every enabled schedule's
    expression is checked first: one the stack cannot run fails here, before anything runs."""
    enabled = [source for source in sources if source.enabled]
    periods = []
    for source in enabled:
        if functions is not None and source.function not in functions:
            raise ValueError(f"schedule {source.event} names no function {source.function!r}")
        try:
            periods.append(parse_rate(source.expression).total_seconds())
        except UnsupportedScheduleError as exc:
            raise UnsupportedScheduleError(
                f"{source.function}.{source.event} in template.yaml: {exc}"
            ) from None
    if scale == 0:
        return []
    return [
        ScheduledFunction(
            source, period * scale, invoke, account=account, region=region, announce=announce
        )
        for source, period in zip(enabled, periods, strict=True)
    ]


def describe_period(seconds: float) -> str:
    """1.2 -> "1.2 s", 60 -> "1 minute", 86400 -> "1 day" (for the banner)."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return _plural(int(seconds // size), unit)
    return f"{seconds:g} s"
