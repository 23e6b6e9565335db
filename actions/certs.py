"""``renew --target NS/CERTIFICATE``: ask cert-manager to issue a Certificate again now, as ``cmctl renew``
does — an ``Issuing`` condition (reason ``ManuallyTriggered``) written to its status — and wait for the
new revision.  From the Certificates panel or headless.

A Certificate already being issued (a renewal in flight, or one failing and retried) is refused with
cert-manager's own reason: a second request would change nothing.  A renewal cannot be undone (the old
certificate is replaced), so there is no rollback; a timeout says what cert-manager last reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from console.action import Action, Outcome, Plan, param
from console.clients.kube import KubeError, request, update_fresh
from console.config import Config
from console.errors import ActionFailed, Refused, Verdict
from console.events import Check, PlanItem, Progress
from console.kubeobj import split_target
from console.runner import Run

RENEW_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class CertParams:
    target: str | None = param("--target", "NAMESPACE/CERTIFICATE", required=True)


def _condition(cert: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in (cert.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None
    )


class Renew(Action[CertParams]):
    name = "renew"
    title = "Renew a certificate"
    description = "ask cert-manager to issue a Certificate (--target NS/NAME) again now, as cmctl renew"
    Params = CertParams

    def __init__(self, config: Config, params: CertParams) -> None:
        super().__init__(config, params)
        self.cert: dict[str, Any] = {}

    @property
    def path(self) -> str:
        ns, name = split_target(self.name, self.params.target, "CERTIFICATE")
        return f"/apis/cert-manager.io/v1/namespaces/{ns}/certificates/{name}"

    def confirm_word(self) -> str:
        return str(self.params.target)

    def can_roll_back(self) -> bool:
        return False

    def validate(self) -> None:
        split_target(self.name, self.params.target, "CERTIFICATE")

    async def preflight(self, run: Run) -> list[Check]:
        try:
            self.cert = await request(await run.kube(), "GET", self.path)
        except KubeError as exc:
            if exc.status == 404:
                raise Refused(f"there is no Certificate {self.params.target}") from None
            raise
        issuing = _condition(self.cert, "Issuing")
        if issuing and issuing.get("status") == "True":
            why = f"{issuing.get('reason', '')}: {issuing.get('message', '')}".strip(": ")
            return [
                Check("not-issuing", False, True, f"{self.params.target} is being issued already ({why})")
            ]
        st = self.cert.get("status") or {}
        now = f"expires {st.get('notAfter', '?')}, revision {st.get('revision', '?')}"
        return [Check("not-issuing", True, True, now)]

    async def plan(self, run: Run) -> Plan:
        issuer = (self.cert.get("spec") or {}).get("issuerRef") or {}
        hosts = ", ".join((self.cert.get("spec") or {}).get("dnsNames") or [])
        what = f"a new certificate for {hosts} from {issuer.get('kind', '')} {issuer.get('name', '')}"
        return Plan([PlanItem("change", f"renew {self.params.target} now: {what}", str(self.params.target))])

    async def execute(self, run: Run) -> Outcome:
        api = await run.kube()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        trigger = {
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": stamp,
        }

        def build(current: dict[str, Any]) -> tuple[str, Any, str]:
            st = dict(current.get("status") or {})
            st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "Issuing"] + [
                trigger
            ]
            return "PUT", {**current, "status": st}, "application/json"

        before = int((self.cert.get("status") or {}).get("revision") or 0)
        await update_fresh(api, self.path + "/status", build)
        run.emit(Progress("renew", f"cert-manager is issuing {self.params.target}"))
        deadline = time.monotonic() + RENEW_TIMEOUT_S
        cert: dict[str, Any] = {}
        while time.monotonic() < deadline:
            cert = await request(api, "GET", self.path)
            st = cert.get("status") or {}
            if int(st.get("revision") or 0) > before and not _condition(cert, "Issuing"):
                said = (
                    f"{self.params.target} renewed: revision {st['revision']}, expires {st.get('notAfter')}"
                )
                return Outcome(Verdict.DONE, said, {"certificate": self.params.target, **st})
            await asyncio.sleep(1.0)
        said = (_condition(cert, "Issuing") or {}).get("message", "no word from cert-manager")
        raise ActionFailed(f"{self.params.target} was not issued in {RENEW_TIMEOUT_S:.0f} s: {said}")

    async def verify(self, run: Run) -> str | None:
        cert = await request(await run.kube(), "GET", self.path)
        ready = _condition(cert, "Ready") or {}
        ok = ready.get("status") == "True"
        return None if ok else f"{self.params.target} is not Ready: {ready.get('message')}"
