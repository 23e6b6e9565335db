"""The lab's manifests: the files the operators of the seed's cluster would keep, for ``provision`` (#9).

A real cluster's operators keep the operators' upstream release manifests, the database's ``Cluster`` and
``Pooler``, and the app's manifests; the console ships none of them.  ``lab up`` writes the lab's set into
``DIR/manifests`` — from the same builders that seed the lab's cluster, so provisioning an empty lab ends
with the seed's objects — and points the lab's console config (``[provision] manifests``) at them:

* ``10-operators``: the namespaces, the CNPG operator (stock: 1 replica, no spread) and cert-manager's three
  Deployments, the ``letsencrypt-prod`` ClusterIssuer, and the Traefik settings (K3s's ``HelmChartConfig``:
  the packaged chart as a DaemonSet, as the seed runs it).  The CRDs are not in it: the lab's API serves
  the CNPG and cert-manager CRDs in every scenario (a real upstream manifest carries them first).
* ``20-database``: the database namespace, the app's credentials Secret, the ``Cluster``, the ``Pooler``
  (stock: no anti-affinity) and the pg_dump CronJob.
* ``30-apps``: DocFast prod (stock probes and tolerations, as an app repository keeps them) and staging,
  their Services, Ingresses, pull and credentials Secrets, and the ``deployer`` RBAC.

The stock forms are on purpose: ``provision`` then applies the seed's HA state (``actions/ha.py``), as after
any reinstall.  The credentials are the seed's own weak ones (``docfast``/``docfast``), which the console
reports as a finding; these files are lab data, written 0600 in the lab's directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from console.config import Config


def objects(config: Config) -> dict[str, list[dict[str, Any]]]:
    """The three stages, each a list of objects (no status, no server-owned metadata)."""
    from lab.cnpg import cluster_manifest, pooler_manifest
    from lab.kube.seed import PROD_TAG, cluster_issuer, cnpg_operator, docfast, traefik_config, workloads

    ns = config.namespaces
    stages: dict[str, list[dict[str, Any]]] = {"10-operators": [], "20-database": [], "30-apps": []}

    def namespace(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    stages["10-operators"] += [namespace(ns.cnpg_operator), namespace(ns.cert_manager)]
    stages["20-database"].append(namespace(ns.database))
    stages["30-apps"] += [namespace(n) for n in dict.fromkeys((ns.prod, ns.staging))]
    stock = {
        (ns.cnpg_operator, "cnpg-controller-manager"): cnpg_operator(replicas=1, ha=False),
        (ns.prod, "docfast"): docfast(ns.prod, 2, PROD_TAG, tuned=False),
    }
    stage_of = {
        ns.cnpg_operator: "10-operators",
        ns.cert_manager: "10-operators",
        ns.database: "20-database",
        ns.prod: "30-apps",
        ns.staging: "30-apps",
    }
    for obj in workloads(config):
        where = obj["metadata"].get("namespace")
        if where not in stage_of:  # kube-system: K3s's packaged add-ons, which K3s installs itself
            continue
        key = (where, obj["metadata"]["name"])
        if obj["kind"] == "Deployment" and key in stock:
            obj = stock[key]
        stages[stage_of[where]].append(obj)
    stages["10-operators"] += [cluster_issuer(), traefik_config()]
    stages["20-database"] += [cluster_manifest(config), pooler_manifest(config, ha=False)]
    for items in stages.values():
        for obj in items:
            obj.pop("status", None)
            obj["metadata"].pop("creationTimestamp", None)
    return stages


def write(lab_dir: Path, config: Config) -> list[Path]:
    """Write the stages as ``DIR/manifests/<stage>/<kind>-<namespace>-<name>.yaml``; the directories, in
    order (what ``[provision] manifests`` lists)."""
    root = lab_dir / "manifests"
    shutil.rmtree(root, ignore_errors=True)
    out = []
    for stage, items in objects(config).items():
        d = root / stage
        d.mkdir(parents=True, mode=0o700)
        for obj in items:
            meta = obj["metadata"]
            name = "-".join(p for p in (obj["kind"].lower(), meta.get("namespace"), meta["name"]) if p)
            fd = os.open(d / f"{name}.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(yaml.safe_dump(obj, sort_keys=False))
        out.append(d)
    return out
