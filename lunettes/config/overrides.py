"""The command line's flags as overrides of pipeline.yaml's data: the one place they become
configuration.

``replay``, ``serve`` and ``analyze`` read their flags into one :class:`Overrides`
(:meth:`Overrides.from_args`: a flag a command does not have is left unset) and
:func:`apply` puts them into the sections they override:

- PATHs replace the configured ``file`` and ``follow`` sources (one ``follow`` source with
  ``--follow``, else one ``file`` source); serve's webhook flags are merged into the
  ``webhook`` source (added when absent; its spool defaults to ``./lunettes-spool``);
- ``--apiserver-load`` puts the ``requests`` processor first in ``processors``;
- ``--dead-letter`` sets ``input.dead_letter``; ``--checkpoint`` sets ``checkpoint.path``;
- ``--store`` sets ``sinks.sqlite.path`` (``--no-store`` drops every ``sqlite`` sink);
  ``--otlp-endpoint``/``--otlp-protocol``, or the OpenTelemetry environment variables when
  no ``otlp`` sink is configured, set the ``otlp`` sink.

Paths are made absolute, so that a configuration built here means the same from any
working directory.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lunettes.apiserver.processor import with_requests
from lunettes.sources.files import STDIN

__all__ = ["Overrides", "apply"]

DEFAULT_SPOOL = "lunettes-spool"
"""serve --webhook's spool directory when neither the flags nor pipeline.yaml name one."""


@dataclass(frozen=True)
class Overrides:
    """What the command line says of the configuration (unset: it says nothing)."""

    paths: list[str] = field(default_factory=list)
    follow: bool = False
    webhook: dict[str, Any] | None = None
    """serve's webhook source settings (None: no webhook flag)."""
    apiserver_load: bool = False
    dead_letter: str | None = None
    checkpoint: str | None = None
    store: str | None = None
    no_store: bool = False
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Overrides:
        """The overrides of a parsed command line (of any lunettes command)."""
        def flag(name: str) -> Any:
            return getattr(args, name, None)

        webhook: dict[str, Any] | None = None
        if flag("webhook") or flag("webhook_spool") or flag("webhook_token_file"):
            webhook = {}
            if flag("webhook_spool"):
                webhook["spool_dir"] = os.path.abspath(args.webhook_spool)
            if flag("webhook_token_file"):
                webhook["token_file"] = os.path.abspath(args.webhook_token_file)
        return cls(
            paths=[p if p == STDIN else os.path.abspath(p) for p in flag("paths") or []],
            follow=bool(flag("follow")), webhook=webhook,
            apiserver_load=bool(flag("apiserver_load")),
            dead_letter=_absolute(flag("dead_letter")), checkpoint=_absolute(flag("checkpoint")),
            store=flag("store"), no_store=bool(flag("no_store")),
            otlp_endpoint=flag("otlp_endpoint"), otlp_protocol=flag("otlp_protocol"))


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def _kind(key: Any) -> str:
    return str(key).split("/")[0]


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return dict(value) if isinstance(value, Mapping) else {}


def apply(data: Mapping[str, Any], overrides: Overrides,
          env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """pipeline.yaml's ``data`` with ``overrides`` in it (a new dict; ``data`` is left as
    it is); ``env``: the environment read for the OTLP endpoint (None: none)."""
    out = dict(data)
    out["sources"] = _sources(out, overrides)
    if overrides.apiserver_load:
        out = with_requests(out)
    if overrides.dead_letter:
        out["input"] = {**_section(out, "input"), "dead_letter": overrides.dead_letter}
    if overrides.checkpoint:
        out["checkpoint"] = {**_section(out, "checkpoint"), "path": overrides.checkpoint}
    out["sinks"] = _sinks(out, overrides, env or {})
    return out


def _sources(data: Mapping[str, Any], overrides: Overrides) -> dict[str, Any]:
    sources = _section(data, "sources")
    if overrides.paths:
        sources = {k: v for k, v in sources.items() if _kind(k) not in ("file", "follow")}
        sources["follow" if overrides.follow else "file"] = {"paths": overrides.paths}
    if overrides.webhook is not None:
        key = next((k for k in sources if _kind(k) == "webhook"), "webhook")
        section = {**(sources.get(key) or {}), **overrides.webhook}
        if not {"spool_dir", "nats"} & section.keys():
            section["spool_dir"] = os.path.abspath(DEFAULT_SPOOL)
        sources[key] = section
    return sources


def _sinks(data: Mapping[str, Any], overrides: Overrides,
           env: Mapping[str, str]) -> dict[str, Any]:
    sinks = _section(data, "sinks")
    if overrides.no_store:
        sinks = {k: v for k, v in sinks.items() if _kind(k) != "sqlite"}
    elif overrides.store:
        sinks["sqlite"] = {**(sinks.get("sqlite") or {}), "path": overrides.store}
    from_env = not any(_kind(k) == "otlp" for k in sinks) and bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if overrides.otlp_endpoint or overrides.otlp_protocol or from_env:
        otlp = dict(sinks.get("otlp") or {})
        if overrides.otlp_endpoint:
            otlp["endpoint"] = overrides.otlp_endpoint
        if overrides.otlp_protocol:
            otlp["protocol"] = overrides.otlp_protocol
        sinks["otlp"] = otlp
    return sinks
