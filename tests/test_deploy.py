"""deploy/: the compose stack, the Kubernetes manifests, the audit policy, the webhook
kubeconfig and Filebeat, checked statically (Docker and a cluster are not available where
the tests run): every file parses, refers to files that exist, names real lunettes
subcommands and options, probes paths lunettes serves, and the configuration validates.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lunettes.cli.main import build_parser, main
from lunettes.pipeline import DEFAULT_CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
GRAFANA = ROOT / "grafana"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def lunettes_args(argv: list[str]) -> Any:
    """``argv`` parsed by the real lunettes command line (unknown options fail)."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way to refuse
        raise AssertionError(f"lunettes {shlex.join(argv)}: not a valid command") from exc


def served_paths() -> dict[str, set[str]]:
    """What ``lunettes serve`` answers: path -> methods, from its app's OpenAPI schema."""
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from prometheus_client import CollectorRegistry

    from lunettes.api.app import create_app

    schema = create_app(CollectorRegistry()).openapi()
    return {path: set(ops) for path, ops in schema["paths"].items()}


# -- the audit policy ----------------------------------------------------------------------

LEVELS = {"None", "Metadata", "Request", "RequestResponse"}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
RULE_KEYS = {"level", "users", "userGroups", "verbs", "resources", "namespaces",
             "nonResourceURLs", "omitStages", "omitManagedFields"}


def policy_level(policy: dict[str, Any], verb: str, group: str, resource: str) -> str:
    """The level the API server gives a request: the first rule that matches it."""
    for rule in policy["rules"]:
        if "verbs" in rule and verb not in rule["verbs"]:
            continue
        if "resources" in rule and not any(
                gr.get("group", "") == group and resource in gr.get("resources", [resource])
                for gr in rule["resources"]):
            continue
        return str(rule["level"])
    return "None"


def test_audit_policy_is_an_audit_k8s_io_v1_policy() -> None:
    policy = load(DEPLOY / "audit-policy.yaml")
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    assert set(policy) <= {"apiVersion", "kind", "metadata", "rules", "omitStages",
                           "omitManagedFields"}
    assert set(policy.get("omitStages", [])) <= STAGES
    assert policy["rules"]
    for rule in policy["rules"]:
        assert set(rule) <= RULE_KEYS, rule
        assert rule["level"] in LEVELS, rule
        assert set(rule.get("verbs", [])) <= VERBS, rule
        assert set(rule.get("omitStages", [])) <= STAGES, rule
        for gr in rule.get("resources", []):
            assert set(gr) <= {"group", "resources", "resourceNames"}, gr
            assert all(isinstance(r, str) and r for r in gr.get("resources", [])), gr
    # What lunettes needs, and what it does not pay for.
    full = [("create", "", "pods"), ("patch", "", "pods/status"),
            ("create", "", "pods/binding"), ("create", "", "events"),
            ("patch", "", "events"), ("create", "events.k8s.io", "events"),
            ("delete", "", "pods"), ("create", "", "pods/eviction")]
    for verb, group, resource in full:
        assert policy_level(policy, verb, group, resource) == "RequestResponse", resource
    for verb, group, resource in [("get", "", "pods"), ("watch", "", "pods"),
                                  ("list", "", "events"),
                                  ("update", "coordination.k8s.io", "leases"),
                                  ("patch", "", "nodes/status")]:
        assert policy_level(policy, verb, group, resource) == "None", (verb, resource)
    assert policy_level(policy, "update", "", "secrets") == "Metadata"
    assert policy_level(policy, "create", "", "configmaps") == "Metadata"


def test_audit_webhook_kubeconfig_points_at_the_receiver(tmp_path: Path) -> None:
    config = load(DEPLOY / "audit-webhook.kubeconfig")
    assert (config["apiVersion"], config["kind"]) == ("v1", "Config")
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    current = contexts[config["current-context"]]
    assert current["cluster"] in {c["name"] for c in config["clusters"]}
    assert current["user"] in {u["name"] for u in config["users"]}
    server = next(c["cluster"]["server"] for c in config["clusters"]
                  if c["name"] == current["cluster"])
    assert server.startswith("https://")
    # the path is the one `lunettes serve --webhook` receives EventLists at
    from urllib.parse import urlsplit

    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi import FastAPI

    from lunettes.api.webhook import add_webhook
    from lunettes.sources.webhook import WebhookSource

    app = FastAPI()
    add_webhook(app, WebhookSource(tmp_path))
    assert "post" in app.openapi()["paths"][urlsplit(server).path]
    text = (DEPLOY / "audit-webhook.kubeconfig").read_text()
    assert "--audit-webhook-mode=batch" in text and "NOT USABLE" not in text


# -- the compose stack ---------------------------------------------------------------------

def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((DEPLOY / source).resolve(), target))
    return mounts


def test_compose_services_ports_and_files() -> None:
    compose = load(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"elasticsearch", "jaeger", "prometheus", "grafana", "lunettes"}
    named = set(compose.get("volumes", {}))
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond localhost"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} missing"
                assert (DEPLOY / source).resolve().is_relative_to(ROOT), source
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"

    es = services["elasticsearch"]["environment"]
    assert es["discovery.type"] == "single-node" and es["xpack.security.enabled"] == "false"
    jaeger = services["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {p.rsplit(":", 1)[1] for p in jaeger["ports"]} >= {"4317", "16686"}


def test_compose_lunettes_service_runs_a_real_command() -> None:
    compose = load(DEPLOY / "compose.yaml")
    lunettes = compose["services"]["lunettes"]
    build = lunettes["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    entrypoint, _ = dockerfile_commands()
    assert entrypoint[-1] == "lunettes"
    args = lunettes_args(lunettes["command"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    mounts = dict((target, source) for source, target in bind_mounts(lunettes))
    for path in args.paths:  # every input is mounted
        assert any(target == path or target.startswith(path.rstrip("/") + "/")
                   for target in mounts), path
    assert mounts["/etc/lunettes/pipeline.yaml"] == DEPLOY / "lunettes-config" / "pipeline.yaml"
    env = lunettes["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert lunettes["read_only"] is True

    # Prometheus scrapes this service on this port, with the rules mounted beside its config.
    prometheus = compose["services"]["prometheus"]
    prom_mounts = dict((target, source) for source, target in bind_mounts(prometheus))
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"]
                       if a.startswith("--config.file="))
    config = load(prom_mounts[config_path])
    for rule_file in config["rule_files"]:
        assert str(Path(config_path).parent / rule_file) in prom_mounts, rule_file
    targets = [t for job in config["scrape_configs"] if job["job_name"] == "lunettes"
               for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"lunettes:{args.port}"]


def test_compose_grafana_is_provisioned_from_the_repository() -> None:
    grafana = load(DEPLOY / "compose.yaml")["services"]["grafana"]
    mounts = dict((target, source) for source, target in bind_mounts(grafana))
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    providers = load(GRAFANA / "provisioning" / "dashboards" / "lunettes.yaml")["providers"]
    assert mounts[providers[0]["options"]["path"]] == GRAFANA / "dashboards"
    datasources = (GRAFANA / "provisioning" / "datasources" / "lunettes.yaml").read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", datasources))
    assert wanted and wanted <= set(grafana["environment"]), wanted
    for var in wanted:  # the URLs name services of the stack
        host = re.match(r"https?://([^:/]+)", grafana["environment"][var])
        assert host and host[1] in load(DEPLOY / "compose.yaml")["services"], var


def dockerfile_commands() -> tuple[list[str], list[str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)[1])  # type: ignore[index]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M)[1])  # type: ignore[index]
    return entrypoint, cmd


def test_dockerfile_copies_files_that_exist_and_runs_lunettes() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    extras = re.search(r"\[([\w,]+)\]'", text)
    assert extras is not None
    optional = load_pyproject()["project"]["optional-dependencies"]
    assert set(extras[1].split(",")) <= set(optional)
    assert "USER 10001" in text
    entrypoint, cmd = dockerfile_commands()
    assert entrypoint[:3] == ["tini", "-g", "--"]
    assert lunettes_args(cmd).command == "serve"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!setup.py", "!lunettes/", "!configs/",
                   "!deploy/lunettes-config/"):
        assert needed in ignore
    # /etc/lunettes is the shipped configuration, written by the installed lunettes.
    init = re.search(r"&& lunettes (init-config \S+)", text)
    assert init is not None and lunettes_args(init[1].split()).command == "init-config"


def load_pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_deploy_configuration_validates() -> None:
    """The image's configuration: configs/ with deploy/lunettes-config/pipeline.yaml."""
    assert main(["validate-config", str(K8S / "config")]) == 0
    pipeline = load(DEPLOY / "lunettes-config" / "pipeline.yaml")
    assert {"sqlite", "otlp", "elasticsearch", "prometheus"} <= set(pipeline["sinks"])
    for path in (pipeline["sinks"]["sqlite"]["path"],
                 pipeline["sinks"]["elasticsearch"]["spool_dir"]):
        assert path.startswith("/var/lib/lunettes/"), path  # the writable data volume
    assert "hosts" not in pipeline["sinks"]["elasticsearch"]  # from ELASTICSEARCH_URL
    assert "endpoint" not in pipeline["sinks"]["otlp"]  # from OTEL_EXPORTER_OTLP_ENDPOINT


# -- Kubernetes ---------------------------------------------------------------------------

API_VERSIONS = {"Namespace": "v1", "Service": "v1", "Deployment": "apps/v1"}


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = load(K8S / "kustomization.yaml")
    found = {}
    for resource in kustomization["resources"]:
        for doc in documents(K8S / resource):
            found[doc["kind"]] = doc
    return found


def test_kustomization_refers_to_files_that_exist() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    generated = kustomization["configMapGenerator"]
    files = [Path(f) for gen in generated for f in gen["files"]]
    assert {f.name for f in files} == {"pipeline.yaml", "stages.yaml", "diagnosis.yaml",
                                       "slo.yaml"}
    for file in files:
        assert (K8S / file).is_file(), file


@pytest.mark.parametrize("name", ["pipeline.yaml", "stages.yaml", "diagnosis.yaml",
                                  "slo.yaml"])
def test_kubernetes_config_files_are_the_deploy_defaults(name: str) -> None:
    """kustomize reads files under deploy/kubernetes only, so the ConfigMap's files are
    copies: of configs/, and of deploy/lunettes-config/pipeline.yaml."""
    source = (DEPLOY / "lunettes-config" if name == "pipeline.yaml"
              else DEFAULT_CONFIG_DIR) / name
    copy = K8S / "config" / name
    assert copy.read_text() == source.read_text(), (
        f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}; refresh it: "
        f"cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}")


def test_kubernetes_manifests() -> None:
    found = manifests()
    assert set(found) == set(API_VERSIONS), "no RBAC, no ServiceAccount: none is needed"
    for kind, doc in found.items():
        assert doc["apiVersion"] == API_VERSIONS[kind], kind
        assert doc["metadata"]["name"] == "lunettes"

    deployment = found["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    check_container(container)
    # root only to read the API server's 0600 log as its owner: no capability at all
    assert container["securityContext"]["runAsUser"] == 0
    check_probes_and_scrape(spec["template"], container)

    # The command: `lunettes serve --follow LOG --checkpoint FILE`, each on its volume.
    args = serve_args(container)
    assert args.follow and not args.webhook
    assert args.port in ports_of(container).values() and args.host == "0.0.0.0"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {m["name"] for m in mounts.values()} == set(volumes)
    config_mount = mounts[args.config.as_posix()]
    generator = load(K8S / "kustomization.yaml")["configMapGenerator"][0]["name"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == generator
    (log,) = args.paths
    audit_dir = Path(log).parent.as_posix()
    assert mounts[audit_dir]["readOnly"] is True
    assert volumes[mounts[audit_dir]["name"]]["hostPath"]["path"] == audit_dir
    data = Path(args.checkpoint).parent.as_posix()
    assert data == "/var/lib/lunettes"  # where pipeline.yaml puts the store and spools
    assert volumes[mounts[data]["name"]]["hostPath"]["type"] == "DirectoryOrCreate"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]

    service = found["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports_of(container))


def check_container(container: dict[str, Any]) -> None:
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["command"] == ["tini", "--", "lunettes"]


def ports_of(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def serve_args(container: dict[str, Any]) -> Any:
    """The container's command, parsed by the real lunettes command line."""
    args = lunettes_args(container["args"])
    assert args.command == "serve"
    assert args.checkpoint and args.checkpoint.startswith("/var/lib/lunettes/")
    return args


def check_probes_and_scrape(template: dict[str, Any], container: dict[str, Any],
                            scheme: str = "HTTP") -> None:
    """Probes and the scrape annotation on paths lunettes serves, on the named port."""
    served = served_paths()
    ports = ports_of(container)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert "get" in served[get["path"]] and get["port"] in ports
        assert get.get("scheme", "HTTP") == scheme
    annotations = template["metadata"]["annotations"]
    assert "get" in served[annotations["prometheus.io/path"]]
    assert int(annotations["prometheus.io/port"]) in ports.values()
    assert annotations.get("prometheus.io/scheme", "http") == scheme.lower()


def kustomize(directory: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed (.ci/run installs kubernetes-client)")
def test_kubectl_kustomize_builds(tmp_path: Path) -> None:
    """With any kubectl from Debian's (kubernetes-client 1.20, kustomize v2) on."""
    docs = kustomize(K8S)
    assert set(docs) == {"Namespace", "ConfigMap", "Service", "Deployment"}
    config_map = docs["ConfigMap"]
    assert set(config_map["data"]) == {"pipeline.yaml", "stages.yaml", "diagnosis.yaml",
                                       "slo.yaml"}
    volumes = docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
    assert all(d["metadata"].get("namespace", "lunettes") == "lunettes"
               for d in docs.values())
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lunettes"
               for d in docs.values())
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert serve_args(container).follow
    # The files of the ConfigMap, written out, are a configuration lunettes accepts.
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    assert main(["validate-config", str(tmp_path)]) == 0


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed (.ci/run installs kubernetes-client)")
def test_the_webhook_variant_receives_over_mutual_tls_with_its_checkpoint_on_a_claim(
        ) -> None:
    """deploy/kubernetes-webhook: the base patched into `lunettes serve --webhook
    --checkpoint` over mutual TLS, non-root, on any node, its data on a claim."""
    docs = kustomize(DEPLOY / "kubernetes-webhook")
    assert set(docs) == {"Namespace", "ConfigMap", "Service", "Deployment",
                         "PersistentVolumeClaim"}
    assert all(d["metadata"].get("namespace", "lunettes") == "lunettes"
               for d in docs.values())
    template = docs["Deployment"]["spec"]["template"]
    pod = template["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    (container,) = pod["containers"]
    check_container(container)
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["runAsUser"] != 0
    # the probes and Prometheus need no client certificate (only the webhook does)
    check_probes_and_scrape(template, container, scheme="HTTPS")
    args = serve_args(container)
    assert args.webhook and not args.follow and not args.paths
    assert args.port in ports_of(container).values() and args.host == "0.0.0.0"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {m["name"] for m in mounts.values()} == set(volumes)
    assert volumes[mounts[args.config.as_posix()]["name"]]["configMap"]["name"] == (
        docs["ConfigMap"]["metadata"]["name"])
    data = volumes[mounts["/var/lib/lunettes"]["name"]]
    assert data["persistentVolumeClaim"]["claimName"] == (
        docs["PersistentVolumeClaim"]["metadata"]["name"])
    assert args.webhook_spool.startswith("/var/lib/lunettes/")
    tls_files = {args.tls_cert, args.tls_key, args.tls_client_ca}
    (tls_dir,) = {Path(f).parent.as_posix() for f in tls_files}
    assert "secret" in volumes[mounts[tls_dir]["name"]] and mounts[tls_dir]["readOnly"]
    service = docs["Service"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports_of(container))
    kubeconfig = load(DEPLOY / "audit-webhook.kubeconfig")
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://") and f":{args.port}/audit/webhook" in server


# -- Filebeat ------------------------------------------------------------------------------

def test_filebeat_ships_the_audit_log_through_the_ingest_pipeline() -> None:
    text = (DEPLOY / "filebeat" / "filebeat.yml").read_text()
    config = yaml.safe_load(text)
    (audit,) = config["filebeat.inputs"]
    assert "/var/log/kubernetes/audit/*.log" in audit["paths"]
    ndjson = next(p["ndjson"] for p in audit["parsers"] if "ndjson" in p)
    target = ndjson["target"]
    pipeline_name = config["output.elasticsearch"]["pipeline"]
    assert re.search(rf"_ingest/pipeline/{pipeline_name}\b", text)  # the command loading it
    pipeline = json.loads((DEPLOY / "filebeat" / "ingest-pipeline.json").read_text())
    dates = [p["date"] for p in pipeline["processors"] if "date" in p]
    assert dates == [{**dates[0], "field": f"{target}.requestReceivedTimestamp",
                      "target_field": "@timestamp"}]
    ids = [p["set"] for p in pipeline["processors"]
           if "set" in p and p["set"]["field"] == "_id"]
    assert ids and f"{target}.auditID" in ids[0]["value"]
    for processor in pipeline["processors"]:
        for options in processor.values():
            for key in ("field", "copy_from"):
                value = options.get(key, "")
                assert not value.startswith("kubernetes.") or value.startswith(target), value


def test_the_manifests_command_follows_the_log_and_resumes_after_kill_9(
        tmp_path: Path) -> None:
    """The container's command, run here as it is (paths and port made local): lunettes
    follows the log across a rotation, and after kill -9 resumes from its checkpoint on the
    data volume instead of reading the log again from its start."""
    pytest.importorskip("fastapi", reason="needs the serve extra")
    import gzip
    import socket
    import sys

    import httpx
    from api_server import SAMPLE, wait_for
    from test_serve import process

    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    logs, data, config = tmp_path / "apiserver", tmp_path / "data", tmp_path / "config"
    logs.mkdir()
    data.mkdir()
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = {"/etc/lunettes": str(config), "0.0.0.0": "127.0.0.1", "8080": str(port)}
    argv = []
    for arg in container["args"]:
        for old, new in (("/var/log/kubernetes/audit", str(logs)),
                         ("/var/lib/lunettes", str(data))):
            arg = arg.replace(old, new)
        argv.append(local.get(arg, arg))
    assert not [a for a in argv if a.startswith(("/var/", "/etc/"))], argv
    command = [sys.executable, "-m", "lunettes.cli.main", *argv, "--no-store"]

    def read() -> float:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        found = re.search(r"^lunettes_audit_records_read_total (\S+)$", text, re.M)
        return float(found[1]) if found else -1.0

    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:3500]
    log = logs / "audit.log"
    log.write_bytes(b"".join(lines[:2000]))
    checkpoint = data / "checkpoint.json"
    with process(command, tmp_path / "first.log", tmp_path) as first:
        wait_for(lambda: read() == 2000, "the log read", 120)
        rotated = logs / "audit-2026-01-01T00-30-00.000.log"
        log.rename(rotated)  # the API server rotates
        log.write_bytes(b"".join(lines[2000:3000]))
        wait_for(lambda: read() == 3000, "the rotated log followed", 120)
        wait_for(checkpoint.exists, "a checkpoint on the data volume", 60)
        first.kill()
        first.wait(30)
    with log.open("ab") as out:
        out.write(b"".join(lines[3000:3500]))
    saved = next(iter(json.loads(checkpoint.read_text())["positions"].values()))
    files = [rotated, log]  # oldest first
    at = next(k for k, f in enumerate(files) if f.stat().st_ino == saved["inode"])
    again = files[at].read_bytes()[saved["offset"]:].count(b"\n") + sum(
        f.read_bytes().count(b"\n") for f in files[at + 1:])
    assert again < 3500  # resumed where the Pods then in flight began
    with process(command, tmp_path / "second.log", tmp_path):
        wait_for(lambda: read() == again, "the restart to read from its checkpoint", 120)


# -- the README's live setup ---------------------------------------------------------------

def test_the_readmes_live_setup_is_short_and_its_commands_and_files_are_real() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Live: following logs"):text.index("#### Past one machine")]
    assert len(section.splitlines()) <= 45  # a few lines; docs/deploy.md has the rest
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    commands = [shlex.split(line) for line in block[1].replace("\\\n", " ").splitlines()
                if line.startswith("lunettes ")]
    follow, webhook = (lunettes_args(argv[1:]) for argv in commands)
    assert follow.command == webhook.command == "serve"
    assert follow.follow and follow.paths and follow.checkpoint
    assert webhook.webhook and webhook.webhook_spool and webhook.checkpoint
    named = {name.rstrip(".") for name in re.findall(r"deploy/[\w./-]+", section)}
    assert {"deploy/audit-webhook.kubeconfig", "deploy/kubernetes-webhook"} <= named
    assert all((ROOT / name).exists() for name in named), named
