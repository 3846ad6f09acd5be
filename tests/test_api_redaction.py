"""Secrets never leave the service: a log whose Pods carry env values, secret references,
tokens in annotations and arguments, a Secret with data, and Event messages quoting a
password and a bearer token is replayed by ``lunettes serve``; no secret value appears in
any API answer, and the quoted ones come out as ``<redacted>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
from api_server import sample_lines, serve

from lunettes.model.redact import REDACTED, redact, redact_text

SECRETS = ["env-VALUE-s3cr3t", "annotation-T0KEN-value", "args-PASSW0RD-value",
           "c2VjcmV0LWRhdGEtdmFsdWU=", "hunter2-LEAK", "eyJhbGciOiJIUzI1NiJ9"]
QUOTED = (" DB_PASSWORD=hunter2-LEAK; Authorization: Bearer "
          "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")


def _spec_with_secrets(spec: dict[str, Any]) -> None:
    for container in spec.get("containers") or []:
        container["env"] = [
            {"name": "DB_PASSWORD", "value": "env-VALUE-s3cr3t"},
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "app-creds",
                                                               "key": "api-key"}}},
        ]
        container["envFrom"] = [{"secretRef": {"name": "app-env"}}]
        container["args"] = ["--password=args-PASSW0RD-value"]
    spec.setdefault("volumes", []).append({"name": "creds",
                                           "secret": {"secretName": "app-creds"}})


def _with_secrets(lines: list[bytes]) -> list[bytes]:
    out = []
    quoted = 0
    for line in lines:
        event = orjson.loads(line)
        ref = event.get("objectRef") or {}
        for key in ("requestObject", "responseObject"):
            body = event.get(key)
            if not isinstance(body, dict):
                continue
            if ref.get("resource") == "pods" and event.get("verb") == "create":
                body.setdefault("metadata", {}).setdefault("annotations", {})[
                    "example.com/token"] = "annotation-T0KEN-value"
                if isinstance(body.get("spec"), dict):
                    _spec_with_secrets(body["spec"])
            if body.get("kind") == "Event" and body.get("reason") in (
                    "Unhealthy", "FailedPostStartHook", "BackOff"):
                body["message"] = str(body.get("message", "")) + QUOTED
                quoted += 1
        out.append(orjson.dumps(event) + b"\n")
    assert quoted > 10
    secret = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
              "auditID": "5ec7e7a0-0000-4000-8000-000000000001", "stage": "ResponseComplete",
              "requestURI": "/api/v1/namespaces/shop/secrets", "verb": "create",
              "user": {"username": "kubernetes-admin"},
              "objectRef": {"resource": "secrets", "namespace": "shop", "name": "app-creds",
                            "apiVersion": "v1"},
              "responseStatus": {"code": 201},
              "requestObject": {"kind": "Secret", "apiVersion": "v1",
                                "metadata": {"name": "app-creds", "namespace": "shop"},
                                "data": {"api-key": "c2VjcmV0LWRhdGEtdmFsdWU="}},
              "requestReceivedTimestamp": "2026-01-01T00:00:01.000000Z",
              "stageTimestamp": "2026-01-01T00:00:01.001000Z"}
    return [orjson.dumps(secret) + b"\n", *out]


def test_redact_text() -> None:
    assert redact_text("probe said password=abc123 and token: xyz") == \
        f"probe said password={REDACTED} and token: {REDACTED}"
    assert redact_text("Authorization: Bearer abcdefgh12345") == \
        f"Authorization: Bearer {REDACTED}"
    assert redact_text('{"api_key": "k-123"}') == f'{{"api_key": "{REDACTED}"}}'
    assert redact_text("https://user:pw@registry.example/x") == \
        f"https://{REDACTED}@registry.example/x"
    for kept in ('secret "app-creds" not found',
                 "couldn't find key TOKEN in Secret shop/app-creds",
                 'Failed to pull image "r.example/a:1": unauthorized: authentication required',
                 "Back-off pulling image"):
        assert redact_text(kept) == kept
    assert redact({"requestObject": {"a": 1}, "env": [1], "m": "token=x"}) == {
        "m": f"token={REDACTED}"}


def test_no_secret_value_in_any_api_answer(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"".join(_with_secrets(sample_lines())))
    assert all(s.encode() in log.read_bytes() for s in SECRETS)
    with serve([str(log), "--store", str(tmp_path / "store.db")], tmp_path) as base, \
            httpx.Client(base_url=base, timeout=10) as client:
        bodies: list[str] = []

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            bodies.append(response.text)
            return response.json() if "json" in response.headers["content-type"] else None

        cursor = None
        uids: list[tuple[str, str, str]] = []
        while True:
            page = get("/api/v1/pods", limit=100, **({"cursor": cursor} if cursor else {}))
            uids.extend((p["uid"], p["namespace"], p["name"]) for p in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(uids) == 300
        for uid, namespace, name in uids:
            for suffix in ("", "/stages", "/diagnosis", "/slo", "/trace"):
                get(f"/api/v1/pods/{uid}{suffix}")
            get(f"/api/v1/namespaces/{namespace}/pods/{name}/incarnations")
        for path in ("/api/v1/slo/summary", "/api/v1/reasons", "/api/v1/info",
                     "/openapi.json", "/metrics", "/healthz", "/readyz"):
            get(path)
        text = "\n".join(bodies)
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, leaked
        for word in ("requestObject", "responseObject", "secretKeyRef", "envFrom"):
            assert word not in text, word
        assert f"DB_PASSWORD={REDACTED}" in text and f"Bearer {REDACTED}" in text
