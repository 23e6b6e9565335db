"""A cert-manager twin: what the Certificates panel shows on a cluster the lab did not seed (#9).

cert-manager's ingress-shim turns an Ingress annotated ``cert-manager.io/cluster-issuer`` into a
``Certificate`` per TLS entry, and the issuer's ACME order makes it Ready.  The lab cannot reach Let's
Encrypt (loopback only), so it emulates the outcome, and only once cert-manager itself runs (its
``cert-manager`` Deployment has a ready replica):

* a ClusterIssuer without a ``Ready`` condition is registered (``ACMEAccountRegistered``);
* each annotated Ingress's TLS entries get a Certificate (named after ``secretName``, owned by the Ingress),
  issued at once: ``notBefore`` now, ``notAfter`` +90 days, ``renewalTime`` +60 days, as Let's Encrypt's
  certificates and cert-manager's 2/3 renewal are.  No key material is made: no TLS Secret.

Existing Certificates are never touched, so the seeded ones (and the ``cert-expiring`` scenario's failing
renewal) stay as seeded — except on request: a Certificate given an ``Issuing`` condition with reason
``ManuallyTriggered`` (what ``cmctl renew`` writes) is issued again, revision one up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from console.config import Config
from lab.kube.resources import Registry, Resource
from lab.kube.store import Store

log = logging.getLogger("lab.certmanager")
ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"
FMT = "%Y-%m-%dT%H:%M:%SZ"


class CertManagerTwin:
    def __init__(self, store: Store, registry: Registry, config: Config, speed: float) -> None:
        self.store = store
        self.config = config
        self.speed = speed
        self.res: dict[str, Resource] = {}
        for key, (g, v, p) in {
            "deployments": ("apps", "v1", "deployments"),
            "ingresses": ("networking.k8s.io", "v1", "ingresses"),
            "issuers": ("cert-manager.io", "v1", "clusterissuers"),
            "certificates": ("cert-manager.io", "v1", "certificates"),
        }.items():
            res = registry.get(g, v, p)
            assert res is not None
            self.res[key] = res
        self._task: asyncio.Task[None] | None = None

    def running(self) -> bool:
        dep = self.store.find(self.res["deployments"], self.config.namespaces.cert_manager, "cert-manager")
        return dep is not None and int((dep.get("status") or {}).get("readyReplicas", 0)) > 0

    def reconcile(self) -> None:
        if not self.running():
            return
        now = datetime.now(UTC)
        ready: set[str] = set()
        for issuer in self.store.list(self.res["issuers"]):
            conds = (issuer.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" for c in conds):
                status = {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "ACMEAccountRegistered",
                            "lastTransitionTime": now.strftime(FMT),
                        }
                    ]
                }
                issuer = self.store.update(
                    self.res["issuers"], {**issuer, "status": status}, subresource="status", force=True
                )
                conds = status["conditions"]
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                ready.add(issuer["metadata"]["name"])
        for cert in self.store.list(self.res["certificates"]):
            conds = (cert.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Issuing" and c.get("reason") == "ManuallyTriggered" for c in conds):
                self._reissue(cert, now)
        for ing in self.store.list(self.res["ingresses"]):
            meta = ing["metadata"]
            issuer_name = (meta.get("annotations") or {}).get(ISSUER_ANNOTATION)
            if issuer_name not in ready:
                continue
            for tls in (ing.get("spec") or {}).get("tls") or []:
                secret = tls.get("secretName")
                if not secret or self.store.find(self.res["certificates"], meta["namespace"], secret):
                    continue
                self._issue(ing, secret, list(tls.get("hosts") or []), str(issuer_name), now)

    def _issue(self, ing: dict[str, Any], secret: str, hosts: list[str], issuer: str, now: datetime) -> None:
        meta = ing["metadata"]
        owner = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        cert = self.store.create(
            self.res["certificates"],
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {"name": secret, "namespace": meta["namespace"], "ownerReferences": [owner]},
                "spec": {
                    "secretName": secret,
                    "dnsNames": hosts,
                    "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
                    "usages": ["digital signature", "key encipherment"],
                },
            },
        )
        status = {
            "notBefore": now.strftime(FMT),
            "notAfter": (now + timedelta(days=90)).strftime(FMT),
            "renewalTime": (now + timedelta(days=60)).strftime(FMT),
            "revision": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Certificate is up to date and has not expired",
                    "lastTransitionTime": now.strftime(FMT),
                    "observedGeneration": 1,
                }
            ],
        }
        self.store.update(
            self.res["certificates"], {**cert, "status": status}, subresource="status", force=True
        )
        log.info("cert-manager twin: issued %s/%s for %s", meta["namespace"], secret, ", ".join(hosts))

    def _reissue(self, cert: dict[str, Any], now: datetime) -> None:
        """``cmctl renew``'s request (an ``Issuing`` condition, reason ManuallyTriggered) served: a new
        certificate from the issuer, its revision one up, the Issuing condition gone."""
        st = dict(cert.get("status") or {})
        st.update(
            notBefore=now.strftime(FMT),
            notAfter=(now + timedelta(days=90)).strftime(FMT),
            renewalTime=(now + timedelta(days=60)).strftime(FMT),
            revision=int(st.get("revision") or 0) + 1,
            conditions=[
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Certificate is up to date and has not expired",
                    "lastTransitionTime": now.strftime(FMT),
                    "observedGeneration": int(cert["metadata"].get("generation") or 1),
                }
            ],
        )
        self.store.update(self.res["certificates"], {**cert, "status": st}, subresource="status", force=True)
        meta = cert["metadata"]
        log.info(
            "cert-manager twin: renewed %s/%s (revision %d)", meta["namespace"], meta["name"], st["revision"]
        )

    async def _loop(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:
                log.exception("cert-manager reconcile failed")
            await asyncio.sleep(max(0.3, 2.0 * self.speed))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
