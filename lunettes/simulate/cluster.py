"""The simulated cluster: nodes, client identities, names, addresses, uids."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONTROL_PLANE_IP",
    "GIT_HASH",
    "KUBE_VERSION",
    "Cluster",
    "Identity",
    "Node",
    "controller_identity",
]

KUBE_VERSION = "v1.30.4"
GIT_HASH = "a51b3b7"
CONTROL_PLANE_IP = "10.0.0.10"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (0x4000 << 64)


def fast_uuid4(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))`` without building a UUID object."""
    h = f"{(bits & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Identity:
    """Who sends a request: the audit ``user``, userAgent, source IP, authz reason.

    ``source`` is the component name a reader derives from the user name (``kubelet``,
    ``kube-scheduler``, a controller name, or the user name itself).
    """

    user: dict[str, Any]
    user_agent: str
    source_ip: str
    authz_reason: str
    source: str


def _sa_identity(namespace: str, name: str, agent: str, ip: str, authz: str,
                 rng: random.Random) -> Identity:
    username = f"system:serviceaccount:{namespace}:{name}"
    user = {
        "username": username,
        "uid": fast_uuid4(rng.getrandbits(128)),
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                   "system:authenticated"],
    }
    return Identity(user, agent, ip, authz, name)


def controller_identity(name: str, rng: random.Random) -> Identity:
    """A kube-controller-manager controller using its own service account credentials."""
    agent = (f"kube-controller-manager/{KUBE_VERSION} (linux/amd64) kubernetes/{GIT_HASH}"
             f"/system:serviceaccount:kube-system:{name}")
    authz = (f'RBAC: allowed by ClusterRoleBinding "system:controller:{name}" of ClusterRole '
             f'"system:controller:{name}" to ServiceAccount "{name}/kube-system"')
    return _sa_identity("kube-system", name, agent, CONTROL_PLANE_IP, authz, rng)


@dataclass(slots=True)
class Node:
    """A worker node with its kubelet identity, address and pod CIDR."""

    name: str
    ip: str
    index: int
    kubelet_version: str
    identity: Identity
    next_ip: int = 2
    image_ready: dict[str, int] = field(default_factory=dict)
    """Image → time (us) from which it is present on the node."""

    @property
    def colon_created(self) -> bool:
        """Newer kubelets write ``Created container: c``; older ``Created container c``."""
        return self.kubelet_version >= "v1.31"

    def pod_ip(self) -> str:
        ip = f"10.244.{self.index}.{self.next_ip}"
        self.next_ip = self.next_ip + 1 if self.next_ip < 253 else 2
        return ip


class Cluster:
    """Nodes, identities and id generation, all drawn from one seeded rng."""

    def __init__(self, rng: random.Random, nodes: int, apiservers: int) -> None:
        self.rng = rng
        self.apiservers = apiservers
        self.resource_version = 10_000 + rng.randrange(1_000_000)
        self.nodes: list[Node] = []
        for i in range(nodes):
            name = f"worker-{i + 1:02d}"
            version = "v1.31.2" if i % 2 else KUBE_VERSION
            ident = Identity(
                {"username": f"system:node:{name}",
                 "groups": ["system:nodes", "system:authenticated"]},
                f"kubelet/{version} (linux/amd64) kubernetes/{GIT_HASH}",
                f"10.0.1.{10 + i}",
                "",
                "kubelet",
            )
            self.nodes.append(Node(name, f"10.0.1.{10 + i}", i + 1, version, ident))
        self.scheduler = Identity(
            {"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
            f"kube-scheduler/{KUBE_VERSION} (linux/amd64) kubernetes/{GIT_HASH}/scheduler",
            CONTROL_PLANE_IP,
            'RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole '
            '"system:kube-scheduler" to User "system:kube-scheduler"',
            "kube-scheduler",
        )
        self.admin = Identity(
            {"username": "kubernetes-admin",
             "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
            "192.168.10.23",
            'RBAC: allowed by ClusterRoleBinding "kubeadm:cluster-admins" of ClusterRole '
            '"cluster-admin" to Group "kubeadm:cluster-admins"',
            "kubernetes-admin",
        )
        self.ci = _sa_identity(
            "ci", "runner", "Go-http-client/2.0", "10.244.0.17",
            'RBAC: allowed by RoleBinding "runner-edit/ci" of ClusterRole "edit" to '
            'ServiceAccount "runner/ci"', rng)
        self.gate_controller = _sa_identity(
            "kube-system", "aws-load-balancer-controller",
            "aws-load-balancer-controller/v2.8.1 (linux/amd64) kubernetes/$Format",
            "10.244.0.31",
            'RBAC: allowed by ClusterRoleBinding "aws-load-balancer-controller-rolebinding" of '
            'ClusterRole "aws-load-balancer-controller-role" to ServiceAccount '
            '"aws-load-balancer-controller/kube-system"', rng)
        self.controllers: dict[str, Identity] = {
            name: controller_identity(name, rng)
            for name in ("replicaset-controller", "job-controller", "statefulset-controller",
                         "node-controller", "attachdetach-controller",
                         "taint-eviction-controller", "endpointslice-controller",
                         "deployment-controller", "persistent-volume-binder")
        }
        self.scheduler_instance = f"default-scheduler-control-plane-{self.name(5)}"
        self._taken: set[tuple[str, str]] = set()

    # -- ids --------------------------------------------------------------------------
    def uuid(self) -> str:
        """A random (version 4) UUID drawn from the seeded rng."""
        return fast_uuid4(self.rng.getrandbits(128))

    def name(self, n: int) -> str:
        """``n`` characters from the alphabet Kubernetes uses for generated names."""
        choice = self.rng.choice
        return "".join(choice(_NAME_CHARS) for _ in range(n))

    def pod_name(self, namespace: str, prefix: str) -> str:
        """A unique generated pod name ``<prefix><5 chars>``."""
        while True:
            name = prefix + self.name(5)
            if (namespace, name) not in self._taken:
                self._taken.add((namespace, name))
                return name

    def claim(self, namespace: str, name: str) -> bool:
        """Reserve a fixed name; False when already used."""
        if (namespace, name) in self._taken:
            return False
        self._taken.add((namespace, name))
        return True

    def rv(self) -> str:
        """The next resourceVersion."""
        self.resource_version += self.rng.randrange(1, 40)
        return str(self.resource_version)

    def hex64(self) -> str:
        """64 hex digits, like a container or sandbox id."""
        return f"{self.rng.getrandbits(256):064x}"

    def event_name(self, obj: str, t_us: int) -> str:
        """``<object>.<16 hex>``: Event names carry the UnixNano of their first time."""
        return f"{obj}.{t_us * 1000 + self.rng.randrange(1000):x}"
