"""K3s on the nodes: versions and the upgrade rules, the flags a node was installed with, the installer.

* A K3s version is ``vMAJOR.MINOR.PATCH+k3sN``; the rules of an upgrade (K3s's and Kubernetes' version skew
  policy, as the K3s docs state them) are checked by :func:`refusals` before anything changes.
* The flags a node runs with are read back from the node itself: K3s writes its command line into the
  Node's ``k3s.io/node-args`` annotation (JSON; secret values as ``********``) and the ``K3S_*``
  environment it was started with into ``k3s.io/node-env`` (the token redacted the same way).  An
  upgrade re-runs the installer with exactly those, so nothing is guessed from config.
* :func:`installer_command` is the one ``curl -sfL https://get.k3s.io | … sh -s - …`` line (provision,
  replacement, upgrade and rollback all use it); an agent's join token goes in on stdin, never on the
  command line.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from console.clients.ssh import SshError, connect
from console.config import Config, NodeConfig
from console.errors import ActionFailed

INSTALLER = "https://get.k3s.io"
REDACTED = "********"
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")


@dataclass(frozen=True, order=True)
class K3sVersion:
    major: int
    minor: int
    patch: int
    k3s: int

    @classmethod
    def parse(cls, text: str) -> K3sVersion:
        m = _VERSION.match(text.strip())
        if m is None:
            raise ValueError(f"{text!r} is not a K3s version (vMAJOR.MINOR.PATCH+k3sN, e.g. v1.34.5+k3s1)")
        return cls(*(int(g) for g in m.groups()))

    @property
    def minor_line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}+k3s{self.k3s}"


def refusals(
    current: dict[str, str], server: str, chosen: list[str], target: str, allow_downgrade: bool
) -> list[str]:
    """Why upgrading ``chosen`` nodes (``current``: node → version) to ``target`` is refused (empty: it may).

    * no minor-version skip: each node moves at most one minor version (1.34 → 1.35, not 1.36);
    * agents never newer than the server — the chosen ones after the run, and the others against the
      server's new version;
    * no downgrade unless ``allow_downgrade``, and never across a minor version (K3s does not support it:
      the etcd snapshot taken before the upgrade is the way back).
    """
    want = K3sVersion.parse(target)
    out = []
    for node in chosen:
        now = K3sVersion.parse(current[node])
        if want < now and want.minor_line != now.minor_line:
            out.append(
                f"{node} runs {now}: K3s does not support a downgrade to another minor version "
                "(restore the etcd snapshot taken before the upgrade instead)"
            )
        elif want < now and not allow_downgrade:
            out.append(f"{node} runs {now}, newer than {want}: a downgrade needs --allow-downgrade")
        elif want.minor_line > now.minor_line and (want.major, want.minor - 1) != now.minor_line:
            nxt = f"v{now.major}.{now.minor + 1}"
            out.append(
                f"{node} runs {now}: {want} skips a minor version (upgrade to the newest {nxt}.x first)"
            )
    server_after = want if server in chosen else K3sVersion.parse(current[server])
    for node in current:
        after = want if node in chosen else K3sVersion.parse(current[node])
        if node != server and after > server_after:
            out.append(
                f"{node} would run {after}, newer than the server {server} ({server_after}): "
                + ("upgrade the server first" if node in chosen else f"downgrade {node} first")
            )
    return out


def node_version(node: dict[str, Any]) -> str:
    return str(((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or "")


def node_args(node: dict[str, Any]) -> list[str]:
    """``[role, flag, value, …]`` as K3s recorded them on the Node; ActionFailed when it did not."""
    name = node["metadata"]["name"]
    raw = (node["metadata"].get("annotations") or {}).get("k3s.io/node-args")
    try:
        args = json.loads(raw) if raw else None
    except ValueError:
        args = None
    if not isinstance(args, list) or not args or args[0] not in ("server", "agent"):
        raise ActionFailed(
            f"{name} carries no k3s.io/node-args annotation K3s writes: its install flags cannot be read back"
        )
    if REDACTED in args:  # a secret flag (--token …): it comes back from the server's token file instead
        i = args.index(REDACTED)
        raise ActionFailed(f"{name} was installed with a secret flag {args[i - 1]}: pass it by K3S_TOKEN")
    return [str(a) for a in args]


def node_env(node: dict[str, Any]) -> dict[str, str]:
    """The node's ``K3S_*`` environment as K3s recorded it, secret values left out."""
    raw = (node["metadata"].get("annotations") or {}).get("k3s.io/node-env")
    try:
        env = json.loads(raw) if raw else {}
    except ValueError:
        env = {}
    return {str(k): str(v) for k, v in env.items() if v != REDACTED} if isinstance(env, dict) else {}


def install_args(config: Config, node: NodeConfig) -> list[str]:
    """The flags this project installs a node with (provision, replacement; the lab's seed records them)."""
    cl, pv = config.cluster, config.provision
    args: list[str] = [node.role]
    if node.role == "server":
        args += ["--cluster-init", "--tls-san", node.public_ipv4]
        args += ["--etcd-snapshot-schedule-cron", pv.etcd_snapshot_cron]
        args += ["--etcd-snapshot-retention", str(pv.etcd_snapshot_retention)]
    args += ["--node-ip", node.private_ipv4, "--flannel-iface", cl.flannel_iface]
    for taint in node.taints:
        args += ["--node-taint", taint]
    return args


def installer_command(args: list[str], version: str, env: dict[str, str]) -> str:
    """The installer line for ``args`` (``[role, flags…]``) at ``version`` with the node's ``K3S_*``
    environment (``K3S_URL`` for an agent), which the installer writes into the service's env file again.
    An agent reads its join token from stdin, so the secret never shows in a process list or a journal
    (a token in ``env`` is left out for the same reason)."""
    parts = [f"INSTALL_K3S_VERSION={shlex.quote(version)}"]
    parts += [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if "TOKEN" not in k]
    prefix = "read -r K3S_TOKEN && export K3S_TOKEN && " if args[0] == "agent" else ""
    return f"{prefix}curl -sfL {INSTALLER} | {' '.join(parts)} sh -s - {shlex.join(args)}"


async def run_installer(config: Config, node: NodeConfig, command: str, token: str | None) -> str:
    """Run one installer line on ``node`` over SSH; its last line, or ActionFailed with the installer's."""
    try:
        conn = await connect(node.ssh_host, config.ssh)
    except SshError as exc:
        raise ActionFailed(f"K3s installer on {node.name}: {exc}") from None
    async with conn:
        result = await conn.run(command, input=(token + "\n") if token else None, check=False)
    if result.exit_status != 0:
        err = str(result.stderr or result.stdout or "").strip().splitlines()
        raise ActionFailed(
            f"K3s installer on {node.name} failed: {err[-1] if err else f'exit {result.exit_status}'}"
        )
    out = str(result.stdout or "").strip().splitlines()
    return out[-1] if out else "installed"


async def read_root_file(config: Config, node: NodeConfig, path: str) -> str:
    """A root-owned file on the node ("$HOME/.." is / for root; the lab's sandbox root there)."""
    async with await connect(node.ssh_host, config.ssh) as conn:
        result = await conn.run(f'cat "$HOME/..{path}"', check=False)
    if result.exit_status != 0:
        raise ActionFailed(f"cannot read {path} on {node.name}")
    return str(result.stdout)


TOKEN_PATH = "/var/lib/rancher/k3s/server/node-token"


async def service_state(config: Config, node: NodeConfig, role: str) -> str:
    """``systemctl is-active`` of the node's K3s unit (``k3s`` or ``k3s-agent``): "active" when it runs;
    "unreachable" when SSH does not answer."""
    unit = "k3s" if role == "server" else "k3s-agent"
    try:
        conn = await connect(node.ssh_host, config.ssh)
    except SshError:
        return "unreachable"
    async with conn:
        result = await conn.run(f"systemctl is-active {unit}", check=False)
    return str(result.stdout or "").strip() or f"exit {result.exit_status}"
