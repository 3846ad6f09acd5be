"""Typed reads of decoded JSON/YAML bodies: the one place raw audit bodies are indexed.

Each reader returns the value when it has the expected type, the empty value when it is
absent or null, and raises :class:`~lunettes.sources.errors.BadRecord` naming the path
(``wrong_type:<path>``) for any other type: a record with a mistyped field is counted as
bad, never half-read. Readers never recurse into values they do not return, so a nesting
of any depth costs nothing. Callers read everything they need before they change any
state, so a record is either used whole or refused whole.
"""

from __future__ import annotations

import re
from typing import Any

from lunettes.sources.errors import BadRecord

__all__ = ["EMPTY", "flag", "integer", "objects", "optional_integer", "scalar_map",
           "sub", "text", "wrong_type"]

EMPTY: dict[str, Any] = {}
"""The mapping of an absent object (read-only)."""
_INT64 = re.compile(r"-?[0-9]{1,19}")
_INT_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_SCALARS = (str, int, float, bool, type(None))


def wrong_type(path: str, expected: str, value: Any) -> BadRecord:
    """The problem of a value of the wrong type at ``path``."""
    return BadRecord(f"wrong_type:{path}", f"expected {expected}, got {type(value).__name__}")


def sub(body: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """The object at ``key`` (:data:`EMPTY` when absent or null)."""
    value = body.get(key)
    if type(value) is dict:
        return value
    if value is None:
        return EMPTY
    raise wrong_type(path, "an object", value)


def text(body: dict[str, Any], key: str, path: str) -> str:
    """The string at ``key`` ("" when absent or null)."""
    value = body.get(key)
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise wrong_type(path, "a string", value)


def integer(body: dict[str, Any], key: str, path: str) -> int:
    """The integer at ``key`` (0 when absent or null; booleans are not integers)."""
    value = optional_integer(body, key, path)
    return 0 if value is None else value


def _wide(value: int) -> bool:
    """True for an integer beyond what orjson reads as one (int64 and uint64: it reads
    wider ones as floats, msgspec as integers): both decoders' values then read alike."""
    return not _INT_MIN <= value <= _UINT64_MAX


def optional_integer(body: dict[str, Any], key: str, path: str) -> int | None:
    """The integer at ``key``, None when absent or null. A string of decimal digits is
    read too: the protobuf JSON mapping writes 64-bit integers so (Cloud Logging).
    An integer beyond 64 bits is refused as the float orjson reads it as."""
    value = body.get(key)
    if value is None:
        return value
    if type(value) is int:
        if _wide(value):
            raise wrong_type(path, "an integer", float(value))
        return value
    if type(value) is str and _INT64.fullmatch(value):
        return int(value)
    raise wrong_type(path, "an integer", value)


def flag(body: dict[str, Any], key: str, path: str) -> bool:
    """The boolean at ``key`` (False when absent or null)."""
    value = body.get(key)
    if type(value) is bool:
        return value
    if value is None:
        return False
    raise wrong_type(path, "a boolean", value)


def objects(body: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    """The array of objects at ``key`` (empty when absent or null)."""
    value = body.get(key)
    if value is None:
        return []
    if type(value) is not list:
        raise wrong_type(path, "an array", value)
    for item in value:
        if type(item) is not dict:
            raise wrong_type(f"{path}[]", "an object", item)
    return value


def scalar_map(body: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """The object at ``key`` whose values are all scalars (labels, resource quantities:
    strings, or numbers as a client may send them); integers beyond 64 bits as floats."""
    value = sub(body, key, path)
    wide = False
    for item in value.values():
        if not isinstance(item, _SCALARS):
            raise wrong_type(f"{path}.*", "a scalar", item)
        if type(item) is int and _wide(item):
            wide = True
    if wide:  # read as orjson reads them
        return {k: float(v) if type(v) is int and _wide(v) else v for k, v in value.items()}
    return value
