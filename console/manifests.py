"""Manifests on disk, and where each one lives in the API — what ``provision`` applies once K3s runs (#9).

A fresh K3s cluster has nodes and K3s's packaged add-ons, nothing else.  The seed's workloads — the
operators (CNPG, cert-manager), the database ``Cluster`` and ``Pooler``, DocFast — are objects the
operators of this cluster keep as files: the upstream release manifests of the operators, and their own
manifests for the database and the app.  ``[provision] manifests`` lists those directories **in order**
(each one is applied and waited for before the next: the CNPG operator must run before a ``Cluster`` can be
admitted).  The console ships none of them: it cannot know an app's manifests, and it must not invent an
operator's (``opsconsole lab up`` writes the lab's own set; see ``lab/README.md``).

Why create-only: provisioning builds what is missing.  Changing what runs is a release (``promote``) or an
HA reapplication (``ha``), each with its own gates and rollback; an object that exists is ``keep`` even if
its file differs, and the plan says so.  Files are read in name order; a directory's documents are then
ordered by kind (namespaces and CRDs first, workloads after what they mount, custom resources last), so a
directory needs no numbering of its own.

Where an object lives is asked of the API server (discovery: ``/api/v1``, ``/apis/<group>/<version>``), as
``kubectl`` does, so custom resources need no table here.  Pure apart from :class:`Discovery`; no Textual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from console.clients.kube import KubeError, request
from console.errors import UsageError

# Kinds first, in this order; every other kind after them (custom resources too), in file order.
KIND_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "PriorityClass",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "CronJob",
    "Ingress",
)


class ManifestError(UsageError):
    """A file that cannot be read or a document that is not a Kubernetes object: one sentence, exit 2."""


@dataclass(frozen=True)
class Manifest:
    obj: dict[str, Any]
    source: str  # "file.yaml#2": where an error points

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def api_version(self) -> str:
        return str(self.obj["apiVersion"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.obj["metadata"].get("namespace")
        return str(ns) if ns else None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    def body(self) -> dict[str, Any]:
        """What is sent: the document without ``status`` or server-owned metadata."""
        out = {k: v for k, v in self.obj.items() if k != "status"}
        meta = {
            k: v
            for k, v in self.obj["metadata"].items()
            if k not in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
        }
        return {**out, "metadata": meta}


def _documents(path: Path) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_directory(directory: Path) -> list[Manifest]:
    """Every object in ``directory``'s ``*.yaml``/``*.yml``/``*.json`` files (``kind: List`` expanded),
    ordered by :data:`KIND_ORDER`."""
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such manifests directory")
    found: list[Manifest] = []
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
    for path in files:
        for i, doc in enumerate(_documents(path), 1):
            docs = doc.get("items", []) if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            for d in docs:
                source = f"{path.name}#{i}"
                meta = d.get("metadata") if isinstance(d, dict) else None
                if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
                    raise ManifestError(f"{path} document {i}: not a Kubernetes object (apiVersion and kind)")
                if not isinstance(meta, dict) or not meta.get("name"):
                    raise ManifestError(f"{path} document {i}: {d['kind']} without metadata.name")
                found.append(Manifest(d, source))
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(found, key=lambda m: rank.get(m.kind, len(KIND_ORDER)))


def load(directories: Sequence[Path]) -> list[tuple[Path, list[Manifest]]]:
    """The configured stages, each with its objects, in order."""
    return [(d, load_directory(d)) for d in directories]


class Discovery:
    """Kind → resource path, asked of the API server once per group version (as kubectl does)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._lists: dict[str, list[dict[str, Any]]] = {}

    async def _resources(self, api_version: str) -> list[dict[str, Any]]:
        if api_version not in self._lists:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                doc = await request(self.api, "GET", base)
            except KubeError as exc:
                if exc.status == 404:
                    return []
                raise
            self._lists[api_version] = list(doc.get("resources") or [])
        return self._lists[api_version]

    async def collection(self, m: Manifest) -> str:
        """The path objects of ``m``'s kind are created at (in ``m``'s namespace when namespaced)."""
        found = next(
            (
                r
                for r in await self._resources(m.api_version)
                if r.get("kind") == m.kind and "/" not in str(r.get("name"))
            ),
            None,
        )
        if found is None:
            raise ManifestError(
                f"{m.source}: the API server does not serve {m.kind} in {m.api_version} "
                "(is the CRD or operator installed by an earlier directory?)"
            )
        base = "/api/v1" if m.api_version == "v1" else f"/apis/{m.api_version}"
        ns = f"/namespaces/{m.namespace or 'default'}" if found.get("namespaced") else ""
        return f"{base}{ns}/{found['name']}"

    async def get(self, m: Manifest) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            return await request(self.api, "GET", f"{await self.collection(m)}/{m.name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, m: Manifest) -> bool:
        """Create ``m`` (strict field validation, as kubectl sends it); False when it already existed."""
        try:
            await request(
                self.api, "POST", await self.collection(m), m.body(), query={"fieldValidation": "Strict"}
            )
        except KubeError as exc:
            if exc.status == 409 and exc.reason == "AlreadyExists":
                return False
            raise
        return True
