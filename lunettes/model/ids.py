"""Identity that survives replays: trace, span and document ids derived from the pod UID."""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6c756e65-7474-6573-2d70-6f642d756964")


def derive_uid(*parts: str) -> str:
    """A stable UUID for a Pod whose real UID the log never showed."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def trace_id(uid: str) -> bytes:
    """The 16-byte OpenTelemetry trace id of a Pod: its UID's 128 bits."""
    try:
        return uuid.UUID(uid).bytes
    except ValueError:
        return uuid.uuid5(_NAMESPACE, uid).bytes


def span_id(uid: str, stage: str, instance: str = "") -> bytes:
    """The 8-byte span id of one stage instance of a Pod, never all zeros."""
    digest = hashlib.sha256(f"{uid}\x00{stage}\x00{instance}".encode()).digest()
    return digest[:8] if any(digest[:8]) else b"\x00" * 7 + b"\x01"
