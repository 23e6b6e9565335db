"""Part 3: real PostgreSQL behind the CNPG twin, nodes over OpenSSH, a Storage Box with real Borg."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any

import psycopg
import pytest

from lab.cli import control
from lab.state import LabState
from tests.conftest import env_file, hcloud, kubectl, kubectl_json, wait_for


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    return fresh_lab


def _ssh(lab: LabState, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ssh", "-F", lab.files["ssh_config"], host, command], capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ssh {host} {command} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tunnel:
    """``ssh -F config -N -L port:target`` — OpenSSH forwarding into the cluster, as an operator would."""

    def __init__(self, lab: LabState, node: str, target: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                "ssh",
                "-F",
                lab.files["ssh_config"],
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"127.0.0.1:{self.port}:{target}",
                node,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 20, f"the tunnel to {target}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _cluster(lab: LabState) -> dict[str, Any]:
    return kubectl_json(lab, "get", "clusters.postgresql.cnpg.io", "main-db", "-n", "postgres")


def _superuser(lab: LabState) -> str:
    import base64

    secret = kubectl_json(lab, "get", "secret", "main-db-superuser", "-n", "postgres")
    return base64.b64decode(secret["data"]["password"]).decode()


def test_cluster_status_is_cnpgs_and_validates(lab: LabState) -> None:
    from lab.kube.seed import crds
    from lab.kube.validation import validate

    st = wait_for(
        lambda: (c := _cluster(lab)).get("status", {}).get("readyInstances") == 2 and c,
        60,
        "both instances ready",
    )["status"]
    assert st["phase"] == "Cluster in healthy state"
    assert (st["currentPrimary"], st["targetPrimary"], st["instances"]) == ("main-db-1", "main-db-1", 2)
    assert st["instancesStatus"] == {"healthy": ["main-db-1", "main-db-2"]}
    assert st["timelineID"] == 1 and st["certificates"]["expirations"]
    crd = next(c for c in crds() if c["metadata"]["name"] == "clusters.postgresql.cnpg.io")
    assert validate(_cluster(lab), crd, strict=True) == []
    pods = {
        p["metadata"]["name"]: p
        for p in kubectl_json(lab, "get", "pods", "-n", "postgres", "-l", "cnpg.io/podRole=instance")["items"]
    }
    assert pods["main-db-1"]["metadata"]["labels"]["role"] == "primary"
    assert pods["main-db-2"]["metadata"]["labels"]["cnpg.io/instanceRole"] == "replica"
    assert (pods["main-db-1"]["spec"]["nodeName"], pods["main-db-2"]["spec"]["nodeName"]) == (
        "k3s-w1",
        "k3s-w2",
    )
    svcs = {s["metadata"]["name"] for s in kubectl_json(lab, "get", "svc", "-n", "postgres")["items"]}
    assert {"main-db-rw", "main-db-ro", "main-db-r"} <= svcs


def test_ssh_tunnel_write_on_primary_read_on_replica(lab: LabState) -> None:
    rw = Tunnel(lab, "k3s-w1", "main-db-rw.postgres.svc:5432")
    ro = Tunnel(lab, "k3s-w2", "main-db-ro.postgres.svc.cluster.local:5432")
    try:
        marker = f"lab-{time.time()}"
        # psql, the real client, writes through the tunnel …
        env = {**os.environ, "PGPASSWORD": "docfast"}
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(rw.port),
                "-U",
                "docfast",
                "-d",
                "docfast",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE TABLE IF NOT EXISTS lab_probe (v text)",
                "-c",
                f"INSERT INTO lab_probe VALUES ('{marker}')",
            ],
            check=True,
            env=env,
            capture_output=True,
        )

        def on_replica() -> bool:
            with psycopg.connect(
                f"host=127.0.0.1 port={ro.port} dbname=docfast user=docfast password=docfast"
            ) as c:
                in_recovery = c.execute("SELECT pg_is_in_recovery()").fetchone()
                assert in_recovery is not None and in_recovery[0]
                try:
                    return c.execute("SELECT 1 FROM lab_probe WHERE v = %s", (marker,)).fetchone() is not None
                except psycopg.errors.UndefinedTable:
                    return False  # the CREATE has not been replayed yet

        wait_for(on_replica, 20, "the row to reach the replica")
        with psycopg.connect(
            f"host=127.0.0.1 port={rw.port} dbname=postgres user=postgres password={_superuser(lab)}"
        ) as c:
            rows = c.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
            slots = c.execute("SELECT slot_name, active FROM pg_replication_slots").fetchall()
        assert ("main-db-2", "streaming") in rows
        assert ("_cnpg_main_db_2", True) in slots
    finally:
        rw.close()
        ro.close()


def test_etcd_snapshots_over_ssh(lab: LabState) -> None:
    listing = _ssh(lab, "k3s-mgr", "k3s etcd-snapshot ls").stdout
    rows = [ln for ln in listing.splitlines() if ln.startswith("etcd-snapshot-k3s-mgr-")]
    assert len(rows) == 5  # the seed's daily snapshots, retention 5
    assert all("file:///" in row and "/var/lib/rancher/k3s/server/db/snapshots/" in row for row in rows)
    saved = _ssh(lab, "k3s-mgr", "k3s etcd-snapshot save --name lab-test").stdout
    assert "Snapshot lab-test-k3s-mgr-" in saved and "saved" in saved
    assert "lab-test-k3s-mgr-" in _ssh(lab, "k3s-mgr", "k3s etcd-snapshot ls").stdout
    assert _ssh(lab, "k3s-w1", "k3s --version").stdout.startswith("k3s version v1.34.4+k3s1")
    stranger = os.path.join(lab.dir, "stranger_key")
    if not os.path.exists(stranger):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", stranger], check=True)
    refused = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(lab.ssh["k3s-mgr"]),
            "-i",
            stranger,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 255 and "Permission denied" in refused.stderr  # another key: no shell


def test_borg_lists_both_repositories_over_ssh(lab: LabState) -> None:
    wait_for(lambda: control(lab, "GET", "/storagebox")["ready"], 120, "the Storage Box history to be seeded")
    env = {**os.environ, **env_file(lab.files["borg_env"])}
    env["BORG_RSH"] = env["BORG_RSH"].strip("'")
    env["BORG_PASSPHRASE"] = env["BORG_PASSPHRASE"].strip("'")
    env["BORG_BASE_DIR"] = os.path.join(lab.dir, "client-borg")
    for repo_var, prefix in (("BORG_DB_REPO", "db-"), ("BORG_CLUSTER_REPO", "cluster-")):
        out = subprocess.run(
            ["borg", "list", "--json", env[repo_var]], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        archives = json.loads(out.stdout)["archives"]
        assert len(archives) >= 10 and all(a["name"].startswith(prefix) for a in archives)
    latest = json.loads(
        subprocess.run(
            ["borg", "list", "--json", "--last", "1", env["BORG_DB_REPO"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        ).stdout
    )["archives"][0]
    files = subprocess.run(
        ["borg", "list", "--short", f"{env['BORG_DB_REPO']}::{latest['name']}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout.split()
    assert {"docfast.dump", "docfast_staging.dump"} <= {f.rsplit("/", 1)[-1] for f in files}


def test_poweroff_primary_node_fails_over_and_old_primary_rejoins(lab: LabState) -> None:
    env = {**env_file(lab.files["hcloud_env"]), "HCLOUD_CONFIG": "/nonexistent/hcloud.toml"}
    wait_for(lambda: _cluster(lab)["status"].get("readyInstances") == 2, 60, "a healthy cluster")
    t0 = time.monotonic()
    hcloud(env, "server", "poweroff", "k3s-w1")
    # Node grace period (50 s x 0.2, seen within the 5 s x 0.2 monitor period) marks the primary pod not
    # ready; failoverDelay is 0.
    wait_for(lambda: _cluster(lab)["status"]["currentPrimary"] == "main-db-2", 30, "main-db-2 promoted")
    promoted_after = time.monotonic() - t0
    assert promoted_after < 10 + 1 + 6, promoted_after
    out = kubectl(lab, "get", "clusters.postgresql.cnpg.io", "main-db", "-n", "postgres", "-o", "yaml").stdout
    assert "currentPrimary: main-db-2" in out
    pods = kubectl_json(lab, "get", "pods", "-n", "postgres", "-l", "role=primary")["items"]
    assert [p["metadata"]["name"] for p in pods] == ["main-db-2"]
    lb = lab.load_balancer["address"]

    def healthy_through_lb() -> bool:
        import urllib.request

        try:
            req = urllib.request.Request(f"http://{lb}/health", headers={"Host": "docfast.dev"})
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(healthy_through_lb, 60, "/health through the load balancer to recover")
    hcloud(env, "server", "poweron", "k3s-w1")

    def rejoined() -> bool:
        st = _cluster(lab)["status"]
        return st.get("readyInstances") == 2 and st.get("timelineID") == 2

    wait_for(rejoined, 60, "main-db-1 back as a replica on timeline 2")
    tunnel = Tunnel(lab, "k3s-w2", "main-db-rw.postgres.svc:5432")
    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={tunnel.port} dbname=postgres user=postgres password={_superuser(lab)}"
        ) as c:
            wait_for(
                lambda: (
                    ("main-db-1", "streaming")
                    in c.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
                ),
                30,
                "main-db-1 streaming",
            )
            timeline = c.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
            assert timeline is not None
    finally:
        tunnel.close()
    assert (
        kubectl_json(lab, "get", "pod", "main-db-1", "-n", "postgres")["metadata"]["labels"]["role"]
        == "replica"
    )


def test_switchover_by_status_patch(lab: LabState) -> None:
    wait_for(lambda: _cluster(lab)["status"].get("readyInstances") == 2, 60, "a healthy cluster")
    target = "main-db-1" if _cluster(lab)["status"]["currentPrimary"] == "main-db-2" else "main-db-2"
    # What `kubectl cnpg promote` sends: a merge patch of status.targetPrimary on the status subresource.
    kubectl(
        lab,
        "patch",
        "clusters.postgresql.cnpg.io",
        "main-db",
        "-n",
        "postgres",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"targetPrimary": target}}),
    )
    wait_for(
        lambda: _cluster(lab)["status"]["currentPrimary"] == target, 60, f"{target} promoted by switchover"
    )
    wait_for(lambda: _cluster(lab)["status"].get("readyInstances") == 2, 60, "the old primary following")


def test_fencing_stops_the_instance_without_failover(lab: LabState) -> None:
    primary = _cluster(lab)["status"]["currentPrimary"]
    kubectl(
        lab,
        "annotate",
        "clusters.postgresql.cnpg.io",
        "main-db",
        "-n",
        "postgres",
        f'cnpg.io/fencedInstances=["{primary}"]',
        "--overwrite",
    )
    wait_for(lambda: _cluster(lab)["status"].get("readyInstances") == 1, 30, "the fenced primary stopped")
    assert _cluster(lab)["status"]["currentPrimary"] == primary  # no failover from a fenced primary
    kubectl(
        lab,
        "annotate",
        "clusters.postgresql.cnpg.io",
        "main-db",
        "-n",
        "postgres",
        "cnpg.io/fencedInstances-",
    )
    wait_for(lambda: _cluster(lab)["status"].get("readyInstances") == 2, 60, "unfenced")


def test_paused_wal_receiver_makes_lag_grow(lab: LabState) -> None:
    st = _cluster(lab)["status"]
    replica = next(n for n in st["instanceNames"] if n != st["currentPrimary"])
    info = control(lab, "GET", "/db")
    primary_port = info["ports"][st["currentPrimary"]]
    control(lab, "POST", "/fault/db", {"receiver": replica, "paused": True})
    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={primary_port} dbname=docfast user=docfast password=docfast",
            autocommit=True,
        ) as c:
            c.execute("CREATE TABLE IF NOT EXISTS lag_probe (v text)")
            c.execute("INSERT INTO lag_probe SELECT repeat('x', 500) FROM generate_series(1, 20000)")
        with psycopg.connect(
            f"host=127.0.0.1 port={primary_port} dbname=postgres user=postgres password={_superuser(lab)}"
        ) as c:

            def lag() -> int:
                row = c.execute(
                    "SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    ("_cnpg_" + replica.replace("-", "_"),),
                ).fetchone()
                return int(row[0]) if row and row[0] is not None else 0

            assert wait_for(lambda: lag() > 1_000_000 and lag(), 20, "replication lag to grow")
    finally:
        control(lab, "POST", "/fault/db", {"receiver": replica, "paused": False})


def test_storage_box_unreachable_and_locked_repository(lab: LabState) -> None:
    control(lab, "POST", "/storagebox", {"reachable": False})
    try:
        refused = _ssh(lab, "storagebox", "true", check=False)
        assert refused.returncode == 255, refused.stderr
    finally:
        control(lab, "POST", "/storagebox", {"reachable": True})
    assert _ssh(lab, "storagebox", "ls").stdout.split() == ["k3s-cluster", "k3s-db"]
    wait_for(lambda: control(lab, "GET", "/storagebox")["ready"], 120, "the Storage Box history")
    control(lab, "POST", "/storagebox", {"lock": "k3s-db"})
    try:
        env = {**os.environ, **{k: v.strip("'") for k, v in env_file(lab.files["borg_env"]).items()}}
        env["BORG_BASE_DIR"] = os.path.join(lab.dir, "client-borg")
        locked = subprocess.run(
            ["borg", "--lock-wait", "1", "list", env["BORG_DB_REPO"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert locked.returncode == 2 and "Failed to create/acquire the lock" in locked.stderr
    finally:
        control(lab, "POST", "/storagebox", {"unlock": "k3s-db"})
