"""What runs where: DocFast's image, digest, rollout and history per environment (the Releases panel).

One reading shared by the dashboard (:func:`releases` from the watched store) and promotion
(``actions/promote.py``: the gates' "exact digest", the plan's differences).  The digest is what the kubelets
report as each container's ``imageID`` — the content that actually runs, whatever tag the spec names.  The
history is the Deployment's ReplicaSets by ``deployment.kubernetes.io/revision``, as ``kubectl rollout
history`` reads it; a promotion through the pipeline (a pushed ``v*`` tag) shows there like one of ours.
"""

from __future__ import annotations

from typing import Any

from console.config import Config
from console.kubeobj import is_ready, rolled_out
from console.model import Release, ReleasePod, Revision

REVISION = "deployment.kubernetes.io/revision"
HISTORY_KEPT = 5


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The named container of a Deployment's or ReplicaSet's template, or of a Pod (else the first)."""
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or spec).get("containers") or []
    return next((c for c in containers if c["name"] == name), containers[0] if containers else {})


def tag(image: str) -> str:
    """``repo:tag@sha256:…`` -> ``tag`` (what an operator calls a release)."""
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else (name and "latest")


def without_digest(image: str) -> str:
    return image.partition("@")[0]


def digest(pod: dict[str, Any], name: str) -> str:
    """The ``sha256:…`` a pod's container runs, from its status (empty until the kubelet reports it)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == name and "@" in str(cs.get("imageID", "")):
            return str(cs["imageID"]).rsplit("@", 1)[1]
    return ""


def config_diff(staging: dict[str, Any], prod: dict[str, Any]) -> list[str]:
    """What staging's container runs that production's does not: image, env values, resources."""
    out = []
    if without_digest(str(staging.get("image", ""))) != without_digest(str(prod.get("image", ""))):
        out.append(f"image: {prod.get('image')} -> {staging.get('image')}")
    s_env = {e["name"]: e.get("value", "(from secret)") for e in staging.get("env") or []}
    p_env = {e["name"]: e.get("value", "(from secret)") for e in prod.get("env") or []}
    for k in sorted(set(s_env) | set(p_env)):
        if s_env.get(k) != p_env.get(k):
            out.append(
                f"env {k}: prod {p_env.get(k, '(unset)')} / staging {s_env.get(k, '(unset)')} (not copied)"
            )
    if staging.get("resources") != prod.get("resources"):
        out.append("resources differ (not copied)")
    return out


def owned_by(obj: dict[str, Any], owner: str) -> bool:
    return any(o.get("name") == owner for o in obj["metadata"].get("ownerReferences") or [])


def history(replicasets: list[dict[str, Any]], deployment: str, name: str) -> tuple[Revision, ...]:
    """The Deployment's revisions, newest first: (revision, image, created)."""
    out = [
        Revision(
            int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)),
            str(container(rs, name).get("image", "")),
            str(rs["metadata"].get("creationTimestamp", "")),
        )
        for rs in replicasets
        if owned_by(rs, deployment)
    ]
    return tuple(sorted(out, key=lambda r: r.revision, reverse=True))


def release(
    environment: str,
    deploy: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    replicasets: list[dict[str, Any]],
    name: str,
) -> Release | None:
    if deploy is None:
        return None
    meta, spec, st = deploy["metadata"], deploy.get("spec") or {}, deploy.get("status") or {}
    desired = int(spec.get("replicas", 1))
    if rolled_out(deploy):
        rollout = "complete"
    else:
        rollout = (
            f"rolling: {st.get('updatedReplicas', 0)}/{desired} updated, {st.get('readyReplicas', 0)} ready"
        )
    prefix = meta["name"] + "-"
    mine = [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(o.get("name", "").startswith(prefix) for o in p["metadata"].get("ownerReferences") or [])
    ]
    return Release(
        environment=environment,
        namespace=meta["namespace"],
        deployment=meta["name"],
        image=str(container(deploy, name).get("image", "")),
        digests=tuple(sorted({d for p in mine if (d := digest(p, name))})),
        rollout=rollout,
        ready=int(st.get("readyReplicas", 0)),
        desired=desired,
        pods=tuple(
            sorted(
                ReleasePod(
                    p["metadata"]["name"],
                    (p.get("spec") or {}).get("nodeName") or "",
                    tag(str(container(p, name).get("image", ""))),
                    is_ready(p),
                )
                for p in mine
            )
        ),
        history=history(replicasets, meta["name"], name)[:HISTORY_KEPT],
    )


def releases(
    deployments: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    replicasets: list[dict[str, Any]],
    config: Config,
) -> tuple[tuple[Release, ...], tuple[str, ...]]:
    """Production and staging, and what staging runs that production does not."""
    r, ns = config.release, config.namespaces
    found: dict[str, Release] = {}
    objs: dict[str, dict[str, Any]] = {}
    for env, namespace in (("prod", ns.prod), ("staging", ns.staging)):
        deploy = next(
            (
                d
                for d in deployments
                if d["metadata"]["namespace"] == namespace and d["metadata"]["name"] == r.deployment
            ),
            None,
        )
        rel = release(
            env,
            deploy,
            [p for p in pods if p["metadata"]["namespace"] == namespace],
            [x for x in replicasets if x["metadata"]["namespace"] == namespace],
            r.container,
        )
        if rel is not None and deploy is not None:
            found[env], objs[env] = rel, deploy
    diff: list[str] = []
    if "prod" in objs and "staging" in objs:
        diff = config_diff(container(objs["staging"], r.container), container(objs["prod"], r.container))
        s_dig, p_dig = set(found["staging"].digests), set(found["prod"].digests)
        same_build = (
            bool(s_dig) and s_dig == p_dig
        )  # one image under two tags (main-<sha7>, v*): no difference
        # The panel names releases by tag; the full references are in the promotion plan.
        image_line = f"image: {found['prod'].tag} -> {found['staging'].tag}"
        diff = [
            image_line if d.startswith("image:") else d
            for d in diff
            if not (same_build and d.startswith("image:"))
        ]
        if s_dig and p_dig and not same_build:
            diff.append(f"digest: prod {short(tuple(sorted(p_dig)))} / staging {short(tuple(sorted(s_dig)))}")
    return tuple(found.values()), tuple(diff)


def short(digests: tuple[str, ...] | list[str]) -> str:
    return ",".join(d.removeprefix("sha256:")[:12] for d in digests) or "?"
