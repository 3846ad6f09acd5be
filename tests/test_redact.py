"""lunettes.model.redact: every shape of the catalogue is redacted, ordinary diagnostic text
of the bundled sample and the real captures is left exactly as it was."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from secret_shapes import SHAPES

import lunettes
from lunettes.model.redact import _MAYBE, REDACTED, _maybe, redact, redact_document, redact_text

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"
SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"


@pytest.mark.parametrize(("name", "message", "secret"), SHAPES, ids=[s[0] for s in SHAPES])
def test_each_secret_shape_is_redacted(name: str, message: str, secret: str) -> None:
    out = redact_text(message)
    assert secret not in out and REDACTED in out
    assert out[:4] == message[:4]  # the text before the secret stays


def test_what_surrounds_a_secret_stays() -> None:
    assert redact_text("probe said password=abc123 and token: xyz") == \
        f"probe said password={REDACTED} and token: {REDACTED}"
    assert redact_text("dial redis://:pw@redis:6379/0: refused") == \
        f"dial redis://{REDACTED}@redis:6379/0: refused"
    assert redact_text('login password="two words" refused') == \
        f'login password="{REDACTED}" refused'
    assert redact_text("app --password X --verbose") == f"app --password {REDACTED} --verbose"


def test_names_and_prose_around_secret_words_stay() -> None:
    for kept in ('secret "app-creds" not found',
                 "couldn't find key TOKEN in Secret shop/app-creds",
                 'MountVolume.SetUp failed for volume "secret-vol" : secret "x" not found',
                 'Failed to pull image "r.example/a:1": unauthorized: authentication required',
                 "failed to fetch anonymous token: unexpected status from GET request",
                 "Back-off pulling image",
                 'image "r.example/app@sha256:' + "ab12" * 16 + '"'):
        assert redact_text(kept) == kept


def test_structured_values_drop_bodies_and_redact_strings() -> None:
    assert redact({"requestObject": {"a": 1}, "env": [1], "m": "token=x", "n": [1, None]}) == {
        "m": f"token={REDACTED}", "n": [1, None]}


def test_env_entries_of_secret_names_quoted_as_json_are_redacted() -> None:
    assert redact_text('"env":[{"name":"DB_PASSWORD","value":"hunter2"},'
                       '{"name":"PATH","value":"/bin"}]') == \
        f'"env":[{{"name":"DB_PASSWORD","value":"{REDACTED}"}},{{"name":"PATH","value":"/bin"}}]'


def test_a_document_keeps_its_shape_with_its_secrets_replaced() -> None:
    doc = {"kind": "Pod", "spec": {"containers": [{"name": "app", "args": ["--token=abc"],
                                                   "env": [{"name": "API_KEY", "value": "k1"},
                                                           {"name": "MODE", "value": "x"}]}]},
           "data": {"tls.key": "c2VjcmV0"}, "password": "pw", "port": 8080,
           "message": "dial redis://:pw@r:6379"}
    assert redact_document(doc) == {
        "kind": "Pod",
        "spec": {"containers": [{"name": "app", "args": [f"--token={REDACTED}"],
                                 "env": [{"name": "API_KEY", "value": REDACTED},
                                         {"name": "MODE", "value": "x"}]}]},
        "data": {"tls.key": REDACTED}, "password": REDACTED, "port": 8080,
        "message": f"dial redis://{REDACTED}@r:6379"}
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    out = redact_document({"a": deep}, max_depth=3)
    assert out == {"a": [["<nested too deep>"]]}


def _messages(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("message", "note") and isinstance(item, str):
                yield item
            else:
                yield from _messages(item)
    elif isinstance(value, list):
        for item in value:
            yield from _messages(item)


def _documents() -> Iterator[Any]:
    with gzip.open(SAMPLE) as f:
        yield from (orjson.loads(line) for line in f)
    for path in sorted(REAL.rglob("*")):
        if path.suffix == ".yaml":
            yield from yaml.safe_load_all(path.read_text())
        elif path.suffix == ".json":
            yield orjson.loads(path.read_bytes())
        elif ".jsonl" in path.name:
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else \
                path.read_bytes()
            yield from (orjson.loads(line) for line in data.splitlines() if line.strip())


def test_real_and_simulated_messages_are_unchanged() -> None:
    """Every message and note of the sample (the simulator's upstream texts) and of the
    real captures: none holds a secret, so redaction must leave each as it is."""
    assert REAL.is_dir(), f"{REAL} is missing (../shared/data/real)"
    messages = {m for doc in _documents() for m in _messages(doc)}
    assert len(messages) > 1500
    changed = [m for m in messages if redact_text(m) != m]
    assert not changed, changed[:5]


def test_the_fast_first_look_finds_what_the_one_expression_finds() -> None:
    """The first look of redact_text (its words in the lowered text and the run of 40,
    for ASCII) answers as its one case-insensitive expression on every message of the
    sample and the real captures, the catalogue's secrets, and non-ASCII case folds."""
    texts = {m for doc in _documents() for m in _messages(doc)}
    texts |= {message for _, message, _ in SHAPES}
    texts |= {"BEARER x", "Token", "no secret here", "\u212aey=1", "pa\u017fs", "\u0130d",
              "é key", "x" * 39, "A" * 40, "a/b+" * 10}
    assert len(texts) > 1500
    wrong = [t for t in texts if _maybe(t) != (_MAYBE.search(t) is not None)]
    assert not wrong, wrong[:5]
