"""Decode late: records held as raw lines through dedupe and the reorder window are decoded
when the window releases them, just before the fold."""

from __future__ import annotations

from collections.abc import Iterator

from lunettes.config.errors import Section
from lunettes.model.audit import REFUSED_STAGE, AuditRecord
from lunettes.processors.base import RECORDS, Run, Stateless
from lunettes.registry import BuildContext
from lunettes.sources.decode import decode_line
from lunettes.sources.errors import BadRecord

_FILLED = tuple(name for name in AuditRecord.__slots__ if name not in ("origin", "position"))


def _decode(record: AuditRecord, raw: bytes, run: Run, counted: bool) -> AuditRecord | None:
    """The record of an undecoded record's line; None when it does not decode: counted in
    ``run.bad`` as the source would have counted it (and no longer as a record read, when
    the clock ``counted`` it), the record marked refused (:data:`REFUSED_STAGE`)."""
    try:
        out = decode_line(raw, record.origin)
    except BadRecord as exc:
        run.bad.add(exc.reason, record.origin, str(exc), raw)
    except ValueError as exc:
        run.bad.add("invalid_json", record.origin, str(exc), raw)
    else:
        out.position = record.position
        record.undecoded = None  # decided: what still holds it (dedupe) knows it decodes
        return out
    record.stage, record.undecoded = REFUSED_STAGE, None
    if counted:
        run.stats["records"] -= 1
    return None


def verify(record: AuditRecord, run: Run, counted: bool = True) -> bool:
    """False when the record's line does not decode (then counted and marked, see
    :func:`_decode`), or did not before; an undecoded record that decodes is decoded in
    place. For the rare records whose fate must be known before their release: a second
    copy of a request, a late record, a quarantined one."""
    raw = record.undecoded
    if raw is None:
        return record.stage is not REFUSED_STAGE
    out = _decode(record, raw, run, counted)
    if out is None:
        return False
    for name in _FILLED:
        setattr(record, name, getattr(out, name))
    return True


class Decode(Stateless):
    """Processor ``decode``: decodes the records a source left as raw lines
    (``record.undecoded``); decoded records pass, refused ones (see :func:`verify`) are dropped.

    Sources leave final records undecoded only when the chain has this processor (see
    :attr:`~lunettes.registry.BuildContext.decode_late`): after the reorder window, the
    window and dedupe hold and compare bytes (~1.6 KB a line rather than its decoded
    bodies), and only the records that are folded are decoded, as they are folded. The
    result is the same as decoding at the source, bad lines included: a line that does not
    decode is counted as bad, not as a record, a duplicate or a late record, and a good
    copy of its request after it counts in its place.
    """

    writes = RECORDS

    def __init__(self, name: str = "decode") -> None:
        self.name = name

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Decode:
        section.check_unknown()
        return cls(key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        for record in items:
            raw = record.undecoded
            if raw is None:
                if record.stage is not REFUSED_STAGE:
                    yield record
                continue
            out = _decode(record, raw, run, True)
            if out is not None:
                yield out
