"""Small statistics over timings (seconds in, milliseconds out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency(samples: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/mean of timings in seconds, reported in milliseconds."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50_ms": ms(statistics.median(samples)),
        "p90_ms": ms(percentile(samples, 0.90)),
        "p99_ms": ms(percentile(samples, 0.99)),
        "mean_ms": ms(statistics.fmean(samples)),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def overhead(
    handler_times: Sequence[float], bare_times: Sequence[float], bare_call: str
) -> dict[str, Any]:
    """A handler's timings against those of the bare DynamoDB call(s) it issued."""
    handler_p50 = statistics.median(handler_times)
    bare_p50 = statistics.median(bare_times)
    return {
        "handler": latency(handler_times),
        "bare": latency(bare_times),
        "bare_call": bare_call,
        "ratio_p50": ratio(handler_p50, bare_p50),
        "added_p50_ms": ms(handler_p50 - bare_p50),
    }
