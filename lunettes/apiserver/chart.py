"""The PNG chart of a load analysis: the series, its baseline, the anomalous windows shaded
and the top culprit's requests stacked under the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lunettes.apiserver.report import LoadAnalysis


def write_chart(analysis: LoadAnalysis, path: str | Path, title: str = "API server load"
                ) -> None:
    """Write the chart as PNG to ``path`` (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    series = analysis.series
    values = series.slice(analysis.where)
    times = mdates.date2num([datetime.fromtimestamp(series.start_s + i * series.interval_s,
                                                    UTC) for i in range(len(values))])
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    culprit = next((a.culprits[0] for a in analysis.anomalies if a.culprits), None)
    if culprit is not None:
        part = series.slice({**analysis.where, **culprit.attributes})
        label = ", ".join(f"{k}={v}" for k, v in culprit.attributes.items())
        ax.stackplot(times, part, values - part, labels=[label, "everything else"],
                     colors=["#d62728", "#9ecae1"], alpha=0.8)
    else:
        ax.plot(times, values, color="#1f77b4", label="requests")
    ax.plot(times, analysis.fit.expected, color="black", linestyle="--", linewidth=1,
            label="baseline")
    step = series.interval_s
    for anomaly in analysis.anomalies:
        w = anomaly.window
        ax.axvspan(times[w.start], mdates.date2num(
            datetime.fromtimestamp(series.start_s + w.end * step, UTC)),
                   color="orange", alpha=0.25)
    ax.xaxis_date()
    ax.set_title(title)
    ax.set_ylabel(f"requests per {step} s")
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
