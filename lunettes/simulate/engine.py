"""The simulation loop: plan Pods, run their scenarios, interleave background traffic."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lunettes.simulate.audit import AuditLog
from lunettes.simulate.background import Background
from lunettes.simulate.clock import SECOND, parse_start
from lunettes.simulate.cluster import Cluster, Node
from lunettes.simulate.pod import PodSim
from lunettes.simulate.policy import get_policy
from lunettes.simulate.scenarios import SCENARIOS
from lunettes.simulate.stream import Stream
from lunettes.simulate.truth import PodTruth
from lunettes.simulate.workloads import make_plan

__all__ = ["DEFAULT_MIX", "SimConfig", "Simulation"]

DEFAULT_MIX: dict[str, float] = {"healthy": 1.0}
WORKLOAD_WEIGHTS = {"deployment": 0.5, "job": 0.15, "statefulset": 0.12, "pod": 0.23}


@dataclass(slots=True)
class SimConfig:
    """Everything that decides the output; the same config always gives the same bytes."""

    seed: int = 1
    pods: int = 100
    duration_s: float = 600.0
    rate: float = 20.0
    start: str = "2026-01-01T00:00:00Z"
    nodes: int = 5
    apiservers: int = 1
    skew_s: float = 3.0
    duplicates: float = 0.0
    request_received: float = 0.0
    policy: str = "requestresponse"
    scenarios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    end_s: float | None = None
    """Cut the log this many seconds after the start (default: when every Pod settled)."""


class Simulation:
    """Runs one configuration; iterate ``lines()`` then read ``truth_rows()``."""

    def __init__(self, config: SimConfig) -> None:
        if config.nodes < 1 or config.apiservers < 1 or config.pods < 0:
            raise ValueError("nodes and apiservers must be >= 1, pods >= 0")
        self.config = config
        self.rng = random.Random(config.seed)
        self.policy = get_policy(config.policy)
        self.start_us = parse_start(config.start)
        end_us = None if config.end_s is None else self.start_us + int(config.end_s * SECOND)
        self.cluster = Cluster(self.rng, config.nodes, config.apiservers)
        self.stream = Stream(random.Random(config.seed * 7919 + 1), config.apiservers,
                             int(config.skew_s * SECOND), config.duplicates, end_us)
        self.audit = AuditLog(self.cluster, self.policy, self.stream, self.rng,
                              config.request_received)
        self.background = Background(self.cluster, self.audit,
                                     random.Random(config.seed * 104729 + 3), config.rate,
                                     self.start_us)
        self.pods: list[PodTruth] = []
        self.log_end_us = self.start_us
        self._image_ids: dict[str, str] = {}
        self._turns: dict[str, int] = {}
        for name in config.scenarios:
            if name not in SCENARIOS:
                raise ValueError(f"unknown scenario {name!r}")

    def pick_node(self) -> Node:
        """The node the scheduler picks (uniformly: the cluster is balanced)."""
        return self.rng.choice(self.cluster.nodes)

    def turn(self, key: str) -> int:
        """0, 1, 2, ... on successive calls with ``key``: alternates scenario variants."""
        n = self._turns.get(key, 0)
        self._turns[key] = n + 1
        return n

    def image_id(self, image: str) -> str:
        """The repo digest the runtime reports for an image (stable per image)."""
        ref = self._image_ids.get(image)
        if ref is None:
            digest = hashlib.sha256(image.encode()).hexdigest()
            ref = f"{image.rsplit(':', 1)[0]}@sha256:{digest}"
            self._image_ids[image] = ref
        return ref

    def _plan(self) -> list[tuple[int, str]]:
        cfg, rng = self.config, self.rng
        names = list(cfg.scenarios)
        cum: list[float] = []
        acc = 0.0
        for n in names:
            acc += cfg.scenarios[n]
            cum.append(acc)
        plans = []
        span = int(cfg.duration_s * SECOND)
        for _ in range(cfg.pods):
            t = self.start_us + rng.randrange(max(1, span))
            scenario = names[min(bisect.bisect_left(cum, rng.random() * acc), len(names) - 1)]
            plans.append((t, scenario))
        # every scenario named with a positive weight appears at least once when it fits
        counts: dict[str, int] = {}
        for _, s in plans:
            counts[s] = counts.get(s, 0) + 1
        for name in names:
            if cfg.scenarios[name] <= 0 or counts.get(name):
                continue
            spare = [i for i, (_, s) in enumerate(plans) if counts[s] > 1]
            if not spare:
                break
            i = spare[rng.randrange(len(spare))]
            counts[plans[i][1]] -= 1
            counts[name] = 1
            plans[i] = (plans[i][0], name)
        plans.sort()
        return plans

    def lines(self, progress: Callable[[int], None] | None = None
              ) -> Iterator[tuple[int, bytes]]:
        """Yield ``(api server index, audit line)`` in the order the log holds them."""
        rng = self.rng
        stream, background = self.stream, self.background
        last_pod_us = self.start_us
        for done, (t0, scenario_name) in enumerate(self._plan()):
            if stream.end_us is not None and t0 > stream.end_us:
                break
            background.advance(t0)
            yield from stream.drain(t0)
            scenario = SCENARIOS[scenario_name]
            allowed = [w for w in scenario.workloads]
            weights = [WORKLOAD_WEIGHTS[w] for w in allowed]
            workload = rng.choices(allowed, weights)[0]
            plan = make_plan(self.cluster, rng, workload)
            if scenario.prepare is not None:
                scenario.prepare(plan, rng)
            pod = PodSim(self, plan, scenario_name, scenario.reason, t0)
            scenario.run(pod)
            self.pods.append(pod.truth)
            last_pod_us = max(last_pod_us, pod.t + 50_000)
            truth = pod.truth
            if not (truth.rejected or truth.terminal or truth.delivered_us is not None
                    or truth.deleted_us is not None):
                # a stuck Pod: keep the log going until a reader would call it a timeout
                last_pod_us = max(last_pod_us, pod.horizon)
            if progress is not None:
                progress(done + 1)
        end = self.config.end_s
        if end is not None:
            self.log_end_us = self.start_us + int(end * SECOND)
        else:
            self.log_end_us = max(self.start_us + int(self.config.duration_s * SECOND),
                                  last_pod_us) + SECOND
            stream.end_us = self.log_end_us
        background.advance(self.log_end_us)
        yield from stream.drain()

    def truth_rows(self) -> list[dict[str, Any]]:
        """The ground truth, one row per Pod in creation order (after ``lines``)."""
        return [p.row(self.config.policy, self.log_end_us) for p in self.pods]
