"""AuditRecord: one decoded kube-apiserver audit event, only the fields lunettes uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TICK_STAGE = "lunettes:tick"
"""The stage of a clock tick (see :func:`tick`); compared by identity, never read from JSON."""
SKIPPED_STAGE = "lunettes:skipped"
"""The stage of a record left undecoded (see :func:`skipped`); compared by identity."""
REFUSED_STAGE = "lunettes:refused"
"""The stage of a record whose line did not decode when the pipeline decoded it late
(counted as bad then; dropped wherever it is held); compared by identity."""

FOLDED_VERBS: dict[str, frozenset[str]] = {
    "pods": frozenset({"create", "delete", "patch", "update"}),
    "events": frozenset({"create", "patch", "update"}),
}
"""The records that can tell anything about a Pod, by resource and verb (subresources of
``pods`` included); sources may leave every other record undecoded."""


@dataclass(slots=True)
class AuditRecord:
    """One audit event, normalised at the edge by a source.

    Times are microseconds since the epoch. ``request``/``response`` are the decoded
    requestObject/responseObject (None at Metadata level); nothing is interpreted until an
    analyzer or the folder asks for it. A record with ``undecoded`` set is not decoded yet.
    """

    audit_id: str
    stage: str
    verb: str
    received_us: int
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    api_group: str = ""
    object_uid: str = ""
    code: int = 0
    status_message: str = ""
    status_reason: str = ""
    username: str = ""
    user_agent: str = ""
    level: str = ""
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    origin: str = ""
    """Where the record was read, as ``file:line``."""
    groups: tuple[str, ...] = ()
    """The user's groups (``system:nodes`` names a kubelet whatever its user name)."""
    position: tuple[str, int] | None = None
    """Where a resumable source can read it again: ``(lane, n)`` (see
    :class:`lunettes.sources.base.Source`)."""
    raw: bytes = b""
    """The line it was read from, when the pipeline asked its source for lines
    (``keep_lines``: the API server load analysis reads them); empty otherwise."""
    undecoded: bytes | None = None
    """The line of a record left undecoded until the pipeline folds it (see
    :mod:`lunettes.processors.decode`): only ``audit_id``, ``stage``, ``received_us``,
    ``origin`` and ``position`` are set; None once decoded."""

    @property
    def succeeded(self) -> bool:
        """True when the API server accepted the request (2xx, or no status recorded)."""
        return self.code == 0 or 200 <= self.code < 300


def tick(received_us: int, origin: str = "") -> AuditRecord:
    """A clock tick: a final record of another partition's (``--workers``), carrying only
    its time and its file (as origin). It advances the audit clock (reorder window, pod
    timeouts) exactly as the record would have, and is neither counted nor folded."""
    return AuditRecord("", TICK_STAGE, "", received_us, origin=origin)


def undecoded(audit_id: str, stage: str, received_us: int, raw: bytes, origin: str = ""
              ) -> AuditRecord:
    """A final record whose line is decoded later, when the pipeline folds it: what its
    bytes told (auditID, stage, time) orders and deduplicates it until then."""
    return AuditRecord(audit_id, stage, "", received_us, origin=origin, undecoded=raw)


def skipped(received_us: int, origin: str = "") -> AuditRecord:
    """A record a source read but did not decode, since it cannot be about a Pod (see
    :data:`FOLDED_VERBS`): counted, folded never; a final stage's time (else 0) moves the
    audit clock as a :func:`tick` does."""
    return AuditRecord("", SKIPPED_STAGE, "", received_us, origin=origin)
