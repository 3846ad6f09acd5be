"""deploy/jetstream: the JetStream cluster, the webhook receivers and the consumer
instances; their configurations are ones lunettes and nats-server accept, and the
consumers share the partitions out exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats_server import binary
from test_deploy import DEPLOY, documents, load, lunettes_args, served_paths

from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR

HERE = DEPLOY / "jetstream"
ANALYSIS = ("stages.yaml", "diagnosis.yaml", "slo.yaml")


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for resource in load(HERE / "kustomization.yaml")["resources"]
            for doc in documents(HERE / resource)}


def pipelines() -> dict[str, dict[str, Any]]:
    """The pipeline.yaml of each lunettes workload, by ConfigMap name."""
    out = {}
    for generator in load(HERE / "kustomization.yaml")["configMapGenerator"]:
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")
            if key == "pipeline.yaml":
                out[generator["name"]] = load(HERE / path)
    return out


@pytest.mark.parametrize("name", ANALYSIS)
def test_the_analysis_files_are_the_shipped_ones(name: str) -> None:
    assert (HERE / "config" / name).read_text() == (DEFAULT_CONFIG_DIR / name).read_text(), (
        f"refresh it: cp configs/{name} deploy/jetstream/config/{name}")


def test_every_lunettes_configuration_validates(tmp_path: Path) -> None:
    for name, pipeline in pipelines().items():
        config = tmp_path / name
        config.mkdir()
        for file in ANALYSIS:
            shutil.copy(HERE / "config" / file, config / file)
        (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        assert main(["validate-config", str(config)]) == 0, name


def test_the_consumers_share_every_partition_of_the_receivers_stream_once() -> None:
    found = pipelines()
    stream = found.pop("lunettes-receiver")["sources"]["webhook"]["nats"]
    consumed: list[int] = []
    for pipeline in found.values():
        source = dict(pipeline["sources"]["nats"])
        consumed += source.pop("consume")
        assert source == stream  # the same servers, partition count, replicas, retention
        assert pipeline["checkpoint"]["path"].startswith("/var/lib/lunettes/")
    assert sorted(consumed) == list(range(stream["partitions"]))


def test_workloads_run_lunettes_serve_with_their_configuration() -> None:
    served = served_paths()
    found = manifests()
    for (kind, name), doc in found.items():
        if kind != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        command = container["command"]
        assert command[:2] == ["tini", "--"] and command[2] == "lunettes"
        args = lunettes_args(command[3:])
        assert args.command == "serve" and args.config.as_posix() == "/etc/lunettes"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"]["path"] == path and "get" in served[path]
        volumes = {v["name"]: v for v in pod["volumes"]}
        config = volumes[next(m["name"] for m in container["volumeMounts"]
                              if m["mountPath"] == "/etc/lunettes")]
        maps = [s["configMap"]["name"] for s in config["projected"]["sources"]]
        assert maps == ["lunettes-analysis", name]  # its own pipeline.yaml
        if name.startswith("lunettes-consumer"):
            assert doc["spec"]["replicas"] == 1  # one reader per partition
            assert doc["spec"]["strategy"]["type"] == "Recreate"
        else:
            assert args.no_store and ("Service", name) in found
    nats = found[("StatefulSet", "nats")]
    assert nats["spec"]["serviceName"] in {name for kind, name in found if kind == "Service"}


def test_nats_server_accepts_the_cluster_configuration() -> None:
    test = subprocess.run([binary(), "-t", "--config", str(HERE / "config" / "nats.conf")],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "POD_NAME": "nats-0"})
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed (.ci/run installs kubernetes-client)")
def test_kubectl_kustomize_builds() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(HERE)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for doc in docs:
        if doc["kind"] == "Deployment":
            for volume in doc["spec"]["template"]["spec"]["volumes"]:
                for source in volume.get("projected", {}).get("sources", []):
                    assert source["configMap"]["name"] in maps  # the hashed names
        assert doc["metadata"].get("namespace") == "lunettes"
