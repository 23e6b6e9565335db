"""Server-side defaulting: what the API server fills in on every create and update, per kind.

A real API server defaults an object as it decodes it (the generated ``SetObjectDefaults_*`` functions
of ``pkg/apis/*/v1/defaults.go``), so the answer to a create already carries the defaulted object and a
client never sees a half-made one.  The twin does the same in one step, :func:`default`, which the store
runs on every create and every update of an object (the API's, the controllers' and the seed's alike);
each kind's rules are a function in :data:`RULES`, and a pod template is defaulted as a pod wherever it
sits (Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, ReplicationController).  The rules
are idempotent: defaulting a defaulted object changes nothing, so a no-op write stays a no-op.

Create-only preparation (the registry's ``PrepareForCreate`` and admission, run by
``Store._prepare_create`` with the functions below): a Pod's initial status (``Pending`` with its QoS
class), its service account and DefaultTolerationSeconds tolerations, a Service's cluster IPs from the
service CIDR (10.43.0.0/16, as on K3s), a Namespace's ``kubernetes`` finalizer and ``Active`` phase, a
Job's generated selector, and ``metadata.generation`` for the kinds that track it; an update keeps what
was allocated (:func:`keep_allocated`).  Only fields the seed's kinds use are covered; the rest of a kind
is stored as sent (lab/README.md lists the known differences).  The API runs :func:`default` too, before
it validates and records ownership (as the real server defaults while decoding); the store's run is then
a no-op.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Any

from lab.kube.errors import KubeError
from lab.kube.resources import Resource

Obj = dict[str, Any]

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_S = 300  # kube-apiserver --default-not-ready/unreachable-toleration-seconds
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the API server's random suffixes draw from
SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")  # the seed's service CIDR (K3s's default)
KUBERNETES_SERVICE_IP = "10.43.0.1"  # the first address: the apiserver's own Service
DNS_SERVICE_IP = "10.43.0.10"  # K3s's --cluster-dns
FILE_MODE = 420  # 0644: the default mode of secret, configMap, projected and downwardAPI volumes

# Kinds whose strategy sets metadata.generation (PrepareForCreate) — pods too since 1.34
# (PodObservedGenerationTracking, beta and on); custom resources always.
GENERATION_KINDS = {
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
    "CustomResourceDefinition",
}


def _set(obj: Obj, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


# ---- pods and pod templates -------------------------------------------------------------------------


def pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image, ``IfNotPresent`` otherwise (a digest included)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1)):
        _set(probe, key, value)
    _set(probe, "failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        _set(probe["httpGet"], "path", "/")
        _set(probe["httpGet"], "scheme", "HTTP")


def _container(c: Any) -> None:
    if not isinstance(c, dict):
        return
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    _set(c, "imagePullPolicy", pull_policy(str(c.get("image") or "")))
    _set(c, "resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        _probe(c.get(name))
    for env in c.get("env") or []:
        ref = ((env or {}).get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            _set(ref, "apiVersion", "v1")


VOLUME_SOURCES_WITH_MODE = ("secret", "configMap", "projected", "downwardAPI")


def _volume(v: Any) -> None:
    if not isinstance(v, dict):
        return
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in VOLUME_SOURCES_WITH_MODE:
        if isinstance(v.get(key), dict):
            _set(v[key], "defaultMode", FILE_MODE)


def pod_spec(spec: Any) -> None:
    """``SetDefaults_PodSpec`` and what it reaches (containers, probes, ports, volumes)."""
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        _container(c)
    for v in spec.get("volumes") or []:
        _volume(v)


def _template(template: Any) -> None:
    if isinstance(template, dict):
        pod_spec(template.get("spec"))


def _pod(obj: Obj) -> None:
    """``SetDefaults_Pod`` on top of the pod spec's: what only a Pod gets, never its template."""
    spec = obj.get("spec")
    pod_spec(spec)
    if not isinstance(spec, dict):
        return
    _set(spec, "enableServiceLinks", True)
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(c, dict) or not isinstance(c.get("resources"), dict):
            continue
        limits = c["resources"].get("limits") or {}
        if limits:  # requests default to the limits
            requests = c["resources"].setdefault("requests", {})
            for name, quantity in limits.items():
                requests.setdefault(name, quantity)
        if spec.get("hostNetwork"):
            for port in c.get("ports") or []:
                _set(port, "hostPort", port.get("containerPort"))


def _service(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        _set(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")


def _deployment(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        _set(ru, "maxUnavailable", "25%")
        _set(ru, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(spec.get("template"))


def _replicaset(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _set(spec, "replicas", 1)
        _template(spec.get("template"))


def _daemonset(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    strategy = spec.setdefault("updateStrategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        _set(ru, "maxUnavailable", 1)
        _set(ru, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(spec.get("template"))


def _statefulset(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _set(strategy.setdefault("rollingUpdate", {}), "partition", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _template(spec.get("template"))


def _job_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _set(spec, "podReplacementPolicy", "TerminatingOrFailed")
    _template(spec.get("template"))


def _job(obj: Obj) -> None:
    spec = obj.get("spec")
    _job_spec(spec)
    labels = (((spec or {}).get("template") or {}).get("metadata") or {}).get("labels")
    meta = obj.setdefault("metadata", {})
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)


def _cronjob(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    _template(((spec.get("jobTemplate") or {}).get("spec") or {}).get("template"))


def _replication_controller(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "replicas", 1)
    template = spec.get("template")
    _template(template)
    # SetDefaults_ReplicationController: selector and labels from the template's labels.
    labels = ((template or {}).get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)


def _namespace(obj: Obj) -> None:
    meta = obj.setdefault("metadata", {})
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]


def _secret(obj: Obj) -> None:
    _set(obj, "type", "Opaque")


def _pvc(obj: Obj) -> None:
    if isinstance(obj.get("spec"), dict):
        _set(obj["spec"], "volumeMode", "Filesystem")


def _network_policy(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
        for port in (rule or {}).get("ports") or []:
            if isinstance(port, dict):
                _set(port, "protocol", "TCP")


def _endpoints(obj: Obj) -> None:
    for subset in obj.get("subsets") or []:
        for port in (subset or {}).get("ports") or []:
            if isinstance(port, dict):
                _set(port, "protocol", "TCP")


def _binding(obj: Obj) -> None:
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
            _set(subject, "apiGroup", "rbac.authorization.k8s.io")


RULES: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("", "Secret"): _secret,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Endpoints"): _endpoints,
    ("", "ReplicationController"): _replication_controller,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replicaset,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "StatefulSet"): _statefulset,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cronjob,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding,
}


def _drop_nulls(value: Any) -> None:
    """No field of a built-in Go type holds JSON null: a null decodes as absent (``creationTimestamp:
    null`` in a template kubectl sends, an unset pointer)."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for v in value.values():
            _drop_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _drop_nulls(v)


def default(res: Resource, obj: Obj) -> None:
    """Fill in ``obj``'s defaults in place (every create and update)."""
    if res.custom:
        return
    _drop_nulls(obj)
    rule = RULES.get((res.group, res.kind))
    if rule is not None:
        rule(obj)


def keep_allocated(res: Resource, old: Obj, new: Obj) -> None:
    """An update keeps what the server allocated or holds, whatever the client sent: a Service's cluster
    IPs and IP families (a different address is refused: it is immutable), a Namespace's finalizers (only
    ``/finalize`` changes them)."""
    if res.group:
        return
    if res.kind == "Namespace":
        finalizers = (old.get("spec") or {}).get("finalizers")
        spec = new.setdefault("spec", {})
        if finalizers:
            spec["finalizers"] = list(finalizers)
        else:
            spec.pop("finalizers", None)
    elif res.kind == "Service":
        before, after = old.get("spec") or {}, new.setdefault("spec", {})
        asked = after.get("clusterIP")
        if asked and before.get("clusterIP") and asked != before["clusterIP"]:
            name = (new.get("metadata") or {}).get("name", "")
            raise KubeError(
                422,
                "Invalid",
                f'Service "{name}" is invalid: spec.clusterIPs[0]: Invalid value: []string{{"{asked}"}}: '
                "may not change once set",
                {"name": name, "kind": "Service", "causes": [{"reason": "FieldValueInvalid",
                 "message": f'Invalid value: []string{{"{asked}"}}: may not change once set',
                 "field": "spec.clusterIPs[0]"}]},
            )  # fmt: skip
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in before and not after.get(key):
                after[key] = copy.deepcopy(before[key])


# ---- create-only ------------------------------------------------------------------------------------


def tracks_generation(res: Resource) -> bool:
    return res.custom or res.kind in GENERATION_KINDS


def qos_class(spec: Obj) -> str:
    """``Guaranteed`` when every container's CPU and memory requests equal their limits, ``BestEffort``
    when none asks for anything, ``Burstable`` otherwise (pkg/apis/core/helper/qos)."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    resources = [(c or {}).get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        if not all(k in limits for k in ("cpu", "memory")):
            return "Burstable"
        if any(requests.get(k, limits[k]) != limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# The built-in PriorityClasses every cluster has (Priority admission reads a pod's class).
SYSTEM_PRIORITIES = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}


def pod_admission(
    obj: Obj, tolerations: tuple[int, int] = (DEFAULT_TOLERATION_S, DEFAULT_TOLERATION_S)
) -> None:
    """What admission adds to a new Pod: its ServiceAccount (``default``) and that account's token
    volume (``kube-api-access-…``, mounted in every container), priority 0 with the default preemption
    policy, and DefaultTolerationSeconds' not-ready/unreachable tolerations (``tolerations``: their seconds,
    the API server's ``--default-not-ready/unreachable-toleration-seconds``)."""
    spec = obj.setdefault("spec", {})
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    if spec.get("automountServiceAccountToken") is not False:
        _token_volume(spec)
    _set(spec, "priority", SYSTEM_PRIORITIES.get(spec.get("priorityClassName", ""), 0))
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    default_tolerations(spec, *tolerations)


def _token_volume(spec: Obj) -> None:
    containers = [c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])] if c]
    if any(m.get("mountPath") == TOKEN_MOUNT for c in containers for m in c.get("volumeMounts") or []):
        return
    name = "kube-api-access-" + "".join(random.choices(NAME_ALPHABET, k=5))
    spec.setdefault("volumes", []).append(
        {
            "name": name,
            "projected": {
                "defaultMode": FILE_MODE,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT})


def namespace_finalizer(obj: Obj) -> None:
    """A new Namespace is held by the ``kubernetes`` finalizer until the namespace controller emptied it."""
    finalizers = obj.setdefault("spec", {}).setdefault("finalizers", [])
    if "kubernetes" not in finalizers:
        finalizers.append("kubernetes")


def default_tolerations(
    spec: Obj, not_ready_s: int = DEFAULT_TOLERATION_S, unreachable_s: int = DEFAULT_TOLERATION_S
) -> None:
    """DefaultTolerationSeconds admission: not-ready/unreachable tolerations unless the pod has its own."""
    tols = spec.setdefault("tolerations", [])
    for key, seconds in ((NOT_READY, not_ready_s), (UNREACHABLE, unreachable_s)):
        if not any(
            t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tols
        ) and not any(t.get("operator") == "Exists" and not t.get("key") for t in tols):
            tols.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
            )


def initial_status(res: Resource, obj: Obj) -> Obj | None:
    """The status a new object of ``res`` starts with, or None for kinds without one."""
    if res.group or res.custom:
        return {} if "status" in res.subresources and not res.custom else None
    if res.kind == "Pod":
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if res.kind == "Service":
        return {"loadBalancer": {}}
    if res.kind == "Namespace":
        return {"phase": "Active"}
    return {} if "status" in res.subresources else None


def allocate_cluster_ips(obj: Obj, used: Iterable[str]) -> None:
    """The service IP allocator: an asked-for address if free (422 otherwise), ``None`` stays headless,
    the apiserver's own Service gets the CIDR's first address, kube-dns K3s's 10.43.0.10, and any other
    the lowest free one above them."""
    spec = obj.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    taken = set(used)
    asked = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
    meta = obj.get("metadata") or {}
    if not asked:
        if meta.get("namespace") == "default" and meta.get("name") == "kubernetes":
            asked = KUBERNETES_SERVICE_IP
        elif meta.get("name") == "kube-dns" and DNS_SERVICE_IP not in taken:
            asked = DNS_SERVICE_IP
    if asked and asked != "None":
        try:
            address = ipaddress.ip_address(asked)
        except ValueError:
            raise _invalid_ip(meta, asked, "must be a valid IP address") from None
        if address not in SERVICE_CIDR:
            raise _invalid_ip(
                meta,
                asked,
                f"provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}",
            )
        if asked in taken:
            raise _invalid_ip(meta, asked, "provided IP is already allocated")
    elif not asked:
        hosts = SERVICE_CIDR.hosts()
        asked = next(str(ip) for i, ip in enumerate(hosts) if i >= 10 and str(ip) not in taken)
    spec["clusterIP"] = asked
    spec["clusterIPs"] = [asked]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")


def _invalid_ip(meta: Obj, ip: str, why: str) -> KubeError:
    name = meta.get("name", "")
    return KubeError(
        422,
        "Invalid",
        f'Service "{name}" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: failed to '
        f"allocate IP {ip}: {why}",
        {
            "name": name,
            "kind": "Service",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: {why}',
                    "field": "spec.clusterIPs",
                }
            ],
        },
    )


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def job_selector(obj: Obj) -> None:
    """A Job's generated selector (``manualSelector`` unset): its uid, in the selector and on the
    template as the job registry writes them."""
    spec = obj.get("spec")
    meta = obj.get("metadata") or {}
    if not isinstance(spec, dict) or spec.get("manualSelector") or not meta.get("uid"):
        return
    uid, name = meta["uid"], meta.get("name", "")
    labels = {
        JOB_UID_LABEL: uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    spec.setdefault("selector", {"matchLabels": {JOB_UID_LABEL: uid}})
