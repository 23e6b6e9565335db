"""What a run-to-completion container runs (a pod with ``restartPolicy: Never`` or ``OnFailure``: Jobs,
``kubectl run --restart=Never``), so its phase comes from what it did, not from a clock.

The lab has no images, so a container runs, in order of preference:

1. what a twin says it runs (a :data:`RunTarget` hook): the seed's pg_dump CronJob's pod takes a real
   backup of the database into the Storage Box's ``k3s-db`` repository, as the scheduled job does;
2. its ``command`` and ``args`` on this machine (``args`` alone as the whole command line: the image is
   taken to have no ENTRYPOINT, as busybox, alpine and debian have none) — as ``nobody`` when the lab runs
   as root, since a manifest's command is not the lab's own — exec'd without a shell as the runtime does,
   with the
   container's environment (``value``, and ``valueFrom`` a field, a Secret or a ConfigMap key), in a
   scratch directory, its output the container's log; a missing executable is containerd's
   ``StartError`` (exit 128);
3. nothing else — neither means the image's own command, which the lab does not have: it is taken to
   succeed at once.

Long-running pods (``restartPolicy: Always``) are not run this way; the twins emulate their processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lab.kube.logs import PodLogs
from lab.kube.resources import Registry
from lab.kube.store import Store

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOBODY = 65534  # a lab run as root runs containers' commands as nobody: they come from manifests
RunTarget = Callable[[dict[str, Any], dict[str, Any]], Awaitable[tuple[int, list[str]]] | None]


@dataclass(frozen=True)
class Exit:
    code: int
    reason: str  # Completed, Error, StartError — as containerd reports it
    message: str = ""


class Runtime:
    def __init__(self, store: Store, registry: Registry, logs: Callable[[], PodLogs]) -> None:
        self.store = store
        self.registry = registry
        self.logs = logs
        self.targets: list[RunTarget] = []

    def _write(self, pod: dict[str, Any], container: str, line: str) -> None:
        self.logs().write(pod["metadata"]["namespace"], pod["metadata"]["name"], container, line)

    async def run(self, pod: dict[str, Any], container: dict[str, Any]) -> Exit:
        """Run one container to its end; its output goes to the pod's log as it comes."""
        for target in self.targets:
            job = target(pod, container)
            if job is not None:
                code, lines = await job
                for line in lines:
                    self._write(pod, container["name"], line)
                return Exit(code, "Completed" if code == 0 else "Error")
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not argv:
            return Exit(0, "Completed")  # the image's own command: unknown here, taken to succeed
        scratch = tempfile.mkdtemp(prefix="opsconsole-lab-run-")
        if os.geteuid() == 0:
            os.chown(scratch, NOBODY, NOBODY)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env={
                        "PATH": PATH,
                        "HOME": scratch,
                        "HOSTNAME": pod["metadata"]["name"],
                        **self.env(pod, container),
                    },
                    cwd=scratch,
                    start_new_session=True,
                    preexec_fn=_unprivileged,
                )
            except OSError as exc:
                why = (
                    "executable file not found in $PATH"
                    if isinstance(exc, FileNotFoundError)
                    else exc.strerror
                )
                message = (
                    "failed to create containerd task: failed to create shim task: OCI runtime create "
                    "failed: runc create failed: unable to start container process: "
                    f'exec: "{argv[0]}": {why}: unknown'
                )
                return Exit(128, "StartError", message)
            try:
                assert proc.stdout is not None
                async for raw in proc.stdout:
                    self._write(pod, container["name"], raw.decode(errors="replace").rstrip("\n"))
                code = await proc.wait()
            except asyncio.CancelledError:  # the pod was deleted: the runtime kills the container
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                raise
            return Exit(code, "Completed" if code == 0 else "Error")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet resolves it (values, fields, Secret and ConfigMap
        keys); what cannot be resolved is left out."""
        out: dict[str, str] = {}
        ns = pod["metadata"]["namespace"]
        for var in container.get("env") or []:
            name = var.get("name")
            if not name:
                continue
            if "value" in var:
                out[name] = str(var["value"])
                continue
            source = var.get("valueFrom") or {}
            value = self._value_from(pod, ns, source)
            if value is not None:
                out[name] = value
        return out

    def _value_from(self, pod: dict[str, Any], ns: str, source: dict[str, Any]) -> str | None:
        if "fieldRef" in source:
            path = (source["fieldRef"] or {}).get("fieldPath", "")
            cur: Any = pod
            for part in path.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            return None if cur is None else str(cur)
        for key, plural, encoded in (
            ("secretKeyRef", "secrets", True),
            ("configMapKeyRef", "configmaps", False),
        ):
            ref = source.get(key)
            if not ref:
                continue
            res = self.registry.get("", "v1", plural)
            obj = self.store.find(res, ns, ref.get("name", "")) if res is not None else None
            raw = ((obj or {}).get("data") or {}).get(ref.get("key", ""))
            if raw is None:
                return None
            return base64.b64decode(raw).decode(errors="replace") if encoded else str(raw)
        return None


def _unprivileged() -> None:
    """In the child: drop root (a manifest's command is not the lab's own; it gets no more than nobody)."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
