"""Secrets never enter a pod record: one redaction, applied where texts enter it.

Pod records hold no request or response bodies and no spec values (env, volumes, args):
only names, times, reasons and messages. Messages come from the cluster (Event messages,
Pod status and container state messages, a rejected create's error) and can quote anything
a program printed, so the folder passes each of them through :func:`redact_text` as it
builds the Pod's HyperEvents (:mod:`lunettes.processors.fold`,
:mod:`lunettes.processors.bodies`): nothing downstream (store, JSON lines, OTLP,
Elasticsearch, metrics, logs, the API) ever holds the secret. The API passes its answers
through :func:`redact` once more, for stores written before this existed.

The catalogue (each shape has a test in ``tests/test_redact.py``), every match replaced by
``<redacted>``:

- values after a secret-like name: ``key=value``, ``key: value``, ``"key": "value"``,
  ``--key value``, ``--key=value``, where the name holds password/passwd/pwd/passphrase,
  secret, token, credential, api key, access key, private key, account key, client secret,
  or ends in ``key`` (``STRIPE_KEY``, ``AccountKey``), or is ``auth``/``sig``; a quoted
  value is redacted up to its closing quote (``password="two words"``); after ``key:`` a
  lowercase word followed by more words is prose and kept (containerd's "failed to fetch
  anonymous token: unexpected status");
- credentials in URLs (``redis://:pw@``, ``https://user:pw@``);
- ``Bearer``/``Basic`` credentials and JSON Web Tokens (service-account tokens are JWTs);
- PEM blocks (private keys of any kind, certificates), to their END line or the text's end;
- cloud and service keys by their shape: AWS access key ids (``AKIA``...) and 40-character
  secret keys, Google API keys (``AIza``...) and OAuth tokens (``ya29.``...), GitHub tokens
  (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), Slack tokens
  (``xox?-``) and webhooks, Stripe keys (``sk_live_``...), npm tokens;
- the ``data``/``stringData`` of a Kubernetes Secret quoted as JSON;
- the value of an env entry of a secret-like name quoted as JSON
  (``{"name": "DB_PASSWORD", "value": "..."}``).

In structured values (:func:`redact`), keys that would carry bodies or spec values
(``requestObject``, ``responseObject``, ``env``, ``envFrom``, ``args``, ``command``,
``data``, ``stringData``, ...) are dropped wherever they appear. :func:`redact_document`
keeps a document's shape instead (for a dead-letter file, where the bad record is the
point): every string redacted, and the values of secret-like keys, of env entries with a
secret-like name and of ``data``/``stringData``/``binaryData`` replaced.

Ordinary diagnostic text (image names and digests, registry and scheduler messages, volume
and Secret *names*) is left as it is: ``tests/test_redact.py`` checks every message of the
bundled sample and the real captures.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["DROPPED_KEYS", "REDACTED", "redact", "redact_document", "redact_text"]

REDACTED = "<redacted>"
DROPPED_KEYS = frozenset({
    "requestObject", "responseObject", "env", "envFrom", "args", "command", "data",
    "stringData", "binaryData", "annotations", "spec",
})

_NAME = (r"pass(?:word|wd|phrase)?|pwd|secret|token|credential|api[_-]?key|access[_-]?key|"
         r"private[_-]?key|account[_-]?key|client[_-]?secret")
_WORDS = (r"bearer|basic|eyJ|@|pass|pwd|secret|token|key|credential|auth|sig=|BEGIN|AKIA|"
          r"ASIA|AIza|ya29\.|gh[pousr]_|github_pat_|xox|[rs]k_(?:live|test)_|npm_|"
          r"hooks\.slack|data")
_MAYBE = re.compile(rf"(?i){_WORDS}|[A-Za-z0-9/+]{{40}}")
"""A cheap first look: most strings (names, times, ordinary messages) have none of these."""
_MAYBE_WORD, _MAYBE_RUN = re.compile(_WORDS.lower()), re.compile(r"[A-Za-z0-9/+]{40}")
""":data:`_MAYBE` in two parts for ASCII text, several times faster: its words in lower
case (searched in the lowered text), and its run of 40 characters."""


_TOKEN_SHAPES = re.compile("|".join((
    r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|.*)",
    r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\bya29\.[0-9A-Za-z_-]{10,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
    r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{10,}",
    r"\bnpm_[A-Za-z0-9]{30,}",
    # an AWS secret access key: 40 characters of base64 with both cases and a digit
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
    r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
)), re.DOTALL)
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]+@")
_SECRET_DATA = re.compile(r'("(?:data|stringData)"\s*:\s*)\{[^{}]*\}')
_ENV_VALUE = re.compile(
    rf'(?i)("name"\s*:\s*"[^"]*(?:{_NAME})[^"]*"\s*,\s*"value"\s*:\s*)"[^"]*"?')
_VALUE = r"(?P<value>\"[^\"]*\"?|'[^']*'?|[^\s\"',;&}\]]+)"
_KEY_VALUE = re.compile(
    rf"(?i)(?<![\w.-])(?P<key>[\w.-]*(?:{_NAME})[\w.-]*|[\w.-]*key|auth|sig)"
    rf"(?P<sep>[\"']?(?:\s*=|:)\s*){_VALUE}")
_FLAG = re.compile(rf"(?i)(?<![\w-])(?P<key>--?[\w.-]*(?:{_NAME})[\w.-]*)(?P<sep>=|\s+)"
                   + _VALUE)

_PROSE = re.compile(r" [a-z]")
"""After a ``key: word``, more words: the colon ended a phrase, not a name."""


def _key_value(match: re.Match[str]) -> str:
    key, sep, value = match.group("key", "sep", "value")
    if value.startswith(REDACTED):
        return match.group(0)
    if ":" in sep and value.isalpha() and value.islower() and _PROSE.match(
            match.string, match.end()):
        return match.group(0)  # "failed to fetch anonymous token: unexpected status ..."
    if value[:1] in "\"'":
        closing = value[0] if len(value) > 1 and value[-1] == value[0] else ""
        return f"{key}{sep}{value[0]}{REDACTED}{closing}"
    return f"{key}{sep}{REDACTED}"


def _maybe(text: str) -> bool:
    """True when :data:`_MAYBE` finds something in ``text``."""
    if text.isascii():
        return bool(_MAYBE_WORD.search(text.lower()) or _MAYBE_RUN.search(text))
    return _MAYBE.search(text) is not None


def redact_text(text: str) -> str:
    """``text`` with every secret of the catalogue replaced by ``<redacted>``. The
    answers for short texts are remembered (messages repeat across Pods: "Started
    container app", an image pull's)."""
    return _redact_short(text) if len(text) <= _SHORT else _redact(text)


_SHORT = 1024


@lru_cache(maxsize=4096)
def _redact_short(text: str) -> str:
    return _redact(text)


def _redact(text: str) -> str:
    if not _maybe(text):
        return text
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _AUTH_HEADER.sub(rf"\1\2{REDACTED}", text)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    text = _SECRET_DATA.sub(rf"\1{REDACTED}", text)
    text = _ENV_VALUE.sub(rf'\1"{REDACTED}"', text)
    text = _FLAG.sub(_key_value, text)
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


_SECRET_KEY = re.compile(rf"(?i)[\w.-]*(?:{_NAME})[\w.-]*|[\w.-]*key|auth|sig")
_DATA_KEYS = frozenset({"data", "stringData", "binaryData"})


def redact_document(value: Any, max_depth: int = 200) -> Any:
    """A copy of a decoded JSON document, shape kept, with every string passed through
    :func:`redact_text` and the values of secret-like keys (``password``, ``apiKey``...),
    of env entries named like secrets (``{"name": "DB_PASSWORD", "value": ...}``) and of
    ``data``/``stringData``/``binaryData`` objects replaced by ``<redacted>``; objects and
    arrays nested deeper than ``max_depth`` become ``"<nested too deep>"`` (orjson writes
    254 levels at most). Iterative: any depth."""
    root: list[Any] = [None]
    stack: list[tuple[Any, list[Any] | dict[str, Any], Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, holder, key, depth = stack.pop()
        if isinstance(item, str):
            holder[key] = redact_text(item)
        elif isinstance(item, (dict, list)) and depth >= max_depth:
            holder[key] = "<nested too deep>"
        elif isinstance(item, dict):
            out: dict[str, Any] = {}
            holder[key] = out
            secret_env = isinstance(item.get("name"), str) and "value" in item and \
                _SECRET_KEY.fullmatch(item["name"]) is not None
            for k, v in item.items():
                k = str(k)
                if (k in _DATA_KEYS and isinstance(v, dict)) or (secret_env and k == "value"):
                    out[k] = REDACTED if not isinstance(v, dict) else dict.fromkeys(v, REDACTED)
                elif _SECRET_KEY.fullmatch(k) and isinstance(v, (str, int, float)) \
                        and not isinstance(v, bool):
                    out[k] = REDACTED
                else:
                    out[k] = None
                    stack.append((v, out, k, depth + 1))
        elif isinstance(item, list):
            copy: list[Any] = [None] * len(item)
            holder[key] = copy
            stack.extend((v, copy, i, depth + 1) for i, v in enumerate(item))
        else:
            holder[key] = item
    return root[0]
