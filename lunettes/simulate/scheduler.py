"""kube-scheduler traffic: bindings, Scheduled/FailedScheduling Events, preemption."""

from __future__ import annotations

from lunettes.simulate.cluster import Node
from lunettes.simulate.pod import PodSim

__all__ = ["UNSCHEDULABLE", "failed_scheduling_message", "preempt", "schedule",
           "unschedulable"]

_NO_VICTIMS = "No preemption victims found for incoming pod"
_NOT_HELPFUL = "Preemption is not helpful for scheduling"
_CP_TAINT = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"

# cause → (filter reason for most nodes, preemption verdict, reason code)
UNSCHEDULABLE: dict[str, tuple[str, str, str]] = {
    "cpu": ("Insufficient cpu", _NO_VICTIMS, "InsufficientResources"),
    "memory": ("Insufficient memory", _NO_VICTIMS, "InsufficientResources"),
    "extended": ("Insufficient nvidia.com/gpu", _NO_VICTIMS, "InsufficientResources"),
    "node_selector": ("node(s) didn't match Pod's node affinity/selector", _NOT_HELPFUL,
                      "NodeSelectorMismatch"),
    "taint": ("node(s) had untolerated taint {dedicated: gpu}", _NOT_HELPFUL,
              "UntoleratedTaint"),
    "anti_affinity": ("node(s) didn't match pod anti-affinity rules", _NO_VICTIMS,
                      "PodAffinityConflict"),
    "topology_spread": ("node(s) didn't match pod topology spread constraints", _NO_VICTIMS,
                        "TopologySpreadUnsatisfied"),
    "node_port": ("node(s) didn't have free ports for the requested pod ports", _NO_VICTIMS,
                  "NodePortConflict"),
    "unbound_pvc": ("pod has unbound immediate PersistentVolumeClaims", _NOT_HELPFUL,
                    "UnboundPVC"),
    "volume_node_affinity": ("node(s) had volume node affinity conflict", _NOT_HELPFUL,
                             "VolumeNodeAffinityConflict"),
}


def failed_scheduling_message(cause: str, nodes: int, control_plane: int = 0) -> str:
    """The scheduler's FitError text: sorted ``<count> <reason>`` parts, then preemption.

    ``control_plane`` nodes fail on their taint instead of the cause (as in a kubeadm
    cluster where the control-plane node is tainted).
    """
    reason, verdict, _ = UNSCHEDULABLE[cause]
    total = nodes + control_plane
    if cause == "unbound_pvc":
        head = f"0/{total} nodes are available: {reason}."
        return f"{head} preemption: 0/{total} nodes are available: {total} {verdict}."
    parts = [f"{nodes} {reason}"]
    verdicts = [f"{nodes} {verdict}"]
    if control_plane:
        parts.append(f"{control_plane} {_CP_TAINT}")
        verdicts.append(f"{control_plane} {_NOT_HELPFUL}")
    if verdict == _NOT_HELPFUL:
        verdicts = [f"{total} {_NOT_HELPFUL}"]
    return (f"0/{total} nodes are available: {', '.join(sorted(parts))}. "
            f"preemption: 0/{total} nodes are available: {', '.join(sorted(verdicts))}.")


def schedule(p: PodSim, delay_s: float, node: Node | None = None) -> Node:
    """Bind the Pod after ``delay_s``, then write the Scheduled Event."""
    p.after(delay_s)
    node = node or p.sim.pick_node()
    p.bind(node)
    p.soon()
    p.scheduler_event("Scheduled", f"Successfully assigned {p.ns}/{p.name} to {node.name}",
                      "Normal", "Binding")
    return node


def unschedulable(p: PodSim, message: str, until_us: int | None = None) -> None:
    """Fail scheduling (Event + PodScheduled=False) and retry until ``until_us`` or the
    horizon; the scheduler's retries repeat the Event as a series patch."""
    p.after(p.rng.uniform(0.005, 0.06))
    p.scheduler_event("FailedScheduling", message, "Warning", "Scheduling")
    p.soon()
    cond = p.cond("PodScheduled", "False", "Unschedulable", message)
    p.status(p.cluster.scheduler, [cond], set_order=False)
    end = min(until_us if until_us is not None else p.horizon, p.horizon)
    delay = 5.0
    while True:
        nxt = p.t + int(delay * p.rng.uniform(0.8, 1.2) * 1_000_000)
        if nxt >= end:
            break
        p.after((nxt - p.t) / 1_000_000)
        p.scheduler_event("FailedScheduling", message, "Warning", "Scheduling")
        delay = min(300.0, delay * 2)
    if until_us is not None and until_us > p.t:
        p.after((until_us - p.t) / 1_000_000)


def preempt(p: PodSim) -> None:
    """The scheduler evicts this Pod for a higher-priority one: DisruptionTarget, the
    Preempted Event, the delete; then the kubelet stops it and deletes it for good."""
    node = p.node
    assert node is not None
    p.soon()
    cond = p.cond("DisruptionTarget", "True", "PreemptionByScheduler",
                  "default-scheduler: preempting to accommodate a higher priority pod")
    p.status(p.cluster.scheduler, [cond], set_order=False)
    p.soon()
    p.scheduler_event("Preempted", f"Preempted by pod {p.cluster.uuid()} on node {node.name}",
                      "Normal", "Preempting")
    p.soon()
    p.delete(p.cluster.scheduler)
