"""What never leaves the service: audit bodies, and secrets in any text.

Pod records hold no request or response bodies and no spec values (env, volumes, args):
only names, times, reasons and messages. Messages come from the cluster (Event messages,
container termination messages) and can quote anything a program printed, so every
string of an answer passes :func:`redact` on the way out:

- keys that would carry bodies or spec values (``requestObject``, ``responseObject``,
  ``env``, ``envFrom``, ``args``, ``command``, ``data``, ``stringData``, ...) are dropped,
  wherever they appear;
- ``Bearer``/``Basic`` credentials, JSON Web Tokens, passwords in URLs and
  ``key=value`` / ``key: value`` pairs whose key names a secret (password, token,
  secret, api key, credential, ...) have their value replaced by ``<redacted>``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DROPPED_KEYS", "REDACTED", "redact", "redact_text"]

REDACTED = "<redacted>"
DROPPED_KEYS = frozenset({
    "requestObject", "responseObject", "env", "envFrom", "args", "command", "data",
    "stringData", "binaryData", "annotations", "spec",
})

_SECRET_KEY = re.compile(r"(?i)pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|"
                         r"access[_-]?key|private[_-]?key|credential")
_MAYBE = re.compile(r"(?i)bearer|basic|eyJ|@|pass|pwd|secret|token|key|credential")
"""A cheap first look: most strings (names, times, ordinary messages) have none of these."""
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{REDACTED}@"),
)
_KEY_VALUE = re.compile(r"([\w.-]+)([\"']?\s*[=:]\s*[\"']?)([^\s\"',;&}]+)")


def _key_value(match: re.Match[str]) -> str:
    key, sep, value = match.groups()
    if value == REDACTED or not _SECRET_KEY.search(key):
        return match.group(0)
    return f"{key}{sep}{REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with secret-looking values replaced by ``<redacted>``."""
    if not _MAYBE.search(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _KEY_VALUE.sub(_key_value, text)


def redact(value: Any) -> Any:
    """A copy of a JSON-ready value with body/spec keys dropped and strings redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if k not in DROPPED_KEYS}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
