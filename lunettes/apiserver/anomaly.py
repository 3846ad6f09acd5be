"""Anomalous windows of a series against a seasonal baseline.

The baseline is statsmodels' robust STL (trend + seasonal) when the series holds at least
two periods (the period given, or detected from the autocorrelation), else a robust LOWESS
trend. Residuals are scored as robust z-scores (median and MAD, the spread never below the
Poisson spread of the expected count, so that noise does not turn into alarms); runs of
intervals above the threshold, with gaps of at most ``gap`` intervals, are merged into
windows. A window's score is
``z / (z + threshold)`` for its peak z: 0.5 at the threshold, towards 1 beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Baseline:
    """Expected values (trend + seasonal), the trend, and robust z of the residuals."""

    expected: np.ndarray
    trend: np.ndarray
    z: np.ndarray
    period: int | None


@dataclass(frozen=True)
class Window:
    """Intervals ``start`` to ``end`` (exclusive) of a series, with their peak z."""

    start: int
    end: int
    peak_z: float
    score: float

    def indices(self) -> range:
        return range(self.start, self.end)


def detect_period(values: np.ndarray, max_period: int | None = None) -> int | None:
    """The lag of the first autocorrelation peak (above 0.15, after the first negative
    value) of the detrended series, clipped to three robust standard deviations; None when
    there is none."""
    from statsmodels.tsa.stattools import acf

    n = len(values)
    if n < 8:
        return None
    detrended = values - _lowess(values, frac=0.5)
    center = float(np.median(detrended))
    spread = 3 * MAD_TO_SIGMA * float(np.median(np.abs(detrended - center)))
    if spread == 0:
        return None
    detrended = np.clip(detrended, center - spread, center + spread)  # spikes do not cycle
    limit = min(n // 2, max_period or n // 2)
    corr = acf(detrended, nlags=limit, fft=True)
    negative = np.flatnonzero(corr < 0)
    if not len(negative):
        return None
    for lag in range(int(negative[0]) + 1, len(corr) - 1):  # the first peak after a trough
        if corr[lag] > 0.15 and corr[lag] >= corr[lag - 1] and corr[lag] >= corr[lag + 1] \
                and corr[lag] >= corr[lag:max(lag + 1, lag + lag // 4)].max():
            return lag
    return None


def _lowess(values: np.ndarray, frac: float) -> np.ndarray:
    from statsmodels.nonparametric.smoothers_lowess import lowess

    x = np.arange(len(values), dtype=float)
    return np.asarray(lowess(values, x, frac=frac, it=3, return_sorted=False), dtype=float)


def baseline(values: np.ndarray, period: int | None = None, counts: bool = True) -> Baseline:
    """The seasonal baseline of ``values``; ``period`` in intervals (detected when None;
    0: no seasonality). ``counts``: the values are counts, whose spread is at least
    Poisson's; otherwise the spread is only kept above a millionth of the median."""
    from statsmodels.tsa.seasonal import STL

    values = np.asarray(values, dtype=float)
    n = len(values)
    if period is None:
        period = detect_period(values)
    if period and period >= 2 and n >= 2 * period + 1:
        fit = STL(values, period=period, robust=True).fit()
        trend = np.asarray(fit.trend, dtype=float)
        expected = trend + np.asarray(fit.seasonal, dtype=float)
    else:
        period = None
        trend = _lowess(values, frac=min(1.0, max(15.0, n / 3) / n)) if n >= 4 else (
            np.full(n, float(np.median(values)) if n else 0.0))
        expected = trend
    expected = np.maximum(expected, 0.0)
    residual = values - expected
    center = float(np.median(residual)) if n else 0.0
    spread = MAD_TO_SIGMA * float(np.median(np.abs(residual - center))) if n else 0.0
    if counts:
        scale = np.maximum(spread, np.sqrt(np.maximum(expected, 1.0)))
    else:
        scale = np.full(n, max(spread, 1e-6 * abs(float(np.median(values))) if n else 0.0,
                               1e-12))
    return Baseline(expected, trend, (residual - center) / scale, period)


def windows(fit: Baseline, threshold: float = 4.0, gap: int = 1,
            direction: str = "up") -> list[Window]:
    """Runs of intervals whose z passes ``threshold`` (``up``: above, ``down``: below
    minus it, ``both``), merged across gaps of at most ``gap`` intervals."""
    z = fit.z if direction == "up" else -fit.z if direction == "down" else np.abs(fit.z)
    hot = np.flatnonzero(z > threshold)
    found: list[Window] = []
    start = prev = None
    for i in hot:
        if start is None:
            start = prev = int(i)
        elif i - prev <= gap + 1:  # type: ignore[operator]
            prev = int(i)
        else:
            found.append(_window(z, start, prev + 1, threshold))  # type: ignore[operator]
            start = prev = int(i)
    if start is not None:
        found.append(_window(z, start, prev + 1, threshold))  # type: ignore[operator]
    return found


def _window(z: np.ndarray, start: int, end: int, threshold: float) -> Window:
    peak = float(z[start:end].max())
    return Window(start, end, peak, peak / (peak + threshold))


def detect(values: np.ndarray, period: int | None = None, threshold: float = 4.0,
           direction: str = "up", counts: bool = True) -> tuple[Baseline, list[Window]]:
    """The baseline of ``values`` and its anomalous windows."""
    fit = baseline(values, period, counts)
    return fit, windows(fit, threshold, direction=direction)
