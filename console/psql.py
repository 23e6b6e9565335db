"""``p`` on the Database panel: ``psql`` on the primary, through the console's SSH tunnel.

The primary is reached as the application reaches it — the ``-rw`` Service of the CNPG cluster, as seen
from the tunnel's node — with the superuser's credentials from the cluster's own Secret (the app user's
when the superuser Secret cannot be read).  The password travels in the child's environment
(``PGPASSWORD``) and nowhere else: not in the argument list (``ps`` shows it), not in a log."""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass, field
from typing import Any

from console.clients.kube import KubeError, request
from console.clients.ssh import Tunnel
from console.config import Config
from console.errors import OpsError


@dataclass
class PsqlSession:
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    where: str
    tunnel: Tunnel = field(repr=False)

    async def close(self) -> None:
        await self.tunnel.close()


async def _credentials(api: Any, config: Config) -> tuple[str, str]:
    db = config.database
    for secret, fallback_user in ((db.superuser_secret, "postgres"), (db.credentials_secret, db.app_user)):
        try:
            doc = await request(api, "GET", f"/api/v1/namespaces/{db.namespace}/secrets/{secret}")
        except KubeError as exc:
            if exc.status in (403, 404):
                continue
            raise
        data = doc.get("data") or {}
        user = base64.b64decode(data.get("username", "")).decode() or fallback_user
        return user, base64.b64decode(data.get("password", "")).decode()
    raise OpsError("neither database Secret can be read with this context's rights")


async def open_psql(api: Any, config: Config, base_env: dict[str, str]) -> PsqlSession:
    """A tunnel to the primary and the psql command line that uses it."""
    psql = shutil.which("psql")
    if psql is None:
        raise OpsError("psql is not installed (Debian: postgresql-client)")
    db = config.database
    svc = await request(api, "GET", f"/api/v1/namespaces/{db.namespace}/services/{db.cluster}-rw")
    user, password = await _credentials(api, config)
    tunnel = Tunnel(db.tunnel_via, config.ssh)
    port = await tunnel.port_for(svc["spec"]["clusterIP"], db.port)
    env = {**base_env, "PGPASSWORD": password, "PGSSLMODE": db.sslmode, "PGAPPNAME": "opsconsole-psql"}
    argv = [psql, "-h", "127.0.0.1", "-p", str(port), "-U", user, db.databases[0]]
    return PsqlSession(argv, env, f"{db.cluster}-rw as {user} via {db.tunnel_via}", tunnel)
