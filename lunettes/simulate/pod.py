"""One simulated Pod: its object as the API server stores it, and every request about it.

Scenario scripts drive a PodSim forward in time; each request is written to the audit
log at once (so bodies are serialized before the next change) and marks the moments of
the Pod's delivery it makes known to a reader (the truth, on the simulator's clock).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lunettes.simulate.audit import AuditLog, Written, object_ref
from lunettes.simulate.clock import MINUTE, SECOND, rfc3339, rfc3339_s
from lunettes.simulate.cluster import Cluster, Identity, Node
from lunettes.simulate.truth import Mark, PodTruth
from lunettes.simulate.workloads import ContainerPlan, PodPlan, pod_spec, request_spec

if TYPE_CHECKING:
    from lunettes.simulate.engine import Simulation

__all__ = ["HORIZON_US", "Moment", "PodSim"]

Moment = tuple[str, ...]
"""``(stage, edge[, instance[, key]])``: a stage starts or ends with this request (see
:class:`lunettes.simulate.truth.Mark`)."""

HORIZON_US = 36 * MINUTE
"""Stuck Pods keep producing records this long after creation, then the log goes quiet."""

KUBELET_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                 "PodScheduled")
_QOS = "Burstable"


@dataclass(slots=True)
class _EventState:
    name: str
    count: int
    first_us: int
    body: dict[str, Any]
    attributed: bool
    readable: bool


class PodSim:
    """The state of one Pod and the primitives that write requests about it."""

    def __init__(self, sim: Simulation, plan: PodPlan, scenario: str, reason: str | None,
                 t0: int) -> None:
        self.sim = sim
        self.cluster: Cluster = sim.cluster
        self.rng: random.Random = sim.rng
        self.log: AuditLog = sim.audit
        self.plan = plan
        self.scenario = scenario
        self.t = t0
        self.t0 = t0
        self._last_us = t0 - 1
        self.horizon = t0 + HORIZON_US
        self.ns = plan.namespace
        self.name = plan.name
        self.uid = ""
        self.node: Node | None = None
        self.meta: dict[str, Any] = {}
        self.spec: dict[str, Any] = {}
        self.conds: dict[str, dict[str, Any]] = {}
        self.cstat: dict[str, dict[str, Any]] = {}
        self.istat: dict[str, dict[str, Any]] = {}
        self.status_extra: dict[str, Any] = {}
        self.phase = "Pending"
        self.name_known = bool(plan.name)
        self.events: dict[tuple[str, str, str], _EventState] = {}
        self._tokens = 25.0
        self._token_t = t0
        self._cond_keys: dict[str, tuple[str, str, str]] = {}
        self._cont_keys: dict[tuple[bool, str], tuple[str, str, int, bool]] = {}
        self._kubelet_seen = False
        self.truth = PodTruth("", plan.namespace, plan.name, scenario, plan.workload, reason,
                              plan.completes, None)

    # -- time -------------------------------------------------------------------------
    def after(self, seconds: float) -> int:
        """Advance the Pod's clock by ``seconds`` (at least 1 us) and return it."""
        self.t += max(1, int(seconds * SECOND))
        return self.t

    def _stamp(self) -> int:
        """The time of the next record: never the same microsecond as the last one."""
        if self.t <= self._last_us:
            self.t = self._last_us + self.rng.randint(200, 3000)
        self._last_us = self.t
        return self.t

    def soon(self) -> int:
        """A few milliseconds later: back-to-back requests of one component."""
        return self.after(self.rng.uniform(0.002, 0.03))

    def alive(self) -> bool:
        """Still within the horizon the simulator writes for a stuck Pod."""
        return self.t < self.horizon

    def _latency(self) -> int:
        return self.rng.randint(700, 9000)

    # -- the Pod object ---------------------------------------------------------------
    def status_obj(self) -> dict[str, Any]:
        st: dict[str, Any] = {"phase": self.phase}
        if self.conds:
            st["conditions"] = [self.conds[k] for k in self._cond_order()]
        st.update(self.status_extra)
        if self.istat:
            st["initContainerStatuses"] = [self.istat[k] for k in sorted(self.istat)]
        if self.cstat:
            st["containerStatuses"] = [self.cstat[k] for k in sorted(self.cstat)]
        st["qosClass"] = _QOS
        return st

    def _cond_order(self) -> list[str]:
        order = [k for k in KUBELET_ORDER if k in self.conds]
        order += [k for k in self.conds if k not in KUBELET_ORDER]
        return order

    def obj(self) -> dict[str, Any]:
        return {"kind": "Pod", "apiVersion": "v1", "metadata": self.meta, "spec": self.spec,
                "status": self.status_obj()}

    def _named_ref(self, sub: str = "") -> dict[str, Any]:
        return object_ref("pods", self.ns, self.name, subresource=sub)

    def _uri(self, sub: str = "") -> str:
        base = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
        return f"{base}/{sub}" if sub else base

    def _seen(self, t: int, source: str) -> None:
        """A request a reader can attribute to the Pod was written at ``t`` by
        ``source``: the kubelet's first one ends its pickup and starts the sandbox."""
        truth = self.truth
        if truth.first_seen_us is None:
            truth.first_seen_us = t
        if source == "kubelet" and not self._kubelet_seen:
            self._kubelet_seen = True
            truth.marks += [Mark(t, "kubelet_pickup", "end"), Mark(t, "sandbox", "start")]

    def _moments(self, t: int, moments: tuple[Moment, ...] | list[Moment]) -> None:
        """What this readable request, written at ``t``, started or ended."""
        self.truth.marks += [Mark(t, *m) for m in moments]

    # -- create -----------------------------------------------------------------------
    def create(self, failure: dict[str, Any] | None = None,
               annotations: dict[str, str] | None = None) -> bool:
        """The creator's POST; a ``failure`` Status makes the API server reject it."""
        plan, c = self.plan, self.cluster
        t = self._stamp()
        if not self.name:
            self.name = c.pod_name(self.ns, plan.generate_name)
        req_meta: dict[str, Any] = {}
        if plan.generate_name:
            req_meta["generateName"] = plan.generate_name
        else:
            req_meta["name"] = self.name
            req_meta["namespace"] = self.ns
        req_meta["creationTimestamp"] = None
        req_meta["labels"] = plan.labels
        owner_refs = None
        if plan.owner_kind:
            owner_refs = [{"apiVersion": "batch/v1" if plan.owner_kind == "Job" else "apps/v1",
                           "kind": plan.owner_kind, "name": plan.owner_name,
                           "uid": plan.owner_uid, "controller": True,
                           "blockOwnerDeletion": True}]
            req_meta["ownerReferences"] = owner_refs
        request = {"kind": "Pod", "apiVersion": "v1", "metadata": req_meta,
                   "spec": request_spec(plan), "status": {}}
        notes = {"pod-security.kubernetes.io/enforce-policy": f"{plan.pss_level}:latest"}
        if annotations:
            notes.update(annotations)
        ref = object_ref("pods", self.ns, "" if plan.generate_name else self.name)
        uri = f"/api/v1/namespaces/{self.ns}/pods"
        truth = self.truth
        truth.created_us = t
        truth.name = self.name
        if failure is not None:
            w = self.log.emit(t, self.rng.randint(2000, 30000), "create", uri, plan.creator,
                              ref, request=request, failure=failure, annotations=notes)
            truth.uid = w.audit_id
            truth.rejected = True
            if w.level != "None":
                self._seen(t, plan.creator.source)
                self._moments(t, [("delivery", "start")])  # refused: never scheduled
            return False
        self.uid = c.uuid()
        truth.uid = self.uid
        meta: dict[str, Any] = {"name": self.name}
        if plan.generate_name:
            meta["generateName"] = plan.generate_name
        meta["namespace"] = self.ns
        meta["uid"] = self.uid
        meta["resourceVersion"] = c.rv()
        meta["creationTimestamp"] = rfc3339_s(t)
        meta["labels"] = plan.labels
        if owner_refs:
            meta["ownerReferences"] = owner_refs
        self.meta = meta
        self.spec = pod_spec(plan, f"kube-api-access-{c.name(5)}")
        w = self.log.emit(t, self.rng.randint(4000, 40000), "create", uri, plan.creator, ref,
                          201, request=request, response=self.obj(), annotations=notes)
        if w.level != "None" and (self.name_known or w.response_body):
            self.name_known = True
            self._seen(t, plan.creator.source)
            self._moments(t, [("delivery", "start"), ("scheduling", "start")])
        return True

    def owner_event(self, reason: str, message: str, etype: str = "Normal") -> None:
        """The controller's Event on the owning object (SuccessfulCreate, FailedCreate)."""
        plan = self.plan
        if not plan.owner_kind:
            return
        ident = plan.creator
        t = self.soon()
        group = "batch/v1" if plan.owner_kind == "Job" else "apps/v1"
        name = self.cluster.event_name(plan.owner_name, t)
        body = {"kind": "Event", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": self.ns, "creationTimestamp": None},
                "involvedObject": {"kind": plan.owner_kind, "namespace": self.ns,
                                   "name": plan.owner_name, "uid": plan.owner_uid,
                                   "apiVersion": group, "resourceVersion": self.cluster.rv()},
                "reason": reason, "message": message,
                "source": {"component": ident.source},
                "firstTimestamp": rfc3339_s(t), "lastTimestamp": rfc3339_s(t), "count": 1,
                "type": etype, "eventTime": None, "reportingComponent": ident.source,
                "reportingInstance": ""}
        resp = {**body, "metadata": {"name": name, "namespace": self.ns,
                                     "uid": self.cluster.uuid(),
                                     "resourceVersion": self.cluster.rv(),
                                     "creationTimestamp": rfc3339_s(t)}}
        self.log.emit(t, self._latency(), "create", f"/api/v1/namespaces/{self.ns}/events",
                      ident, object_ref("events", self.ns, name), 201, request=body,
                      response=resp)

    # -- binding ----------------------------------------------------------------------
    def bind(self, node: Node) -> None:
        """The scheduler's pods/binding; the API server sets PodScheduled=True itself."""
        t = self._stamp()
        self.node = node
        self.truth.node = node.name
        self.spec["nodeName"] = node.name
        self.conds["PodScheduled"] = {"type": "PodScheduled", "status": "True",
                                      "lastProbeTime": None,
                                      "lastTransitionTime": rfc3339_s(t)}
        self._cond_keys["PodScheduled"] = ("True", "", "")
        self.meta["resourceVersion"] = self.cluster.rv()
        request = {"kind": "Binding", "apiVersion": "v1",
                   "metadata": {"name": self.name, "namespace": self.ns, "uid": self.uid,
                                "creationTimestamp": None},
                   "target": {"kind": "Node", "name": node.name}}
        response = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "code": 201}
        w = self.log.emit(t, self.rng.randint(1500, 12000), "create", self._uri("binding"),
                          self.cluster.scheduler, self._named_ref("binding"), 201,
                          request=request, response=response)
        if w.level != "None":
            self.name_known = True
            self._seen(t, "kube-scheduler")
            self._moments(t, [("scheduling", "end"), ("kubelet_pickup", "start")])

    # -- status -----------------------------------------------------------------------
    def cond(self, ctype: str, status: str, reason: str = "", message: str = ""
             ) -> dict[str, Any]:
        """Set a condition on the Pod; returns the condition as written in a patch."""
        t = self.t
        old = self.conds.get(ctype)
        transition = rfc3339_s(t) if old is None or old["status"] != status else \
            old["lastTransitionTime"]
        c: dict[str, Any] = {"lastProbeTime": None, "lastTransitionTime": transition}
        if message:
            c["message"] = message
        if reason:
            c["reason"] = reason
        c["status"] = status
        c["type"] = ctype
        self.conds[ctype] = c
        return c

    def container_status(self, c: ContainerPlan, state: dict[str, Any], *, ready: bool = False,
                         started: bool = False, restarts: int = 0,
                         last: dict[str, Any] | None = None, cid: str = "") -> None:
        """Set a container's status (kept sorted by name as the kubelet writes it)."""
        cs: dict[str, Any] = {}
        prev = (self.istat if c.init else self.cstat).get(c.name)
        if cid or (prev and "containerID" in prev and "waiting" not in state):
            cs["containerID"] = cid or prev["containerID"]  # type: ignore[index]
        cs["image"] = c.image
        cs["imageID"] = self.sim.image_id(c.image) if cid or "containerID" in cs else ""
        cs["lastState"] = last if last is not None else (prev["lastState"] if prev else {})
        cs["name"] = c.name
        cs["ready"] = ready
        cs["restartCount"] = restarts
        cs["started"] = started
        cs["state"] = state
        (self.istat if c.init else self.cstat)[c.name] = cs

    def status(self, ident: Identity | None = None, conds: list[dict[str, Any]] = (),  # type: ignore[assignment]
               containers: bool = False, phase: str = "", extra: dict[str, Any] | None = None,
               set_order: bool = True, moments: tuple[Moment, ...] = ()) -> Written:
        """PATCH pods/status with the given changed conditions (already set with ``cond``),
        the full container status lists when ``containers``, a new phase and extra fields.

        ``moments``: the stages this report starts or ends. Containers reported running or
        terminated anew (a new state or a restart) mark their own moments: the sandbox was
        ready, init containers began, an app container started (and may open readiness).
        """
        t = self._stamp()
        ident = ident or self.node.identity  # type: ignore[union-attr]
        patch_status: dict[str, Any] = {}
        if set_order and ident.source == "kubelet":
            patch_status["$setElementOrder/conditions"] = [
                {"type": k} for k in self._cond_order()]
        if conds:
            patch_status["conditions"] = list(conds)
        if containers:
            if self.istat:
                patch_status["initContainerStatuses"] = [self.istat[k] for k in sorted(self.istat)]
            if self.cstat:
                patch_status["containerStatuses"] = [self.cstat[k] for k in sorted(self.cstat)]
        if extra:
            patch_status.update(extra)
            self.status_extra.update(extra)
        if phase:
            patch_status["phase"] = phase
            self.phase = phase
        patch: dict[str, Any] = {}
        if ident.source == "kubelet":
            patch["metadata"] = {"uid": self.uid}
        patch["status"] = patch_status
        self.meta["resourceVersion"] = self.cluster.rv()
        w = self.log.emit(t, self._latency(), "patch", self._uri("status"), ident,
                          self._named_ref("status"), request=patch, response=self.obj())
        # what a reader learns: changed conditions and containers
        changed_conds = []
        for c in conds:
            key = (c["status"], c.get("reason", ""), c.get("message", ""))
            if self._cond_keys.get(c["type"]) != key:
                self._cond_keys[c["type"]] = key
                changed_conds.append((c["type"], c["status"]))
        changed_cont = []
        if containers:
            for init, table in ((True, self.istat), (False, self.cstat)):
                for name in sorted(table):
                    cs = table[name]
                    kind = next(k for k in ("terminated", "running", "waiting")
                                if k in cs["state"])
                    ckey = (kind, cs["state"][kind].get("reason", ""), cs["restartCount"],
                            cs["ready"])
                    old = self._cont_keys.get((init, name))
                    if old != ckey:
                        self._cont_keys[(init, name)] = ckey
                        transition = old is None or old[0] != kind or old[2] != ckey[2]
                        changed_cont.append((name, init, kind, transition))
        if w.level == "None":
            return w
        if ("Ready", "True") in changed_conds and not self.plan.completes and \
                self.truth.delivered_us is None and self.truth.deleted_us is None:
            self.truth.delivered_us = t
        if phase in ("Succeeded", "Failed") and not self.truth.terminal:
            self.truth.terminal = phase
        self.name_known = True
        self._seen(t, ident.source)
        if w.request_body:
            self._moments(t, moments)
            for name, init, kind, transition in changed_cont:
                if transition and kind in ("running", "terminated"):
                    image = (self.istat if init else self.cstat)[name]["image"]
                    self._moments(t, _container_moments(name, init, kind, image))
        return w

    # -- events -----------------------------------------------------------------------
    def event(self, reason: str, message: str, etype: str = "Normal",
              c: ContainerPlan | None = None, image: str = "",
              moments: tuple[Moment, ...] = ()) -> None:
        """A kubelet core/v1 Event about the Pod: created once, then patched (count++).

        The kubelet's spam filter (burst 25, one more per 5 minutes) drops the excess.
        ``moments``: the stages this Event starts or ends.
        """
        node = self.node
        assert node is not None
        t = self.t
        self._tokens = min(25.0, self._tokens + (t - self._token_t) / (300 * SECOND))
        self._token_t = t
        if self._tokens < 1.0:
            return
        self._tokens -= 1.0
        field_path = ""
        if c is not None:
            field_path = f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"
        self._core_event(node.identity, "kubelet", node.name, reason, message, etype,
                         field_path, c, image, moments)

    def controller_event(self, ident: Identity, reason: str, message: str,
                         etype: str = "Warning") -> None:
        """A core/v1 Event about the Pod written by a controller."""
        self._core_event(ident, ident.source, "", reason, message, etype, "", None, "")

    def _core_event(self, ident: Identity, component: str, host: str, reason: str,
                    message: str, etype: str, field_path: str, c: ContainerPlan | None,
                    image: str, moments: tuple[Moment, ...] = ()) -> None:
        t = self._stamp()
        key = (reason, message, field_path)
        state = self.events.get(key)
        stamp = rfc3339_s(t)
        if state is None:
            name = self.cluster.event_name(self.name, t)
            involved: dict[str, Any] = {"kind": "Pod", "namespace": self.ns, "name": self.name,
                                        "uid": self.uid, "apiVersion": "v1",
                                        "resourceVersion": self.meta["resourceVersion"]}
            if field_path:
                involved["fieldPath"] = field_path
            source: dict[str, Any] = {"component": component}
            if host:
                source["host"] = host
            body: dict[str, Any] = {
                "kind": "Event", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": self.ns, "creationTimestamp": None},
                "involvedObject": involved, "reason": reason, "message": message,
                "source": source, "firstTimestamp": stamp, "lastTimestamp": stamp,
                "count": 1, "type": etype, "eventTime": None,
                "reportingComponent": component, "reportingInstance": host,
            }
            resp = {**body, "metadata": {"name": name, "namespace": self.ns,
                                         "uid": self.cluster.uuid(),
                                         "resourceVersion": self.cluster.rv(),
                                         "creationTimestamp": stamp}}
            w = self.log.emit(t, self._latency(), "create",
                              f"/api/v1/namespaces/{self.ns}/events", ident,
                              object_ref("events", self.ns, name), 201, request=body,
                              response=resp)
            state = _EventState(name, 1, t, resp, self.name_known, w.request_body)
            self.events[key] = state
        else:
            state.count += 1
            patch = {"count": state.count, "lastTimestamp": stamp, "message": message}
            resp = {**state.body, "count": state.count, "lastTimestamp": stamp,
                    "metadata": {**state.body["metadata"],
                                 "resourceVersion": self.cluster.rv()}}
            state.body = resp
            w = self.log.emit(t, self._latency(), "patch",
                              f"/api/v1/namespaces/{self.ns}/events/{state.name}", ident,
                              object_ref("events", self.ns, state.name), request=patch,
                              response=resp)
        if w.level == "None" or not state.attributed:
            return
        self._seen(t, ident.source)
        if state.readable:
            self._moments(t, moments)

    def scheduler_event(self, reason: str, note: str, etype: str, action: str) -> None:
        """An events.k8s.io/v1 Event from the scheduler: created, then series-patched."""
        t = self._stamp()
        ident = self.cluster.scheduler
        key = (reason, note, "events.k8s.io")
        state = self.events.get(key)
        micro = rfc3339(t)
        if state is None:
            name = self.cluster.event_name(self.name, t)
            body: dict[str, Any] = {
                "kind": "Event", "apiVersion": "events.k8s.io/v1",
                "metadata": {"name": name, "namespace": self.ns, "creationTimestamp": None},
                "eventTime": micro, "reportingController": "default-scheduler",
                "reportingInstance": self.cluster.scheduler_instance, "action": action,
                "reason": reason,
                "regarding": {"kind": "Pod", "namespace": self.ns, "name": self.name,
                              "uid": self.uid, "apiVersion": "v1",
                              "resourceVersion": self.meta["resourceVersion"]},
                "note": note, "type": etype,
            }
            resp = {**body, "metadata": {"name": name, "namespace": self.ns,
                                         "uid": self.cluster.uuid(),
                                         "resourceVersion": self.cluster.rv(),
                                         "creationTimestamp": rfc3339_s(t)}}
            w = self.log.emit(t, self._latency(), "create",
                              f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events", ident,
                              object_ref("events", self.ns, name, group="events.k8s.io"), 201,
                              request=body, response=resp)
            state = _EventState(name, 1, t, resp, self.name_known, w.request_body)
            self.events[key] = state
        else:
            state.count += 1
            series = {"count": state.count, "lastObservedTime": micro}
            resp = {**state.body, "series": series,
                    "metadata": {**state.body["metadata"],
                                 "resourceVersion": self.cluster.rv()}}
            state.body = resp
            w = self.log.emit(t, self._latency(), "patch",
                              f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events/"
                              f"{state.name}", ident,
                              object_ref("events", self.ns, state.name, group="events.k8s.io"),
                              request={"series": series}, response=resp)
        if w.level == "None" or not state.attributed:
            return
        self._seen(t, "kube-scheduler")

    # -- delete -----------------------------------------------------------------------
    def delete(self, ident: Identity, final: bool = False) -> None:
        """DELETE the Pod: graceful by a user/controller, or the kubelet's final delete."""
        t = self._stamp()
        if final:
            options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                       "gracePeriodSeconds": 0,
                                       "preconditions": {"uid": self.uid}}
        else:
            options = {"kind": "DeleteOptions", "apiVersion": "v1",
                       "propagationPolicy": "Background"}
            self.meta["deletionTimestamp"] = rfc3339_s(t + 30 * SECOND)
            self.meta["deletionGracePeriodSeconds"] = 30
        self.meta["resourceVersion"] = self.cluster.rv()
        w = self.log.emit(t, self.rng.randint(2000, 15000), "delete", self._uri(), ident,
                          self._named_ref(), request=options, response=self.obj())
        if w.level != "None":
            if self.truth.deleted_us is None:
                self.truth.deleted_us = t
            self.name_known = True
            self._seen(t, ident.source)


def _container_moments(name: str, init: bool, state: str, image: str) -> list[Moment]:
    """A container the kubelet reports running or terminated anew: its sandbox was
    ready (and running, its image was there); an init container's run began the init stage; an app
    container had started (and, running, is a candidate for the last start that opens
    readiness)."""
    out: list[Moment] = [("sandbox", "end")]
    if state == "running":
        out.append(("image_pull", "end", image))
    if init:
        return [*out, ("init_containers", "start")]
    out.append(("container_start", "end", name))
    if state == "running":
        out.append(("readiness", "start", "", name))
    return out
