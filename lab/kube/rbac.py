"""Authentication by bearer token and RBAC authorization evaluated from the stored RBAC objects.

The rules are the real ones (Role/ClusterRole rules bound by RoleBinding/ClusterRoleBinding to users,
groups and service accounts); ``system:masters`` bypasses them, as on a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.kube.store import Store


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


ADMIN = User("system:admin", ("system:masters", "system:authenticated"))


def _subject_matches(subject: dict[str, Any], user: User) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return bool(subject.get("name") == user.name)
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
    return False


def _rule_allows(rule: dict[str, Any], verb: str, group: str, resource: str, name: str) -> bool:
    groups = rule.get("apiGroups", [])
    resources = rule.get("resources", [])
    verbs = rule.get("verbs", [])
    names = rule.get("resourceNames") or []
    return (
        (group in groups or "*" in groups)
        and (
            resource in resources
            or "*" in resources
            or ("/" in resource and f"{resource.split('/')[0]}/*" in resources)
        )
        and (verb in verbs or "*" in verbs)
        and (not names or name in names)
    )


class Authorizer:
    def __init__(self, store: Store, resources: Any) -> None:
        self.store = store
        self.registry = resources

    def _rules(self, role_ref: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
        kind = role_ref.get("kind")
        res = self.registry.get(
            "rbac.authorization.k8s.io", "v1", "clusterroles" if kind == "ClusterRole" else "roles"
        )
        obj = self.store.find(res, None if kind == "ClusterRole" else namespace, role_ref.get("name", ""))
        return list(obj.get("rules") or []) if obj else []

    def allowed(
        self, user: User, verb: str, group: str, resource: str, namespace: str | None, name: str = ""
    ) -> bool:
        if "system:masters" in user.groups:
            return True
        rbac = "rbac.authorization.k8s.io"
        for crb in self.store.list(self.registry.get(rbac, "v1", "clusterrolebindings")):
            if any(_subject_matches(s, user) for s in crb.get("subjects") or []) and any(
                _rule_allows(r, verb, group, resource, name) for r in self._rules(crb["roleRef"], None)
            ):
                return True
        if namespace:
            for rb in self.store.list(self.registry.get(rbac, "v1", "rolebindings"), namespace):
                if any(_subject_matches(s, user) for s in rb.get("subjects") or []) and any(
                    _rule_allows(r, verb, group, resource, name)
                    for r in self._rules(rb["roleRef"], namespace)
                ):
                    return True
        return False
