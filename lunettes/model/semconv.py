"""How a Pod's trace is named: the root stage, error outcomes and OpenTelemetry attribute
names shared by the OTLP sink and the API's trace view."""

from __future__ import annotations

ROOT_STAGE = "delivery"

AUDIT_ID = "audit-id"
"""The attribute naming an audit record's ID, as kube-apiserver's own request spans (etcd,
cacher, serialization) name it: span events made from audit records carry it."""

# Outcomes that mark the root span as an error, with the status message shown.
ERROR_OUTCOMES = {
    "failed": "pod failed (phase Failed)",
    "rejected": "pod creation was rejected",
    "timeout": "pod was not delivered within the pod timeout",
    "deleted": "pod was deleted before delivery",
}

# Pod owner kind -> OTel semantic-convention attribute naming the owner.
OWNER_ATTRIBUTES = {
    "ReplicaSet": "k8s.replicaset.name",
    "Deployment": "k8s.deployment.name",
    "StatefulSet": "k8s.statefulset.name",
    "DaemonSet": "k8s.daemonset.name",
    "Job": "k8s.job.name",
    "CronJob": "k8s.cronjob.name",
}

# Stage.instance_kind -> attribute naming the instance.
INSTANCE_ATTRIBUTES = {
    "container": "k8s.container.name",
    "image": "container.image.name",
}
