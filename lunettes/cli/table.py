"""The table ``lunettes replay`` prints: one row per Pod, fitted to the terminal.

By default the stages collapse to the slowest ones (open stages first: they are what is
still running) and the Pod's name gives way before its outcome, total and results do;
``wide`` shows every stage in trace order, with the node and creation time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.table import Table

from lunettes.model.record import PodRecord, Stage
from lunettes.model.results import Results
from lunettes.model.times import format_optional

SLOWEST = 3
"""Stages shown per Pod unless wide."""

ResultColumn = tuple[str, Callable[[PodRecord], str]]
"""A column of analyzer results: its header and the cell of a record."""


def result_columns(results: Results) -> list[ResultColumn]:
    """One column per analyzer result with a ``headline``: that key of the result."""

    def column(name: str, key: str) -> ResultColumn:
        def cell(record: PodRecord) -> str:
            value = record.results.get(name)
            value = value.get(key) if isinstance(value, dict) else None
            return "-" if value is None or value == "" else str(value)
        return name, cell

    return [column(s.name, s.headline) for s in results.schemas if s.headline]


def stage_cell(stage: Stage) -> str:
    """``name[instance]=seconds`` (or ``=open``)."""
    instance = f"[{stage.instance}]" if stage.instance else ""
    duration = "open" if stage.duration_s is None else f"{stage.duration_s:.2f}"
    return f"{stage.name}{instance}={duration}"


def middle_cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` in the middle, keeping both the namespace and the end of
    the Pod's name (where a ReplicaSet's Pods differ)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def slowest(stages: Sequence[Stage], count: int = SLOWEST) -> list[Stage]:
    """The ``count`` stages worth a look first: open ones, then the longest."""
    return sorted(stages, key=lambda s: (s.duration_s is not None, -(s.duration_s or 0.0)))[
        :count]


def pod_table(records: Sequence[PodRecord], width: int, results: Results,
              wide: bool = False) -> Table:
    """The table of ``records``, oldest first, ``width`` columns wide at most.

    The outcome, total and result columns keep their full text; the name is cut (with an
    ellipsis) before the stages column gets narrower than a third of the line.
    """
    columns = result_columns(results)
    rows = []
    for r in sorted(records, key=lambda r: (r.created_us or r.last_seen_us or 0, r.uid)):
        stages = r.stages[1:] if wide else slowest(r.stages[1:])
        cells = [f"{r.namespace}/{r.name}"]
        if wide:
            cells += [r.node or "-", format_optional(r.created_us) or "-"]
        cells += [r.outcome, "-" if r.duration_s is None else f"{r.duration_s:.2f}"]
        cells += [cell(r) for _, cell in columns]
        cells.append(" ".join(stage_cell(s) for s in stages))
        rows.append(cells)
    headers = ["namespace/name", *(["node", "created"] if wide else []), "outcome",
               "total s", *(header for header, _ in columns),
               "stages (s)" if wide else "slowest stages (s)"]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    name_width, stage_width = _fit(widths, width - 2 * (len(headers) - 1), len(columns))
    table = Table(title=f"{len(records)} pods", box=None, padding=(0, 1), pad_edge=False,
                  header_style="bold underline")
    table.add_column(headers[0], no_wrap=True, width=name_width)
    for i, header in enumerate(headers[1:-1], 1):
        table.add_column(header, no_wrap=True, width=widths[i], overflow="ellipsis",
                         justify="right" if header == "total s" else "left")
    table.add_column(headers[-1], overflow="fold", width=stage_width)
    for row in rows:
        table.add_row(middle_cut(row[0], name_width), *row[1:])
    return table


def _fit(widths: list[int], room: int, results: int) -> tuple[int, int]:
    """Fit the columns into ``room`` characters: the name and the stages get what the
    others leave, but at least 18 and 22; past that the result columns (the last
    ``results`` before the stages) are cut, longest first, down to 8. Changes ``widths``
    in place; returns the name's and the stages' widths."""
    name_min, stage_min, result_min = 18, 22, 8
    first = len(widths) - 1 - results
    while (sum(widths[1:-1]) + min(widths[0], name_min) + stage_min > room
           and max(widths[first:-1], default=0) > result_min):
        longest = max(range(first, len(widths) - 1), key=lambda i: widths[i])
        widths[longest] -= 1
    rest = room - sum(widths[1:-1])
    name = min(widths[0], max(12, rest - stage_min))
    return name, max(rest - name, 16)
