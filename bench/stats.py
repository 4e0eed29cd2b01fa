"""Small statistics over timings (seconds in, milliseconds out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


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
