"""The exit status of a run, decided in one place from what the run counted.

====  ==============================================================================
code  meaning
====  ==============================================================================
0     all good: records were read, bad records (if any) within the limits, nothing lost
1     nothing readable (a missing, empty or binary input: no record at all) or a fatal
      error
2     usage or configuration error (reported before any record is read)
3     data lost: bad records over the limit (``--max-bad``, ``--max-bad-ratio``), an
      input file that could not be read to its end (unreadable, truncated or corrupt
      ``.gz``), or pod records a sink could not deliver
====  ==============================================================================

Sinks report what they could not deliver by a ``lost`` attribute (an int, pod records
dropped for good; absent means none): :func:`sink_losses` sums it over a run's sinks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OK = 0
FAILED = 1
USAGE = 2
DATA_LOST = 3

DEFAULT_MAX_BAD_RATIO = 0.01
"""Bad records allowed, as a share of every record read (bad ones included): 1%."""

LOST_INPUT_REASONS = frozenset({"unreadable_file", "corrupt_gzip"})
"""Bad-record reasons that mean the rest of an input file was not read."""

EPILOG = """exit status:
  0  all good
  1  nothing readable (missing, empty or binary input: no record at all) or a fatal error
  2  usage or configuration error
  3  data lost: bad records over --max-bad / --max-bad-ratio, an input file not read to its
     end (unreadable, truncated or corrupt .gz), or pod records a sink could not deliver"""


@dataclass(frozen=True)
class BadLimits:
    """How many bad records a run may meet and still exit 0: at most ``max_bad`` (None:
    no count limit) and at most ``max_bad_ratio`` of all records read."""

    max_bad: int | None = None
    max_bad_ratio: float = DEFAULT_MAX_BAD_RATIO


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run counted: ``records`` read (good ones, decoded or not), ``bad``
    records by reason, and pod records the sinks ``lost``."""

    records: int
    bad: dict[str, int]
    lost: int = 0


def sink_losses(sinks: Iterable[object]) -> int:
    """Pod records the sinks could not deliver (each sink's ``lost``, if it has one)."""
    return sum(int(getattr(sink, "lost", 0) or 0) for sink in sinks)


def exit_code(outcome: RunOutcome, limits: BadLimits = BadLimits()) -> tuple[int, str]:
    """The exit status of a run and, when not 0, why (one line for stderr)."""
    bad = sum(outcome.bad.values())
    if outcome.records == 0:
        return FAILED, "nothing readable: no audit record in the input"
    if outcome.lost:
        return DATA_LOST, f"data lost: {outcome.lost} pod record(s) not delivered by a sink"
    files = sum(n for reason, n in outcome.bad.items() if reason in LOST_INPUT_REASONS)
    if files:
        return DATA_LOST, f"data lost: {files} input file(s) not read to their end"
    if limits.max_bad is not None and bad > limits.max_bad:
        return DATA_LOST, f"{bad} bad record(s), more than --max-bad {limits.max_bad}"
    ratio = bad / (outcome.records + bad)
    if ratio > limits.max_bad_ratio:
        return DATA_LOST, (f"{bad} bad record(s), {ratio:.2%} of the input, more than "
                           f"--max-bad-ratio {limits.max_bad_ratio:g}")
    return OK, ""
