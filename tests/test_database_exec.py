"""The pods' exec subresource and the dumps that run where the server's binaries are.

`kubectl exec` and the console's own client (``kubernetes.aio``'s WebSocket support) against the session
lab's API server, and the local-tools path against its PostgreSQL 15.  The exec path against a server
newer than this machine's tools, and the local path's refusal of it, are in tests/test_backups.py (its lab
runs PostgreSQL 16).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from console.clients.kube import KubeError
from console.clients.pod_exec import ExecError, bounded_stdin, run_in_pod
from console.sources.kube import api_client
from lab.state import LabState
from tests.conftest import edited_config, kubectl, opsconsole


def test_kubectl_exec_runs_psql_in_an_instance_pod(lab: LabState) -> None:
    out = kubectl(lab, "-n", "postgres", "exec", "main-db-1", "--", "psql", "-Atc", "select 1")
    assert out.stdout.strip() == "1"
    # stdin to the command, its end by v5's CLOSE (kubectl 1.30+ negotiates v5.channel.k8s.io)
    cluster = json.loads(
        kubectl(lab, "-n", "postgres", "get", "clusters.postgresql.cnpg.io", "main-db", "-o", "json").stdout
    )
    replica = next(n for n in ("main-db-1", "main-db-2") if n != cluster["status"]["currentPrimary"])
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", lab.files["kubeconfig"], "--context", "admin", "-n", "postgres",
         "exec", "-i", replica, "--", "psql", "-At"],
        input="select pg_is_in_recovery();\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "t", proc.stderr
    # The command's exit code is kubectl's, from the Status on the error channel.
    failed = kubectl(lab, "-n", "postgres", "exec", "main-db-1", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3 and "command terminated with exit code 3" in failed.stderr


def test_kubectl_exec_is_refused_as_the_real_server_refuses(lab: LabState) -> None:
    wrong = kubectl(lab, "-n", "postgres", "exec", "main-db-1", "-c", "nope", "--", "true", check=False)
    assert wrong.returncode == 1
    assert "Error from server (BadRequest): container nope is not valid for pod main-db-1" in wrong.stderr
    missing = kubectl(lab, "-n", "postgres", "exec", "main-db-9", "--", "true", check=False)
    assert 'Error from server (NotFound): pods "main-db-9" not found' in missing.stderr
    nothing = kubectl(lab, "-n", "postgres", "exec", "main-db-1", "--", "no-such-tool", check=False)
    assert nothing.returncode == 1 and 'exec: "no-such-tool": executable file not found' in nothing.stderr


async def _exec(lab: LabState, context: str, *args: Any, **kw: Any) -> Any:
    api = await api_client(lab.files["kubeconfig"], context)
    try:
        return await run_in_pod(api, *args, **kw)
    finally:
        await api.close()


async def test_the_console_client_negotiates_v5_falls_back_to_v4_and_names_refusals(lab: LabState) -> None:
    out = bytearray()

    async def sink(data: bytes) -> None:
        out.extend(data)

    async def stdin() -> Any:
        yield b"x" * 300_000

    for protocols in (("v5.channel.k8s.io", "v4.channel.k8s.io"), ("v4.channel.k8s.io",)):
        out.clear()
        result = await _exec(
            lab, "admin", "postgres", "main-db-1", "postgres", bounded_stdin(["wc", "-c"], 300_000),
            stdout=sink, stdin=stdin(), protocols=protocols,
        )  # fmt: skip
        assert (result.protocol, result.code, bytes(out).strip()) == (protocols[0], 0, b"300000")
    result = await _exec(
        lab, "admin", "postgres", "main-db-1", "postgres", ["sh", "-c", "echo why >&2; exit 4"]
    )
    assert (result.code, result.last_line()) == (4, "why")
    with pytest.raises(KubeError) as refused:
        await _exec(lab, "admin", "postgres", "main-db-1", "pgbouncer", ["true"])
    assert (
        refused.value.status == 400
        and refused.value.message == "container pgbouncer is not valid for pod main-db-1"
    )
    docfast = json.loads(kubectl(lab, "-n", "docfast", "get", "pods", "-o", "json").stdout)["items"][0]
    with pytest.raises(KubeError) as forbidden:
        await _exec(lab, "deployer", "docfast", docfast["metadata"]["name"], "docfast", ["true"])
    assert forbidden.value.status == 403
    assert (
        'cannot create resource "pods/exec" in API group "" in the namespace "docfast"'
        in forbidden.value.message
    )
    with pytest.raises(ExecError, match="executable file not found"):
        await _exec(lab, "admin", "postgres", "main-db-1", "postgres", ["no-such-tool"])


def test_local_tools_back_up_verify_and_restore_too(
    lab: LabState, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """``database.dump_via = "local"``: this machine's pg_dump/pg_restore against the primary through the
    tunnel.  The session lab's server is Debian's 15, as the tools are: no refusal."""
    cfg = edited_config(
        lab, tmp_path_factory, "local-tools", lambda raw: raw["database"].update(dump_via="local")
    )
    code, events, output = _action(cfg, "backup", "--what", "db", state=tmp_path)
    assert code == 0, output[-3000:]
    report = events[-1]["report"]["backups"][0]
    assert report["dump_via"] == "local" and report["dumped_from"]["role"] == "primary"
    code, events, output = _action(cfg, "verify-restore", state=tmp_path)
    assert code == 0 and events[-1]["report"]["sentinel_found"], output[-3000:]
    code, events, output = _action(
        cfg, "restore", "--db", "docfast_staging", "--into", "docfast_staging", "--yes", state=tmp_path
    )
    assert code == 0 and events[-1]["verdict"] == "DONE", output[-3000:]


def _action(config: str | Path, *args: str, state: Path) -> tuple[int, list[dict[str, Any]], str]:
    proc = opsconsole(
        "--config", str(config), "--action", *args, "--json", check=False, timeout=300,
        env={"XDG_STATE_HOME": str(state)},
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def test_the_pooler_is_pgbouncer_pooling_transactions(lab: LabState) -> None:
    """Two clients in turn get the same server connection (one backend), and a statement one prepared is
    there for the other: transaction pooling, as CNPG's PgBouncer does it — why the console's own
    connections through the pooler never prepare.  ``postgres``/``postgres`` is a pool no one else uses."""
    import base64

    import psycopg

    from lab.cli import control

    get = ["-n", "postgres", "get", "secret", "main-db-superuser", "-o", "json"]
    password = base64.b64decode(json.loads(kubectl(lab, *get).stdout)["data"]["password"]).decode()
    port = next(iter(control(lab, "GET", "/db")["poolers"].values()))
    login = {"user": "postgres", "password": password, "dbname": "postgres", "autocommit": True}
    with (
        psycopg.connect(host="127.0.0.1", port=port, **login) as first,
        psycopg.connect(host="127.0.0.1", port=port, **login) as second,
    ):
        one = first.execute("SELECT pg_backend_pid()").fetchone()
        two = second.execute("SELECT pg_backend_pid()").fetchone()
        assert one == two  # both clients are still connected: session pooling would give two backends
        first.execute("PREPARE shared AS SELECT 42")
        try:
            assert second.execute("EXECUTE shared").fetchone() == (42,)
        finally:
            second.execute("DEALLOCATE shared")
