"""Kubelet traffic about one Pod: status patches and Events, healthy and failing.

Every function advances the Pod's clock and writes what an upstream kubelet (1.30/1.31)
writes: the first status patch (Pending, PodReadyToStartContainers=False, ...), then
image/container Events, then status patches as containers run and become ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lunettes.simulate.clock import SECOND, go_duration, rfc3339_s
from lunettes.simulate.pod import Moment, PodSim
from lunettes.simulate.workloads import ALL_IMAGES, ContainerPlan

__all__ = [
    "backoff_loop",
    "container_running",
    "crash_loop",
    "create_and_start",
    "created",
    "finish_job",
    "pickup",
    "pull",
    "pulled",
    "pulling",
    "readiness",
    "ready_moments",
    "run_app_containers",
    "run_init_containers",
    "sandbox_ready",
    "started",
    "stop_after_delete",
]


def _names(cs: list[ContainerPlan]) -> str:
    return " ".join(c.name for c in cs)


def pod_ref(p: PodSim) -> str:
    """``name_namespace(uid)``: how the kubelet names a Pod in messages."""
    return f"{p.name}_{p.ns}({p.uid})"


def _engaged(c: ContainerPlan) -> tuple[Moment, ...]:
    """An image or container step of ``c`` began: the sandbox was ready, and for an init
    container the init stage began."""
    return (("sandbox", "end"), ("init_containers", "start")) if c.init else (
        ("sandbox", "end"),)


def pulling(p: PodSim, c: ContainerPlan) -> None:
    """The kubelet starts pulling the container's image."""
    p.event("Pulling", f'Pulling image "{c.image}"', c=c, image=c.image,
            moments=(*_engaged(c), ("image_pull", "start", c.image)))


def pulled(p: PodSim, c: ContainerPlan, message: str = "") -> None:
    """The image is there (pulled, or already present): the container can be created."""
    create: tuple[Moment, ...] = () if c.init else (("container_create", "start", c.name),)
    p.event("Pulled", message or f'Container image "{c.image}" already present on machine',
            c=c, image=c.image,
            moments=(*_engaged(c), ("image_pull", "end", c.image), *create))


def created(p: PodSim, c: ContainerPlan) -> None:
    """The runtime created the container."""
    node = p.node
    assert node is not None
    steps: tuple[Moment, ...] = () if c.init else (
        ("container_create", "end", c.name), ("container_start", "start", c.name))
    p.event("Created", f"Created container: {c.name}" if node.colon_created else
            f"Created container {c.name}", c=c, moments=(*_engaged(c), *steps))


def started(p: PodSim, c: ContainerPlan) -> None:
    """The runtime started the container."""
    steps: tuple[Moment, ...] = () if c.init else (
        ("container_start", "end", c.name), ("readiness", "start", "", c.name))
    p.event("Started", f"Started container {c.name}", c=c, moments=(*_engaged(c), *steps))


def ready_moments(p: PodSim, pod_ready: bool) -> tuple[Moment, ...]:
    """All containers ready (ContainersReady=True) and, with ``pod_ready``, the Pod Ready:
    delivered, unless it runs to completion (delivered by its terminal phase)."""
    out: tuple[Moment, ...] = (("readiness", "end"), ("readiness_gates", "start"))
    if pod_ready:
        out += (("readiness_gates", "end"),)
        if not p.plan.completes:
            out += (("delivery", "end"),)
    return out


def pickup(p: PodSim) -> None:
    """The kubelet's first status patch once it admits the Pod."""
    plan = p.plan
    conds = [p.cond("PodReadyToStartContainers", "False")]
    apps = plan.containers
    moments: tuple[Moment, ...] = ()
    if plan.init_containers:
        conds.append(p.cond("Initialized", "False", "ContainersNotInitialized",
                            f"containers with incomplete status: [{_names(plan.init_containers)}]"))
        waiting = "PodInitializing"
    else:
        conds.append(p.cond("Initialized", "True"))
        moments = (("init_containers", "end"),)
        waiting = "ContainerCreating"
    msg = f"containers with unready status: [{_names(apps)}]"
    conds.append(p.cond("Ready", "False", "ContainersNotReady", msg))
    conds.append(p.cond("ContainersReady", "False", "ContainersNotReady", msg))
    for c in plan.init_containers:
        p.container_status(c, {"waiting": {"reason": "PodInitializing"}})
    for c in apps:
        p.container_status(c, {"waiting": {"reason": waiting}})
    node = p.node
    assert node is not None
    p.status(conds=conds, containers=True, extra={
        "hostIP": node.ip, "hostIPs": [{"ip": node.ip}], "startTime": rfc3339_s(p.t)},
        moments=moments)


def sandbox_ready(p: PodSim) -> None:
    """The sandbox is up: PodReadyToStartContainers=True and the Pod IP."""
    node = p.node
    assert node is not None
    ip = node.pod_ip()
    p.status(conds=[p.cond("PodReadyToStartContainers", "True")],
             extra={"podIP": ip, "podIPs": [{"ip": ip}]}, moments=(("sandbox", "end"),))


def pull(p: PodSim, c: ContainerPlan, seconds: float | None = None) -> None:
    """Pull the container's image (or find it present), writing Pulling/Pulled."""
    node = p.node
    assert node is not None
    image = c.image
    ready_at = node.image_ready.get(image)
    p.soon()
    if seconds is None and ready_at is not None and ready_at <= p.t:
        pulled(p, c)
        return
    pulling(p, c)
    if seconds is None:
        size_mb = ALL_IMAGES.get(image, 50_000_000) / 1e6
        seconds = max(0.3, p.rng.lognormvariate(0, 0.5) * size_mb / 25)
    start = p.t
    p.after(seconds)
    took = go_duration(p.t - start)
    pulled(p, c, f'Successfully pulled image "{image}" in {took} ({took} including '
           f"waiting). Image size: {ALL_IMAGES.get(image, 50_000_000)} bytes.")
    prev = node.image_ready.get(image)
    node.image_ready[image] = p.t if prev is None else min(prev, p.t)


def create_and_start(p: PodSim, c: ContainerPlan, start_s: float | None = None) -> str:
    """Created then Started Events; returns the new container id."""
    p.after(p.rng.uniform(0.03, 0.15))
    created(p, c)
    p.after(start_s if start_s is not None else p.rng.uniform(0.05, 0.3))
    started(p, c)
    return "containerd://" + p.cluster.hex64()


def container_running(p: PodSim, c: ContainerPlan, cid: str, restarts: int = 0,
                      ready: bool = False, last: dict[str, Any] | None = None) -> None:
    p.container_status(c, {"running": {"startedAt": rfc3339_s(p.t)}}, ready=ready,
                       started=True, restarts=restarts, cid=cid, last=last)


def _terminated(p: PodSim, c: ContainerPlan, cid: str, reason: str, code: int,
                started_us: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason,
                           "startedAt": rfc3339_s(started_us),
                           "finishedAt": rfc3339_s(p.t), "containerID": cid}}


def run_init_containers(p: PodSim, slow_s: float | None = None) -> bool:
    """Run init containers one by one to completion; False if the Pod never got past."""
    inits = p.plan.init_containers
    for i, c in enumerate(inits):
        pull(p, c)
        cid = create_and_start(p, c)
        started = p.t
        p.soon()
        container_running(p, c, cid)
        p.status(containers=True)
        p.after(slow_s if slow_s is not None else c.run_s)
        p.container_status(c, _terminated(p, c, cid, "Completed", 0, started), cid=cid)
        if i == len(inits) - 1:
            conds = [p.cond("Initialized", "True")]
            for app in p.plan.containers:
                p.container_status(app, {"waiting": {"reason": "PodInitializing"}})
            p.status(conds=conds, containers=True, moments=(("init_containers", "end"),))
        else:
            p.status(containers=True)
    return True


def run_app_containers(p: PodSim, pull_s: float | None = None,
                       start_s: float | None = None) -> dict[str, str]:
    """Pull, create and start each app container in order; returns container ids."""
    ids = {}
    for i, c in enumerate(p.plan.containers):
        pull(p, c, pull_s if i == 0 else None)
        ids[c.name] = create_and_start(p, c, start_s if i == 0 else None)
    return ids


def readiness(p: PodSim, ids: dict[str, str], fail_s: float = 0.0,
              gate_s: float | None = None) -> None:
    """Containers running, then ready as their probes pass; Ready follows (after the
    readiness gate's controller sets its condition, when the spec has gates)."""
    plan = p.plan
    p.soon()
    started = p.t
    no_probe = [c for c in plan.containers if not c.readiness and fail_s == 0]
    for c in plan.containers:
        container_running(p, c, ids[c.name], ready=c in no_probe)
    conds = []
    all_ready = len(no_probe) == len(plan.containers)
    if all_ready:
        conds = _ready_conds(p)
    p.status(conds=conds, containers=True, phase="Running",
             moments=ready_moments(p, not p.plan.readiness_gates) if all_ready else ())
    if all_ready:
        _gate(p, gate_s)
        return
    probed = [c for c in plan.containers if c not in no_probe]
    ready_at = {}
    for c in probed:
        delay, period = c.readiness or (0, 5)
        ready_at[c.name] = started + int((delay + p.rng.uniform(0.1, period)) * SECOND)
    first = probed[0]
    if fail_s:
        ready_at[first.name] = max(ready_at[first.name], started + int(fail_s * SECOND))
        period = (first.readiness or (0, 5))[1]
        t = started + int(((first.readiness or (0, 5))[0] + 0.5) * SECOND)
        while t < ready_at[first.name] and p.alive():
            p.after(max(0.001, (t - p.t) / SECOND))
            p.event("Unhealthy", "Readiness probe failed: HTTP probe failed with "
                    "statuscode: 503", "Warning", c=first)
            t += period * SECOND
    if max(ready_at.values()) >= p.horizon:
        return
    for i, c in enumerate(sorted(probed, key=lambda c: ready_at[c.name])):
        if ready_at[c.name] > p.t:
            p.after((ready_at[c.name] - p.t) / SECOND)
        else:
            p.soon()
        container_running(p, c, ids[c.name], ready=True)
        p.cstat[c.name]["state"] = {"running": {"startedAt": rfc3339_s(started)}}
        last = i == len(probed) - 1
        p.status(conds=_ready_conds(p) if last else [], containers=True,
                 moments=ready_moments(p, not p.plan.readiness_gates) if last else ())
    _gate(p, gate_s)


def _ready_conds(p: PodSim) -> list[dict[str, Any]]:
    conds = [p.cond("ContainersReady", "True")]
    if p.plan.readiness_gates:
        gate = p.plan.readiness_gates[0]
        conds.append(p.cond("Ready", "False", "ReadinessGatesNotReady",
                            f'corresponding condition of pod readiness gate "{gate}" does '
                            "not exist."))
    else:
        conds.append(p.cond("Ready", "True"))
    return conds


def _gate(p: PodSim, gate_s: float | None) -> None:
    if not p.plan.readiness_gates:
        return
    p.after(gate_s if gate_s is not None else p.rng.uniform(1, 5))
    if not p.alive():  # the gate's controller never sets the condition
        return
    gate = p.plan.readiness_gates[0]
    cond = p.cond(gate, "True")
    p.status(p.cluster.gate_controller, [cond], set_order=False)
    p.after(p.rng.uniform(0.05, 0.5))
    p.status(conds=[p.cond("Ready", "True")],
             moments=(("readiness_gates", "end"),) + (
                 () if p.plan.completes else (("delivery", "end"),)))


def finish_job(p: PodSim, ids: dict[str, str], run_s: float) -> None:
    """A run-to-completion container exits 0: phase Succeeded."""
    started = p.t
    p.after(run_s)
    msg = "PodCompleted"
    conds = [p.cond("PodReadyToStartContainers", "False"), p.cond("Ready", "False", msg),
             p.cond("ContainersReady", "False", msg)]
    for c in p.plan.containers:
        p.container_status(c, _terminated(p, c, ids[c.name], "Completed", 0, started),
                           cid=ids[c.name])
    p.status(conds=conds, containers=True, phase="Succeeded", moments=(("delivery", "end"),))


def backoff_loop(p: PodSim, step: Callable[[int], bool], first_s: float = 10.0,
                 cap_s: float = 300.0, until_us: int | None = None) -> None:
    """Call ``step(attempt)`` after exponential back-off delays until it returns False,
    ``until_us`` passes, or the Pod's horizon is reached."""
    delay = first_s
    attempt = 1
    end = min(until_us, p.horizon) if until_us is not None else p.horizon
    while True:
        wait = delay * p.rng.uniform(0.9, 1.2)
        if p.t + int(wait * SECOND) >= end:
            return
        p.after(wait)
        if not step(attempt):
            return
        attempt += 1
        delay = min(cap_s, delay * 2)


def crash_loop(p: PodSim, c: ContainerPlan, cid: str, reason: str = "Error",
               exit_code: int = 1, run_s: tuple[float, float] = (1.0, 6.0),
               liveness: bool = False) -> None:
    """The container keeps exiting; restarts back off (CrashLoopBackOff) or, with
    restartPolicy Never, the Pod fails."""
    restarts, started = 0, p.t

    def crash() -> bool:
        if liveness:
            period = (c.liveness or (10, 10))[1]
            for _ in range(3):
                p.after(period)
                p.event("Unhealthy", "Liveness probe failed: HTTP probe failed with "
                        "statuscode: 500", "Warning", c=c)
            p.soon()
            p.event("Killing", f"Container {c.name} failed liveness probe, will be "
                    "restarted", c=c)
            p.after(p.rng.uniform(0.5, 2))
        else:
            p.after(p.rng.uniform(*run_s))
        last = _terminated(p, c, cid, reason, exit_code, started)
        if p.plan.restart_policy == "Never":
            p.container_status(c, last, cid=cid)
            conds = [p.cond("PodReadyToStartContainers", "False"),
                     p.cond("Ready", "False", "PodFailed"),
                     p.cond("ContainersReady", "False", "PodFailed")]
            p.status(conds=conds, containers=True, phase="Failed",
                     moments=(("delivery", "end"),))
            return False
        back_off(p, c, last, restarts)
        return True

    def restart(attempt: int) -> bool:
        nonlocal cid, restarts, started
        pulled(p, c)
        cid = create_and_start(p, c)
        restarts += 1
        started = p.t
        p.soon()
        container_running(p, c, cid, restarts=restarts)
        p.status(containers=True)
        return crash()

    if crash():
        backoff_loop(p, restart)


def back_off(p: PodSim, c: ContainerPlan, last: dict[str, Any], restarts: int,
             reason: str = "CrashLoopBackOff", message: str = "") -> None:
    """A run ended (``last``): the kubelet reports the container waiting to restart, then
    the BackOff Event."""
    p.container_status(c, {"waiting": {
        "reason": reason,
        "message": message or f"back-off 10s restarting failed container={c.name} "
                              f"pod={pod_ref(p)}"}}, restarts=restarts, last=last)
    p.status(containers=True)
    p.soon()
    p.event("BackOff", f"Back-off restarting failed container {c.name} in pod "
            f"{pod_ref(p)}", "Warning", c=c)


def stop_after_delete(p: PodSim, running: bool) -> None:
    """After a graceful delete the kubelet stops the containers, reports them terminated
    and deletes the Pod for good (grace period 0)."""
    if p.node is None:
        return
    p.after(p.rng.uniform(0.05, 0.4))
    for c in p.plan.containers:
        if c.name in p.cstat and "running" in p.cstat[c.name]["state"]:
            p.event("Killing", f"Stopping container {c.name}", c=c)
    p.after(p.rng.uniform(0.3, 3.0) if running else p.rng.uniform(0.05, 0.3))
    for c in p.plan.containers:
        cs = p.cstat.get(c.name)
        if cs and "running" in cs["state"]:
            started = cs["state"]["running"]["startedAt"]
            cs_state = {"terminated": {"exitCode": 0, "reason": "Completed",
                                       "startedAt": started, "finishedAt": rfc3339_s(p.t),
                                       "containerID": cs.get("containerID", "")}}
            p.container_status(c, cs_state, restarts=cs["restartCount"])
        else:
            p.container_status(c, {"terminated": {"exitCode": 137, "reason":
                                                  "ContainerStatusUnknown",
                                                  "message": "The container could not be "
                                                  "located when the pod was terminated",
                                                  "startedAt": None, "finishedAt": None}})
    conds = [p.cond("PodReadyToStartContainers", "False")]
    if p.conds.get("Ready", {}).get("status") == "True":
        conds += [p.cond("Ready", "False", "ContainersNotReady",
                         f"containers with unready status: [{_names(p.plan.containers)}]"),
                  p.cond("ContainersReady", "False", "ContainersNotReady",
                         f"containers with unready status: [{_names(p.plan.containers)}]")]
    p.status(conds=conds, containers=True)
    p.after(p.rng.uniform(0.05, 0.5))
    p.delete(p.node.identity, final=True)
