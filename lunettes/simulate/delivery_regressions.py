"""Simulated pod records with injected delivery regressions; the injections are the truth.

Pods are created at a steady rate across node pools (``general``, ``gpu-a``, ``spot``),
namespaces, owner kinds and images from several registries; their stages (scheduling,
kubelet pickup, sandbox, one image pull per image, container create and start, readiness)
take log-normal times. Each :class:`Regression` adds seconds to one stage of the Pods that
match its condition while it lasts (shape ``step``, ``ramp`` or ``burst``):

- ``slow_registry``: image pulls from ``r.example.com`` are slow;
- ``slow_pool``: sandboxes on the ``gpu-a`` pool's nodes are slow (a CNI problem);
- ``slow_node``: containers start slowly on node ``spot-03``;
- ``slow_scheduling``: Pods of namespace ``batch`` wait to be scheduled.

The records have the JSON shape of lunettes' pod records (the fields the delivery drilldown
reads), with ``injected`` stage names kept per Pod for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lunettes.model.times import format_time

KINDS = ("slow_registry", "slow_pool", "slow_node", "slow_scheduling")
SHAPES = ("step", "ramp", "burst")
_START_S = 1_772_000_000
_NODES = ([f"general-{i:02d}" for i in range(1, 7)] + [f"gpu-a-{i:02d}" for i in range(1, 4)]
          + [f"spot-{i:02d}" for i in range(1, 5)])
# namespace -> (owner kind, images, nodes it lands on)
_WORKLOADS = {
    "web": ("ReplicaSet", ("ghcr.io/acme/api:v2.14.0", "docker.io/library/nginx:1.27"),
            [n for n in _NODES if not n.startswith("gpu")]),
    "batch": ("Job", ("docker.io/library/python:3.12",), _NODES[:6] + _NODES[9:]),
    "ml": ("StatefulSet", ("r.example.com/ml/trainer:v5",), _NODES[6:9]),
    "platform": ("DaemonSet", ("quay.io/prometheus/node-exporter:v1.8.1",), _NODES),
}
_STAGE_MEAN_S = {"scheduling": 0.4, "kubelet_pickup": 0.3, "sandbox": 1.5, "image_pull": 3.0,
                 "container_create": 0.3, "container_start": 0.6, "readiness": 2.0}
# kind -> (condition, stage, extra seconds at the peak)
_KINDS: dict[str, tuple[dict[str, str], str, float]] = {
    "slow_registry": ({"registry": "r.example.com"}, "image_pull", 60.0),
    "slow_pool": ({"node_pool": "gpu-a"}, "sandbox", 60.0),
    "slow_node": ({"node": "spot-03"}, "container_start", 150.0),
    "slow_scheduling": ({"namespace": "batch"}, "scheduling", 45.0),
}


@dataclass(frozen=True)
class Regression:
    """Extra seconds on one stage of the matching Pods, from interval ``start`` to ``end``
    (exclusive)."""

    kind: str
    shape: str
    start: int
    end: int
    shared: dict[str, str] = field(default_factory=dict, compare=False)
    """After generation: the attributes every stage it slowed had (owner kind included)."""

    @property
    def stage(self) -> str:
        return _KINDS[self.kind][1]

    def condition(self) -> dict[str, str]:
        """What the affected Pods have in common by construction, stage included."""
        return {**_KINDS[self.kind][0], "stage": self.stage}

    def extra_s(self, interval: int) -> float:
        if not self.start <= interval < self.end:
            return 0.0
        peak = _KINDS[self.kind][2]
        if self.shape == "ramp":
            return peak * (interval - self.start + 1) / (self.end - self.start)
        return peak * (1.5 if self.shape == "burst" else 1.0)


def _attributes(node: str, namespace: str, image: str) -> dict[str, str]:
    registry = image.split("/", 1)[0]
    return {"node": node, "node_pool": node.rsplit("-", 1)[0], "registry": registry,
            "namespace": namespace}


def generate(seed: int, intervals: int = 96, interval_s: int = 300, pods: int = 30,
             regressions: list[Regression] | None = None) -> tuple[list[dict[str, Any]],
                                                                   list[Regression]]:
    """``pods`` Pods per interval for ``intervals`` intervals; two regressions drawn from the
    seed unless given. Returns the pod records and the regressions."""
    rng = np.random.default_rng(seed)
    if regressions is None:
        regressions = []
        stretch = (intervals - 10) // 2
        for n in range(2):
            kind = KINDS[(seed + n) % len(KINDS)]
            shape = SHAPES[(seed // len(KINDS) + n) % len(SHAPES)]
            length = {"step": int(rng.integers(4, 9)), "ramp": int(rng.integers(6, 10)),
                      "burst": int(rng.integers(1, 3))}[shape]
            lo = 5 + n * stretch
            start = int(rng.integers(lo, lo + stretch - length - 4))
            regressions.append(Regression(kind, shape, start, start + length))
    names = list(_WORKLOADS)
    records = []
    shared: dict[int, dict[str, str]] = {}  # what every stage a regression slowed has
    for i in range(intervals):
        for p in range(int(rng.poisson(pods))):
            namespace = names[int(rng.choice(len(names), p=[0.4, 0.25, 0.2, 0.15]))]
            owner, images, nodes = _WORKLOADS[namespace]
            node = nodes[int(rng.integers(len(nodes)))]
            created = (_START_S + i * interval_s) * 1_000_000 + int(rng.integers(interval_s
                                                                                * 1_000_000))
            at, stages, injected = created, [], []
            for stage, mean in _STAGE_MEAN_S.items():
                for image in images if stage == "image_pull" else ("",):
                    seconds = float(rng.lognormal(np.log(mean), 0.5))
                    facts = {**_attributes(node, namespace, image or images[0]),
                             "owner_kind": owner, "stage": stage}
                    for k, r in enumerate(regressions):
                        if r.condition().items() <= facts.items() and r.extra_s(i):
                            seconds += r.extra_s(i)
                            injected.append(stage)
                            shared[k] = facts if k not in shared else {
                                key: v for key, v in shared[k].items() if facts[key] == v}
                    end = at + int(seconds * 1e6)
                    stages.append({"name": stage, "instance": image,
                                   "instance_kind": "image" if image else "",
                                   "start": format_time(at), "end": format_time(end),
                                   "duration_s": round(seconds, 6)})
                    at = end
            root = {"name": "delivery", "instance": "", "instance_kind": "",
                    "start": format_time(created), "end": format_time(at),
                    "duration_s": (at - created) / 1e6}
            records.append({
                "uid": f"{seed:04d}-{i:04d}-{p:04d}", "namespace": namespace,
                "name": f"{namespace}-{i}-{p}", "node": node,
                "created": format_time(created), "finished": format_time(at),
                "duration_s": (at - created) / 1e6, "outcome": "delivered",
                "owner_kind": owner, "stages": [root, *stages], "injected": injected})
    return records, [replace(r, shared=shared.get(k, {})) for k, r in enumerate(regressions)]
