"""Delivery scenarios: how one Pod's life goes, healthy or failing, and its reason code.

Each scenario tweaks the Pod's plan (``prepare``) and scripts its life (``run``); the
truth row names ``reason``, the diagnosis a correct reader should reach (None for healthy
Pods and Pods slowed only by user time).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from lunettes.simulate import kubelet as kl
from lunettes.simulate.audit import failure_status
from lunettes.simulate.pod import HORIZON_US, PodSim
from lunettes.simulate.scheduler import (
    UNSCHEDULABLE,
    failed_scheduling_message,
    preempt,
    schedule,
    unschedulable,
)
from lunettes.simulate.workloads import ContainerPlan, PodPlan

__all__ = ["SAME", "SCENARIOS", "Scenario", "parse_mix"]

_LONG = ("deployment", "statefulset", "pod")
SAME = "same"
"""Scenario.status_reason: the status shows the cause itself."""
_ANY = ("deployment", "job", "statefulset", "pod")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named way a Pod's delivery goes."""

    name: str
    reason: str | None
    description: str
    run: Callable[[PodSim], None]
    workloads: tuple[str, ...] = _ANY
    prepare: Callable[[PodPlan, random.Random], None] | None = None
    status_reason: str | None = SAME
    """The diagnosis a reader can reach when the log holds no Events (only the Pod's own
    requests and status patches): :data:`SAME` when the status shows the cause, else
    the code what the status does show leads to."""

    def expected_reason(self, events_readable: bool) -> str | None:
        """The diagnosis a correct reader reaches, with or without readable Events."""
        if events_readable or self.status_reason == SAME:
            return self.reason
        return self.status_reason


# -- building blocks ----------------------------------------------------------------------
def _created(p: PodSim) -> bool:
    if not p.create():
        return False
    if p.plan.owner_kind == "StatefulSet":
        p.owner_event("SuccessfulCreate", f"create Pod {p.name} in StatefulSet "
                      f"{p.plan.owner_name} successful")
    elif p.plan.owner_kind:
        p.owner_event("SuccessfulCreate", f"Created pod: {p.name}")
    return True


def _scheduled(p: PodSim, delay_s: float | None = None) -> None:
    schedule(p, delay_s if delay_s is not None else p.rng.uniform(0.008, 0.08))


def _picked_up(p: PodSim, delay_s: float | None = None) -> None:
    p.after(delay_s if delay_s is not None else p.rng.uniform(0.05, 0.5))
    kl.pickup(p)


def _sandbox(p: PodSim) -> None:
    p.after(p.rng.uniform(0.5, 3.0))
    kl.sandbox_ready(p)


def _deliver(p: PodSim, *, sched_s: float | None = None, pickup_s: float | None = None,
             pull_s: float | None = None, start_s: float | None = None,
             fail_s: float = 0.0, gate_s: float | None = None,
             init_s: float | None = None) -> None:
    """The whole healthy path, each step's duration overridable."""
    if not _created(p):
        return
    _scheduled(p, sched_s)
    _picked_up(p, pickup_s)
    _sandbox(p)
    if p.plan.init_containers:
        kl.run_init_containers(p, init_s)
    ids = kl.run_app_containers(p, pull_s, start_s)
    if p.plan.completes:
        p.soon()
        for c in p.plan.containers:
            kl.container_running(p, c, ids[c.name], ready=True)
        p.status(conds=[p.cond("ContainersReady", "True"), p.cond("Ready", "True")],
                 containers=True, phase="Running", moments=kl.ready_moments(p, True))
        kl.finish_job(p, ids, p.plan.containers[0].run_s)
        return
    kl.readiness(p, ids, fail_s=fail_s, gate_s=gate_s)


def _until_started(p: PodSim) -> dict[str, str] | None:
    """Create, schedule, pick up, sandbox, init: up to the app containers."""
    if not _created(p):
        return None
    _scheduled(p)
    _picked_up(p)
    _sandbox(p)
    if p.plan.init_containers:
        kl.run_init_containers(p)
    return {}


def _run_app_containers(p: PodSim) -> None:
    """The app containers from their pulls on: a Job's run to completion, else readiness."""
    ids = kl.run_app_containers(p)
    if p.plan.completes:
        _running(p, ids)
        kl.finish_job(p, ids, p.plan.containers[0].run_s)
    else:
        kl.readiness(p, ids)


def _running(p: PodSim, ids: dict[str, str]) -> None:
    p.soon()
    for c in p.plan.containers:
        kl.container_running(p, c, ids[c.name])
    p.status(containers=True, phase="Running")


# -- healthy and slow ---------------------------------------------------------------------
def healthy(p: PodSim) -> None:
    _deliver(p)


def slow_image_pull(p: PodSim) -> None:
    _deliver(p, pull_s=p.rng.uniform(90, 420))


def slow_kubelet(p: PodSim) -> None:
    _deliver(p, pickup_s=p.rng.uniform(20, 180))


def slow_container_start(p: PodSim) -> None:
    _deliver(p, start_s=p.rng.uniform(20, 90))


def slow_readiness(p: PodSim) -> None:
    _deliver(p, fail_s=p.rng.uniform(30, 150))


def readiness_gate(p: PodSim) -> None:
    _deliver(p, gate_s=p.rng.uniform(20, 120))


def readiness_gate_not_ready(p: PodSim) -> None:
    _deliver(p, gate_s=HORIZON_US / 1e6)


def init_containers(p: PodSim) -> None:
    _deliver(p, init_s=p.rng.uniform(15, 90))


def scheduling_slow(p: PodSim) -> None:
    if not _created(p):
        return
    msg = failed_scheduling_message("cpu", len(p.cluster.nodes) - 1, 1)
    unschedulable(p, msg, until_us=p.t + int(p.rng.uniform(20, 180) * 1e6))
    _scheduled(p, 0.01)
    _picked_up(p)
    _sandbox(p)
    if p.plan.init_containers:
        kl.run_init_containers(p)
    _run_app_containers(p)


def _unschedulable(cause: str) -> Callable[[PodSim], None]:
    def run(p: PodSim) -> None:
        if not _created(p):
            return
        nodes = len(p.cluster.nodes)
        cp = 1 if cause in ("cpu", "memory", "node_selector") else 0
        unschedulable(p, failed_scheduling_message(cause, nodes, cp))
    return run


# -- image --------------------------------------------------------------------------------
def _pull_failure(error: Callable[[str], str], reason: str = "ErrImagePull",
                  recover_after: int = 0) -> Callable[[PodSim], None]:
    def run(p: PodSim) -> None:
        if _until_started(p) is None:
            return
        c = p.plan.containers[0]
        image = c.image

        def attempt(n: int) -> bool:
            kl.pulling(p, c)
            p.after(p.rng.uniform(0.3, 3.0))
            if recover_after and n > recover_after:
                p.after(p.rng.uniform(1, 8))
                kl.pulled(p, c, f'Successfully pulled image "{image}" in 6.2s (6.2s '
                          "including waiting). Image size: 61774109 bytes.")
                return False
            err = error(image)
            p.event("Failed", f'Failed to pull image "{image}": {err}', "Warning", c=c)
            p.soon()
            p.event("Failed", f"Error: {reason}", "Warning", c=c)
            p.soon()
            p.container_status(c, {"waiting": {"reason": reason, "message": err}})
            p.status(containers=True, moments=(("image_pull", "start", image),))
            p.after(p.rng.uniform(0.5, 2))
            p.event("BackOff", f'Back-off pulling image "{image}"', c=c, image=image)
            p.soon()
            p.event("Failed", "Error: ImagePullBackOff", "Warning", c=c)
            p.soon()
            p.container_status(c, {"waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}": {reason}: {err}'}})
            p.status(containers=True)
            return True

        if attempt(0):
            kl.backoff_loop(p, attempt)
        if recover_after and p.alive():
            ids = {}
            ids[c.name] = kl.create_and_start(p, c)
            for other in p.plan.containers[1:]:
                kl.pull(p, other)
                ids[other.name] = kl.create_and_start(p, other)
            if p.plan.completes:
                _running(p, ids)
                kl.finish_job(p, ids, c.run_s)
            else:
                kl.readiness(p, ids)
    return run


def _not_found(image: str) -> str:
    ref = image.split("/", 1)[-1]
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found'
            if "/" in ref else f"{image}: not found")


def _auth(image: str) -> str:
    repo = image.split("/", 1)[1].rsplit(":", 1)[0]
    host = image.split("/", 1)[0]
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": failed to authorize: failed to fetch '
            f'anonymous token: unexpected status from GET request to https://{host}/token?'
            f"scope=repository%3A{repo.replace('/', '%2F')}%3Apull: 401 Unauthorized")


def _server_error(image: str) -> str:
    host = image.split("/", 1)[0]
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
            f"failed to copy: httpReadSeeker: failed open: unexpected status code "
            f"https://{host}/v2/: 503 Service Unavailable")


def _rate_limited(image: str) -> str:
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
            f'failed to copy: httpReadSeeker: failed open: unexpected status code '
            f'https://registry-1.docker.io/v2/{image.split("/", 1)[1].rsplit(":", 1)[0]}'
            f"/manifests/sha256:3f5c: 429 Too Many Requests - Server message: "
            f"toomanyrequests: You have reached your pull rate limit.")


def _missing_tag(plan: PodPlan, rng: random.Random) -> None:
    c = plan.containers[0]
    c.image = c.image.rsplit(":", 1)[0] + ":" + rng.choice(("v9.9.9", "latestt", "2.0-rc"))


def _private(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].image = f"registry.acme.internal/team/private-{rng.randrange(9)}:v1"


def _bad_name(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].image = rng.choice(("Nginx:Latest", "ghcr.io/acme//api:v1",
                                           "acme/api:v1.0 "))


def invalid_image_name(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    c = p.plan.containers[0]
    image = c.image
    lower = image.strip().lower()
    err = (f'couldn\'t parse image name "{image}": invalid reference format'
           + (f": repository name (library/{image.split(':')[0]}) must be lowercase"
              if image != lower and image.strip() == image else ""))

    def attempt(n: int) -> bool:
        p.event("InspectFailed", f'Failed to apply default image tag "{image}": {err}',
                "Warning", c=c)
        p.soon()
        p.event("Failed", "Error: InvalidImageName", "Warning", c=c)
        if n == 0:
            p.soon()
            p.container_status(c, {"waiting": {"reason": "InvalidImageName",
                                               "message": f'Failed to apply default image '
                                                          f'tag "{image}": {err}'}})
            p.status(containers=True)
        return True

    attempt(0)
    kl.backoff_loop(p, attempt, first_s=10, cap_s=120)


def slow_pull_prepare(plan: PodPlan, rng: random.Random) -> None:
    c = plan.containers[0]
    c.image = c.image.rsplit(":", 1)[0] + f":v{rng.randrange(100)}.{rng.randrange(100)}"


# -- containers ---------------------------------------------------------------------------
def _after_pull_failure(waiting: str, error: Callable[[PodSim, ContainerPlan], str],
                        event_reason: str = "Failed") -> Callable[[PodSim], None]:
    """The image is there but the container cannot be created (retried every sync)."""
    def run(p: PodSim) -> None:
        if _until_started(p) is None:
            return
        c = p.plan.containers[0]
        kl.pull(p, c)
        err = error(p, c)

        def attempt(n: int) -> bool:
            if n:
                kl.pulled(p, c)
                p.soon()
            p.event(event_reason, f"Error: {err}", "Warning", c=c)
            if n == 0:
                p.soon()
                p.container_status(c, {"waiting": {"reason": waiting, "message": err}})
                p.status(containers=True)
            return True

        attempt(0)
        kl.backoff_loop(p, attempt, first_s=10, cap_s=300)
    return run


def _config_error(p: PodSim, c: ContainerPlan) -> str:
    if p.rng.random() < 0.5:
        return f"couldn't find key LOG_LEVEL in ConfigMap {p.ns}/{c.env_from_configmap}"
    return f'configmap "{c.env_from_configmap}" not found'


def _create_error(p: PodSim, c: ContainerPlan) -> str:
    if p.rng.random() < 0.5:
        return "context deadline exceeded"
    return (f'failed to reserve container name "{c.name}_{p.name}_{p.ns}_{p.uid}_0": name '
            f'"{c.name}_{p.name}_{p.ns}_{p.uid}_0" is reserved for "{p.cluster.hex64()}"')


def _with_configmap_env(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].env_from_configmap = f"{plan.containers[0].name}-config"


def run_container_error(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    c = p.plan.containers[0]
    kl.pull(p, c)
    err = ('failed to create containerd task: failed to create shim task: OCI runtime create '
           'failed: runc create failed: unable to start container process: exec: '
           '"/app/server": stat /app/server: no such file or directory: unknown')
    restarts = 0

    def attempt(n: int) -> bool:
        nonlocal restarts
        if n:
            kl.pulled(p, c)
        p.after(p.rng.uniform(0.03, 0.15))
        kl.created(p, c)
        p.after(p.rng.uniform(0.05, 0.2))
        p.event("Failed", f"Error: {err}", "Warning", c=c)
        cid = "containerd://" + p.cluster.hex64()
        p.soon()
        last = {"terminated": {"exitCode": 128, "reason": "StartError", "message": err,
                               "startedAt": "1970-01-01T00:00:00Z",
                               "finishedAt": kl.rfc3339_s(p.t), "containerID": cid}}
        if n == 0:
            kl.back_off(p, c, last, restarts, "RunContainerError", err)
        else:
            kl.back_off(p, c, last, restarts)
        restarts += 1
        return True

    attempt(0)
    kl.backoff_loop(p, attempt)


def _crash(reason: str, code: int, liveness: bool = False) -> Callable[[PodSim], None]:
    def run(p: PodSim) -> None:
        if _until_started(p) is None:
            return
        c = p.plan.containers[0]
        ids = {}
        for other in p.plan.containers:
            kl.pull(p, other)
            ids[other.name] = kl.create_and_start(p, other)
        _running(p, ids)
        kl.crash_loop(p, c, ids[c.name], reason, code, liveness=liveness,
                      run_s=(0.5, 3.0) if reason == "OOMKilled" else (1.0, 8.0))
    return run


def _with_liveness(plan: PodPlan, rng: random.Random) -> None:
    c = plan.containers[0]
    c.liveness = (10, 10)
    c.readiness = (30, 10)


def post_start_hook_failed(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    c = p.plan.containers[0]
    kl.pull(p, c)
    restarts = 0

    def attempt(n: int) -> bool:
        nonlocal restarts
        if n:
            kl.pulled(p, c)
        cid = kl.create_and_start(p, c)
        p.after(p.rng.uniform(0.5, 3))
        p.event("FailedPostStartHook",
                f'Exec lifecycle hook ([/bin/sh -c /opt/hooks/warm-cache.sh]) for Container '
                f'"{c.name}" in Pod "{kl.pod_ref(p)}" failed - error: command \'/bin/sh -c '
                f"/opt/hooks/warm-cache.sh' exited with 1: , message: \"\"", "Warning", c=c)
        p.soon()
        p.event("Killing", "FailedPostStartHook", c=c)
        p.after(p.rng.uniform(0.2, 1))
        last = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt":
                               kl.rfc3339_s(p.t - 2_000_000), "finishedAt": kl.rfc3339_s(p.t),
                               "containerID": cid}}
        kl.back_off(p, c, last, restarts,
                    "PostStartHookError" if n == 0 else "CrashLoopBackOff")
        restarts += 1
        return True

    attempt(0)
    kl.backoff_loop(p, attempt)


def _with_init(plan: PodPlan, rng: random.Random) -> None:
    if not plan.init_containers:
        plan.init_containers.append(ContainerPlan(
            "init-db", "ghcr.io/acme/db-migrate:v1.3.0", init=True, run_s=rng.uniform(1, 4)))


def init_container_failed(p: PodSim) -> None:
    if not _created(p):
        return
    _scheduled(p)
    _picked_up(p)
    _sandbox(p)
    c = p.plan.init_containers[0]
    kl.pull(p, c)
    cid = kl.create_and_start(p, c)
    p.soon()
    kl.container_running(p, c, cid)
    p.status(containers=True)
    kl.crash_loop(p, c, cid, "Error", 1, run_s=(2.0, 10.0))


# -- volumes, sandbox, network ------------------------------------------------------------
def _stuck_events(reason: str, message: Callable[[PodSim], str], first_s: float = 2.0,
                  cap_s: float = 120.0, component: str = "kubelet",
                  recover: tuple[float, float] | None = None) -> Callable[[PodSim], None]:
    """Pod-level Warning Events repeated while the Pod cannot get a sandbox or volume;
    with ``recover`` the problem clears after that many seconds and the Pod delivers."""
    def run(p: PodSim) -> None:
        if not _created(p):
            return
        _scheduled(p)
        _picked_up(p)
        text = message(p)
        until = p.t + int(p.rng.uniform(*recover) * 1e6) if recover else None

        def attempt(n: int) -> bool:
            if component == "kubelet":
                p.event(reason, text, "Warning")
            else:
                p.controller_event(p.cluster.controllers[component], reason, text)
            return True

        p.after(p.rng.uniform(0.05, 0.5))
        attempt(0)
        kl.backoff_loop(p, attempt, first_s=first_s, cap_s=cap_s, until_us=until)
        if reason in ("FailedAttachVolume", "FailedMount") and p.t > p.t0 + 120_000_000:
            p.soon()
            vols = ", ".join(v["name"] for v in p.plan.volumes) or "data"
            p.event("FailedMount", f"Unable to attach or mount volumes: unmounted volumes="
                    f"[{vols}], unattached volumes=[{vols if component != 'kubelet' else ''}],"
                    " failed to process volumes=[]: timed out waiting for the condition",
                    "Warning")
        if until is not None and p.alive():
            p.after(max(0.001, (until - p.t) / 1e6))
            kl.sandbox_ready(p)
            _run_app_containers(p)
    return run


def _nfs(plan: PodPlan, rng: random.Random) -> None:
    plan.volumes.append({"name": "shared", "nfs": {"server": "10.0.0.50",
                                                   "path": "/exports/shared"}})


def _mount_failed(p: PodSim) -> str:
    return ('MountVolume.SetUp failed for volume "shared" : mount failed: exit status 32\n'
            "Mounting command: mount\nMounting arguments: -t nfs 10.0.0.50:/exports/shared "
            f"/var/lib/kubelet/pods/{p.uid}/volumes/kubernetes.io~nfs/shared\n"
            "Output: mount.nfs: Connection timed out")


def _cm_volume(plan: PodPlan, rng: random.Random) -> None:
    if rng.random() < 0.6:
        plan.volumes.append({"name": "config", "configMap": {
            "name": f"{plan.containers[0].name}-config", "defaultMode": 420}})
    else:
        plan.volumes.append({"name": "creds", "secret": {
            "secretName": f"{plan.containers[0].name}-db-creds", "defaultMode": 420}})


def _cm_missing(p: PodSim) -> str:
    v = p.plan.volumes[-1]
    if "configMap" in v:
        return (f'MountVolume.SetUp failed for volume "{v["name"]}" : configmap '
                f'"{v["configMap"]["name"]}" not found')
    return (f'MountVolume.SetUp failed for volume "{v["name"]}" : secret '
            f'"{v["secret"]["secretName"]}" not found')


def _multi_attach(p: PodSim) -> str:
    return (f'Multi-Attach error for volume "pvc-{p.cluster.uuid()}" Volume is already '
            "exclusively attached to one node and can't be attached to another")


def _sandbox_failed(p: PodSim) -> str:
    return (f"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
            f'network for sandbox "{p.cluster.hex64()}": plugin type="calico" failed (add): '
            "error getting ClusterInformation: connection is unauthorized: Unauthorized")


def _ip_exhausted(p: PodSim) -> str:
    node = p.node
    idx = node.index if node else 1
    return (f"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
            f'network for sandbox "{p.cluster.hex64()}": plugin type="bridge" failed (add): '
            f"failed to allocate for range 0: no IP addresses available in range set: "
            f"10.244.{idx}.1-10.244.{idx}.254")


def _network_not_ready(p: PodSim) -> str:
    return ("network is not ready: container runtime network not ready: NetworkReady=false "
            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin "
            "not initialized")


# -- node ---------------------------------------------------------------------------------
def kubelet_admission_rejected(p: PodSim) -> None:
    if not _created(p):
        return
    _scheduled(p)
    p.after(p.rng.uniform(0.05, 0.5))
    cpu = p.rng.choice((2000, 3000))
    msg = (f"Pod was rejected: Node didn't have enough resource: cpu, requested: {cpu}, "
           f"used: {4000 - cpu // 2}, capacity: 4000")
    p.status(conds=[], phase="Failed", extra={"message": msg, "reason": "OutOfcpu",
                                               "startTime": kl.rfc3339_s(p.t)},
             set_order=False, moments=(("delivery", "end"),))
    p.soon()
    p.event("OutOfcpu", msg, "Warning")


def node_not_ready(p: PodSim) -> None:
    if not _created(p):
        return
    _scheduled(p)
    p.after(p.rng.uniform(20, 45))
    nc = p.cluster.controllers["node-controller"]
    cond = p.cond("Ready", "False", "NodeNotReady", "Node is not ready")
    p.status(nc, [cond], set_order=False)
    p.soon()
    p.controller_event(nc, "NodeNotReady", "Node is not ready")
    p.after(300 + p.rng.uniform(0, 5))
    te = p.cluster.controllers["taint-eviction-controller"]
    p.controller_event(te, "TaintManagerEviction", f"Marking for deletion Pod {p.ns}/{p.name}",
                       "Normal")
    p.soon()
    p.delete(te)


def evicted(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    ids = kl.run_app_containers(p)
    _running(p, ids)
    c = p.plan.containers[0]
    p.after(p.rng.uniform(5, 40))
    msg = (f"The node was low on resource: memory. Threshold quantity: 100Mi, available: "
           f"{p.rng.randrange(40000, 99000)}Ki. Container {c.name} was using "
           f"{p.rng.randrange(900000, 2500000)}Ki, request is {c.memory}, has larger "
           "consumption of memory.")
    p.event("Evicted", msg, "Warning")
    p.soon()
    p.event("Killing", f"Stopping container {c.name}", c=c)
    p.after(p.rng.uniform(0.5, 5))
    conds = [p.cond("DisruptionTarget", "True", "TerminationByKubelet", msg),
             p.cond("PodReadyToStartContainers", "False"),
             p.cond("Ready", "False", "PodFailed"), p.cond("ContainersReady", "False",
                                                            "PodFailed")]
    for other in p.plan.containers:
        p.container_status(other, {"terminated": {
            "exitCode": 137, "reason": "Error", "startedAt": kl.rfc3339_s(p.t - 20_000_000),
            "finishedAt": kl.rfc3339_s(p.t), "containerID": ids[other.name]}},
            cid=ids[other.name])
    p.status(conds=conds, containers=True, phase="Failed",
             extra={"message": msg, "reason": "Evicted"}, moments=(("delivery", "end"),))


def preempted(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    c = p.plan.containers[0]
    node = p.node
    assert node is not None
    p.soon()
    kl.pulling(p, c)
    p.after(p.rng.uniform(3, 20))
    preempt(p)
    kl.stop_after_delete(p, running=False)


def deleted_before_ready(p: PodSim) -> None:
    if _until_started(p) is None:
        return
    ids = kl.run_app_containers(p)
    _running(p, ids)
    p.after(p.rng.uniform(1, 8))
    who = p.plan.creator
    p.delete(who)
    kl.stop_after_delete(p, running=True)


def no_progress(p: PodSim) -> None:
    if not _created(p):
        return
    _scheduled(p)
    _picked_up(p)


# -- API server rejections ----------------------------------------------------------------
def _rejected(kind: str) -> Callable[[PodSim], None]:
    def run(p: PodSim) -> None:
        name = p.name or p.cluster.pod_name(p.ns, p.plan.generate_name)
        p.name = name
        c = p.plan.containers[0]
        notes = None
        if kind == "pss":
            why = (f'privileged (container "{c.name}" must not set '
                   f"securityContext.privileged=true), allowPrivilegeEscalation != false "
                   f'(container "{c.name}" must set securityContext.allowPrivilegeEscalation'
                   "=false)")
            msg = f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {why}'
            failure = failure_status(403, "Forbidden", msg, {"name": name, "kind": "pods"})
            notes = {"pod-security.kubernetes.io/enforce-policy": "baseline:latest",
                     "pod-security.kubernetes.io/audit-violations":
                         f'would violate PodSecurity "restricted:latest": {why}'}
        elif kind == "webhook":
            msg = (f'admission webhook "validate.kyverno.svc-fail" denied the request: \n\n'
                   f"resource Pod/{p.ns}/{name} was blocked due to the following policies \n\n"
                   "require-image-digest:\n  check-digest: 'validation error: Images must use "
                   "a digest. rule check-digest failed at path /spec/containers/0/image/'\n")
            failure = failure_status(400, "BadRequest", msg)
        elif kind == "quota":
            msg = (f'pods "{name}" is forbidden: exceeded quota: compute-resources, requested: '
                   f"requests.cpu={c.cpu}, used: requests.cpu=3900m, limited: requests.cpu=4")
            failure = failure_status(403, "Forbidden", msg, {"name": name, "kind": "pods"})
        elif kind == "invalid":
            field = "spec.containers[0].resources.requests"
            detail = f'Invalid value: "{c.cpu}": must be less than or equal to cpu limit of 50m'
            msg = f'Pod "{name}" is invalid: {field}: {detail}'
            failure = failure_status(422, "Invalid", msg, {
                "name": name, "kind": "Pod",
                "causes": [{"reason": "FieldValueInvalid", "message": detail,
                            "field": field}]})
        else:
            msg = "Internal error occurred: resource quota evaluation timed out"
            failure = failure_status(500, "InternalError", msg,
                                     {"causes": [{"message": "resource quota evaluation "
                                                             "timed out"}]})
        p.create(failure=failure, annotations=notes)
        if p.plan.generate_name and name not in msg:
            # no Pod and no name in the log: the request only carried generateName
            p.truth.name = p.plan.generate_name
        if p.plan.owner_kind:
            p.owner_event("FailedCreate", f"Error creating: {msg}", "Warning")
    return run


def admission_denied(p: PodSim) -> None:
    _rejected("webhook" if p.sim.turn("admission_denied") % 3 == 1 else "pss")(p)


def _gate_prepare(plan: PodPlan, rng: random.Random) -> None:
    plan.readiness_gates = [f"target-health.elbv2.k8s.aws/k8s-{plan.namespace}-"
                            f"{plan.containers[0].name}-{rng.randrange(16**10):010x}"]


def _init_prepare(plan: PodPlan, rng: random.Random) -> None:
    plan.init_containers.append(ContainerPlan(
        "wait-for-db", "docker.io/library/busybox:1.36.1", init=True, run_s=rng.uniform(1, 3)))


def _probe_prepare(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].readiness = (5, 5)


def _gpu(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].gpu = 1


def _host_port(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].host_port = 8080


def _selector(plan: PodPlan, rng: random.Random) -> None:
    plan.node_selector = {"node.kubernetes.io/instance-type": "m7i.48xlarge"}


def _big(plan: PodPlan, rng: random.Random) -> None:
    plan.containers[0].cpu = "24"
    plan.containers[0].memory = "200Gi"


def _sts_prepare(plan: PodPlan, rng: random.Random) -> None:
    if not any("persistentVolumeClaim" in v for v in plan.volumes):
        plan.volumes.append({"name": "data", "persistentVolumeClaim": {
            "claimName": f"data-{plan.name or plan.generate_name + 'x'}"}})


def _all(*fns: Callable[[PodPlan, random.Random], None]
         ) -> Callable[[PodPlan, random.Random], None]:
    def prepare(plan: PodPlan, rng: random.Random) -> None:
        for fn in fns:
            fn(plan, rng)
    return prepare


_LIST: list[Scenario] = [
    Scenario("healthy", None, "delivered quickly", healthy),
    Scenario("slow_image_pull", "ImagePullSlow", "image pull takes minutes", slow_image_pull,
             prepare=slow_pull_prepare, status_reason=None),  # pulls are Events only
    Scenario("slow_kubelet", "KubeletSlow", "long gap between binding and the kubelet",
             slow_kubelet),
    Scenario("slow_container_start", "ContainerStartSlow", "Created→Started takes long",
             slow_container_start, status_reason=None),  # Created, Started: Events only
    Scenario("slow_readiness", None, "readiness probe fails for a while (user time)",
             slow_readiness, _LONG, _probe_prepare),
    Scenario("readiness_gate", None, "readiness gate satisfied late (user time)",
             readiness_gate, _LONG, _gate_prepare),
    Scenario("readiness_gate_not_ready", "ReadinessGateNotReady",
             "the readiness gate's condition is never set", readiness_gate_not_ready, _LONG,
             _gate_prepare),
    Scenario("init_containers", None, "slow init container (user time)", init_containers,
             prepare=_init_prepare),
    Scenario("scheduling_slow", "SchedulingSlow", "unschedulable for a while, then bound",
             scheduling_slow),
    Scenario("unschedulable_cpu", "InsufficientResources", "Insufficient cpu",
             _unschedulable("cpu"), prepare=_big),
    Scenario("unschedulable_memory", "InsufficientResources", "Insufficient memory",
             _unschedulable("memory"), prepare=_big),
    Scenario("unschedulable_extended", "InsufficientResources", "Insufficient nvidia.com/gpu",
             _unschedulable("extended"), prepare=_gpu),
    Scenario("unschedulable_node_selector", "NodeSelectorMismatch",
             "no node matches the node selector/affinity", _unschedulable("node_selector"),
             prepare=_selector),
    Scenario("unschedulable_taint", "UntoleratedTaint", "every node has an untolerated taint",
             _unschedulable("taint")),
    Scenario("unschedulable_anti_affinity", "PodAffinityConflict",
             "pod anti-affinity rules rule out every node", _unschedulable("anti_affinity"),
             _LONG),
    Scenario("unschedulable_topology_spread", "TopologySpreadUnsatisfied",
             "topology spread constraints unsatisfiable", _unschedulable("topology_spread"),
             _LONG),
    Scenario("unschedulable_node_port", "NodePortConflict", "hostPort taken on every node",
             _unschedulable("node_port"), _LONG, _host_port),
    Scenario("unschedulable_unbound_pvc", "UnboundPVC", "PVC never binds",
             _unschedulable("unbound_pvc"), ("statefulset",)),
    Scenario("unschedulable_volume_node_affinity", "VolumeNodeAffinityConflict",
             "the PV lives in another zone", _unschedulable("volume_node_affinity"),
             ("statefulset",)),
    Scenario("image_not_found", "ImageNotFound", "the image tag does not exist",
             _pull_failure(_not_found), prepare=_missing_tag),
    Scenario("image_pull_auth", "ImagePullAuthFailed", "registry refuses the credentials",
             _pull_failure(_auth), prepare=_private),
    Scenario("invalid_image_name", "InvalidImageName", "the image reference cannot parse",
             invalid_image_name, prepare=_bad_name),
    Scenario("image_pull_failed", "ImagePullFailed", "registry keeps failing (503)",
             _pull_failure(_server_error), prepare=slow_pull_prepare),
    Scenario("image_pull_backoff", "ImagePullBackOff",
             "rate-limited pulls back off, then succeed late",
             _pull_failure(_rate_limited, recover_after=3), prepare=slow_pull_prepare),
    Scenario("crash_loop", "CrashLoopBackOff", "the container keeps exiting 1",
             _crash("Error", 1)),
    Scenario("oom_killed", "OOMKilled", "the container is OOM-killed (137)",
             _crash("OOMKilled", 137)),
    Scenario("create_container_config_error", "CreateContainerConfigError",
             "env refers to a missing configmap key",
             _after_pull_failure("CreateContainerConfigError", _config_error),
             prepare=_with_configmap_env),
    Scenario("create_container_error", "CreateContainerError",
             "the runtime cannot create the container",
             _after_pull_failure("CreateContainerError", _create_error)),
    Scenario("run_container_error", "RunContainerError", "the entrypoint does not exist",
             run_container_error),
    Scenario("post_start_hook_failed", "PostStartHookFailed", "postStart hook exits 1",
             post_start_hook_failed, _LONG),
    Scenario("mount_failure", "VolumeMountFailed", "NFS mount times out",
             _stuck_events("FailedMount", _mount_failed, first_s=2, cap_s=128), _LONG, _nfs,
             status_reason="NoProgress"),  # FailedMount: an Event only
    Scenario("configmap_missing", "ConfigMapOrSecretMissing",
             "a configMap/secret volume's source does not exist",
             _stuck_events("FailedMount", _cm_missing, first_s=1, cap_s=128),
             prepare=_cm_volume, status_reason="NoProgress"),
    Scenario("volume_attach_failed", "VolumeAttachFailed", "Multi-Attach error",
             _stuck_events("FailedAttachVolume", _multi_attach, first_s=5, cap_s=300,
                           component="attachdetach-controller"), ("statefulset",),
             _sts_prepare, status_reason="NoProgress"),
    Scenario("cni_failure", "SandboxCreateFailed", "the CNI plugin fails to add the pod",
             _stuck_events("FailedCreatePodSandBox", _sandbox_failed, first_s=5, cap_s=300),
             status_reason="NoProgress"),
    Scenario("ip_allocation_failed", "IPAllocationFailed", "the node's pod CIDR is exhausted",
             _stuck_events("FailedCreatePodSandBox", _ip_exhausted, first_s=5, cap_s=300),
             status_reason="NoProgress"),
    Scenario("network_not_ready", "NetworkNotReady",
             "the CNI is not initialised yet; recovers after a while",
             _stuck_events("NetworkNotReady", _network_not_ready, first_s=2, cap_s=30,
                           recover=(30.0, 150.0)), status_reason="Unknown"),
    Scenario("kubelet_admission_rejected", "KubeletAdmissionRejected",
             "kubelet admission rejects the pod (OutOfcpu)", kubelet_admission_rejected),
    Scenario("node_not_ready", "NodeNotReady", "the node goes NotReady after binding",
             node_not_ready, _LONG),
    Scenario("liveness_probe_failed", "LivenessProbeFailed",
             "liveness probe kills the container before it is ready",
             _crash("Error", 137, liveness=True), _LONG, _with_liveness,
             status_reason="CrashLoopBackOff"),  # the status shows the restarts, not why
    Scenario("readiness_probe_failed", "ReadinessProbeFailed", "never becomes ready",
             lambda p: _deliver(p, fail_s=10_000), _LONG, _probe_prepare),
    Scenario("admission_denied", "AdmissionDenied", "PodSecurity or a webhook denies it",
             admission_denied),
    Scenario("quota_exceeded", "QuotaExceeded", "ResourceQuota exceeded", _rejected("quota")),
    Scenario("invalid_spec", "InvalidSpec", "validation fails (422)", _rejected("invalid")),
    Scenario("apiserver_error", "APIServerError", "the API server fails (500)",
             _rejected("internal")),
    Scenario("preempted", "Preempted", "preempted by a higher-priority pod before ready",
             preempted, _LONG),
    Scenario("evicted", "Evicted", "node-pressure eviction before ready", evicted, _LONG,
             _probe_prepare),
    Scenario("deleted_before_ready", "DeletedBeforeDelivered", "deleted before it was ready",
             deleted_before_ready, _LONG, _probe_prepare),
    Scenario("init_container_failed", "InitContainerFailed", "an init container exits 1",
             init_container_failed, prepare=_with_init),
    Scenario("no_progress", "NoProgress", "the kubelet admits it and then nothing happens",
             no_progress),
]

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _LIST}


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``name=weight,...`` (``all`` expands to every scenario, weight 1 if omitted)."""
    mix: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        name, _, weight = part.partition("=")
        value = float(weight) if weight else 1.0
        if value < 0:
            raise ValueError(f"negative weight for {name!r}")
        if name == "all":
            for known in SCENARIOS:
                mix.setdefault(known, value)
            continue
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; see --list-scenarios")
        mix[name] = value
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the scenario mix is empty")
    return mix


# keep the reason table consistent with the scheduler's causes
assert {v[2] for v in UNSCHEDULABLE.values()} <= {s.reason for s in _LIST}
