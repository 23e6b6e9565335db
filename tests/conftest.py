"""Shared fixtures: one lab (fast mode) per test session, started and stopped through the real CLI.

Everything binds to 127.0.0.1.  The lab validates every Hetzner response it sends against the shared
OpenAPI spec; the session fixture fails the run if any response did not conform.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cli import control
from lab.state import LabState, port_open, read_state

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The console's state (journal, reports, the Borg answer cache) goes to a directory of this run's
    own, never the operator's ``~/.local/state/opsconsole``."""
    import tempfile

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="opsconsole-test-state-")


# The modules that take longest, started first: `make e2e` runs the modules on two workers, whole modules
# each (--dist loadfile), and a long module begun last would leave the other worker idle at the end.
LONGEST_FIRST = ("test_watch.py", "test_drills.py", "test_promote.py", "test_upgrade.py", "test_ha.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def opsconsole(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real `opsconsole` entry point in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "opsconsole", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"opsconsole {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def workloads_settled(lab: LabState, timeout: float = 120) -> None:
    """Until every Deployment has all its replicas ready and the database cluster is healthy: what an
    action's steady-state preflight asks, on a lab started without waiting for it."""

    def settled() -> bool:
        deployments = kubectl_json(lab, "get", "deployments", "-A")["items"]
        ready = all(
            int((d.get("status") or {}).get("readyReplicas", 0)) >= int(d["spec"].get("replicas", 1))
            for d in deployments
        )
        clusters = kubectl_json(lab, "get", "clusters.postgresql.cnpg.io", "-A")["items"]
        healthy = all("healthy" in str((c.get("status") or {}).get("phase", "")).lower() for c in clusters)
        return ready and healthy

    wait_for(settled, timeout, "every Deployment ready and the database healthy", interval=0.5)


def through_pooler(lab: LabState, dbname: str, timeout: float = 20) -> Any:
    """A connection to ``dbname`` as DocFast makes it: through a pooler pod's PgBouncer, as the app user.
    Right after a database was dropped and created again (a restore), PgBouncer refuses logins for
    ``server_login_retry`` ("server login has been failing"), as on the cluster: retried until it passes."""
    import psycopg

    from lab.cli import control

    port = next(iter(control(lab, "GET", "/db")["poolers"].values()))

    def connect() -> Any:
        login = {"user": "docfast", "password": "docfast", "dbname": dbname, "connect_timeout": 5}
        conn = psycopg.connect(host="127.0.0.1", port=port, autocommit=True, **login)
        try:
            conn.execute("SELECT 1")  # PgBouncer logs into PostgreSQL at the first query, not at connect
            return conn
        except psycopg.Error as exc:
            conn.close()
            if "server login has been failing" in str(exc):
                return None
            raise

    return wait_for(connect, timeout, f"a login to {dbname} through PgBouncer", 0.5)


def env_file(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = value
    return out


def pgserver_bin() -> Path:
    """PostgreSQL 16's binaries from the ``pgserver`` wheel (a dev dependency): a server newer than
    Debian's 15 client tools, as the seed's 17 is newer than a Debian 12 machine's."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations, "pip package pgserver is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def start_lab(
    lab_dir: Path, wait: bool = False, speed: float | None = None, postgres_bin: Path | None = None
) -> LabState:
    """`lab up --fast` through the real CLI; the state it left.  ``wait``: until every part is ready, the
    Storage Box's seeded history included (the default of `lab up`); without it the modules that never
    read a backup start ~10 s sooner.  ``speed``: every lab duration times it instead of --fast's 0.2.
    ``postgres_bin``: the PostgreSQL installation the lab's database runs on."""
    extra = [
        *([] if wait else ["--no-wait"]),
        *(["--speed", str(speed)] if speed else []),
        *(["--postgres-bin", str(postgres_bin)] if postgres_bin else []),
    ]
    opsconsole("lab", "up", "--dir", str(lab_dir), "--fast", *extra)
    state = read_state(lab_dir)
    assert state is not None
    return state


@contextlib.contextmanager
def own_lab(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    speed: float | None = None,
    postgres_bin: Path | None = None,
) -> Iterator[LabState]:
    """A lab of a test module's own (for tests that disturb it), with the Storage Box's history seeded
    (preflights and gates want a fresh backup); stopped afterwards."""
    lab_dir = tmp_path_factory.mktemp(name)
    state = start_lab(lab_dir, wait=True, speed=speed, postgres_bin=postgres_bin)
    try:
        yield state
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))


def edited_config(
    lab: LabState, tmp_path_factory: pytest.TempPathFactory, name: str, edit: Callable[[dict[str, Any]], None]
) -> Path:
    """The lab's console.toml with ``edit`` applied to its parsed TOML, written to a directory of its own."""
    import tomllib

    import tomli_w

    raw: dict[str, Any] = tomllib.loads(Path(lab.files["console_config"]).read_text())
    edit(raw)
    path = tmp_path_factory.mktemp(name) / "console.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    lab_dir = tmp_path_factory.mktemp("lab")
    state = start_lab(lab_dir, wait=True)  # the dashboard's tests read the backups too
    yield state
    try:
        status = control(state, "GET", "/status")["hetzner"]
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))
    assert not [p for h, p in state.listeners() if port_open(h, p)]
    violations = lab_dir / "schema-violations.jsonl"
    assert status["violations"] == 0, violations.read_text() if violations.exists() else status


@pytest.fixture(scope="session")
def hcloud_env(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the Debian `hcloud` CLI: the lab's endpoint and token, no user config."""
    env = env_file(lab.files["hcloud_env"])
    env["HCLOUD_CONFIG"] = str(tmp_path_factory.mktemp("hcloud") / "cli.toml")
    return env


@pytest.fixture
async def api(lab: LabState) -> Any:
    """The kubernetes Python client (``kubernetes.aio``) on the module's lab, as the admin."""
    from kubernetes.aio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=lab.files["kubeconfig"], context="admin", client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api_client:
        yield api_client


def kubectl(
    lab: LabState, *args: str, context: str = "admin", check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real kubectl with the lab's kubeconfig."""
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", lab.files["kubeconfig"], "--context", context, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl_json(lab: LabState, *args: str, context: str = "admin") -> Any:
    return json.loads(kubectl(lab, *args, "-o", "json", context=context).stdout)


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """A lab of its own for tests that disturb the cluster (power, drain)."""
    lab_dir = tmp_path_factory.mktemp("fresh-lab")
    yield start_lab(lab_dir)
    opsconsole("lab", "down", "--dir", str(lab_dir))


def hcloud(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["hcloud", *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hcloud {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def hcloud_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(hcloud(env, *args, "-o", "json").stdout)


def run_action(
    lab: LabState, action: str, *args: str, state: Path, timeout: float = 600
) -> tuple[int, list[dict[str, Any]], str]:
    """`opsconsole --action ACTION … --json` on the lab, with its own state directory: exit code, the JSON
    events, and everything it printed (for assertion messages)."""
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    proc = opsconsole(
        "--config", lab.files["console_config"], "--action", action, *args, "--json",
        env=env, check=False, timeout=timeout,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def lab_hcloud_json(lab: LabState, tmp: Path, *args: str) -> Any:
    """`hcloud … -o json` against a lab of a test's own (its endpoint and token, no user config)."""
    env = {**env_file(lab.files["hcloud_env"]), "HCLOUD_CONFIG": str(tmp / "cli.toml")}
    return hcloud_json(env, *args)


async def kube_raw(
    lab: LabState, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the lab's Kubernetes API with the admin token, the answer's bytes untouched (for
    what the typed client would hide: a content type, the exact body)."""
    import ssl

    import aiohttp
    import yaml

    kubeconfig = yaml.safe_load(Path(lab.files["kubeconfig"]).read_text())
    token = next(u["user"]["token"] for u in kubeconfig["users"] if u["name"] == "admin")
    ctx = ssl.create_default_context(cafile=lab.files["ca"])
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            lab.kubernetes_url + path,
            data=None if body is None else json.dumps(body),
            ssl=ctx,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()
