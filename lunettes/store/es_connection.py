"""The connection keys of an Elasticsearch section and the client they build.

The sink (:mod:`lunettes.sinks.elasticsearch`), the source
(:mod:`lunettes.sources.elasticsearch`) and the API's reader
(:mod:`lunettes.api.es_store`) read the same keys (hosts, api_key, username with password
or password_file, ca_certs, verify_certs) the same way. Needs the ``elasticsearch`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch

from lunettes.config.errors import Section
from lunettes.registry import BuildContext

__all__ = ["DEFAULT_HOST", "DEFAULT_TIMEOUT_S", "client", "connection_from_config"]

DEFAULT_HOST = "http://localhost:9200"
DEFAULT_TIMEOUT_S = 30.0


def connection_from_config(section: Section, context: BuildContext) -> dict[str, Any]:
    """The connection keys of an Elasticsearch section (the sink's, the source's): hosts,
    api_key, username with password or password_file, ca_certs, verify_certs; as keyword
    arguments of :func:`client`. Problems go to ``section.problems``."""
    hosts = _hosts(section, context.env)

    api_key = section.get("api_key", None, str)
    username = section.get("username", None, str)
    password = section.get("password", None, str)
    password_file = section.get("password_file", None, str)
    if password is not None and password_file is not None:
        section.problem("password_file", "set password or password_file, not both")
    elif password_file is not None:
        path = context.config_dir / password_file
        try:
            password = path.read_text().rstrip("\r\n")
        except OSError as exc:
            section.problem("password_file", f"cannot read {path}: {exc.strerror or exc}")
    basic_auth = None
    if username is not None and password is not None:
        basic_auth = (username, password)
    elif username is not None and password_file is None:
        section.problem("username", "needs password or password_file")
    elif username is None and (password is not None or password_file is not None):
        section.problem("password" if password_file is None else "password_file",
                        "needs username")
    if api_key is not None and username is not None:
        section.problem("api_key", "use api_key or username/password, not both")

    ca_certs = section.get("ca_certs", None, str)
    if ca_certs is not None:
        ca_path = context.config_dir / ca_certs
        if not ca_path.is_file():
            section.problem("ca_certs", f"no such file: {ca_path}")
        ca_certs = str(ca_path)
    verify_certs = section.get("verify_certs", None, bool)
    if (ca_certs is not None or verify_certs is not None) and any(
            h.lower().startswith("http://") for h in hosts):
        key = "ca_certs" if ca_certs is not None else "verify_certs"
        section.problem(key, "TLS options need https:// hosts")
    return {"hosts": hosts, "api_key": api_key, "basic_auth": basic_auth,
            "ca_certs": ca_certs, "verify_certs": verify_certs}


def client(hosts: Sequence[str], *, api_key: str | None = None,
           basic_auth: tuple[str, str] | None = None, ca_certs: str | None = None,
           verify_certs: bool | None = None, request_timeout: float = DEFAULT_TIMEOUT_S,
           options: Mapping[str, Any] | None = None) -> Elasticsearch:
    """The official client for these hosts and credentials; the client's own retries are
    off (callers retry with their own backoff). ``options`` are extra client arguments."""
    kwargs: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": 0,
                              "retry_on_timeout": False}
    if api_key is not None:
        kwargs["api_key"] = api_key
    if basic_auth is not None:
        kwargs["basic_auth"] = basic_auth
    if ca_certs is not None:
        kwargs["ca_certs"] = ca_certs
    if verify_certs is not None:
        kwargs["verify_certs"] = verify_certs
    kwargs.update(options or {})
    return Elasticsearch(list(hosts), **kwargs)


def _hosts(section: Section, env: Mapping[str, str]) -> list[str]:
    value = section.get("hosts", None, (str, list))
    origin = ""
    if value is None:
        value = env.get("ELASTICSEARCH_URL") or DEFAULT_HOST
        origin = " (from ELASTICSEARCH_URL)" if env.get("ELASTICSEARCH_URL") else ""
    items = value.split(",") if isinstance(value, str) else value
    hosts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            section.problem("hosts", f"expected a URL string, got {type(item).__name__} {item!r}")
            continue
        host = item.strip()
        if not host:
            continue
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            section.problem("hosts", f"{host!r}{origin} is not an http:// or https:// URL")
            continue
        try:
            port = parts.port
        except ValueError:
            section.problem("hosts", f"{host!r}{origin} has an invalid port")
            continue
        if port is None and parts.scheme == "http":
            section.problem("hosts", f"{host!r}{origin} needs a port "
                                     f"(http://{parts.hostname}:9200)")
            continue
        hosts.append(host)
    if not hosts:
        if isinstance(value, list) and not value:
            section.problem("hosts", "must name at least one URL")
        hosts = [DEFAULT_HOST]
    return hosts
