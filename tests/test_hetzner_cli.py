"""The Debian `hcloud` CLI against the lab, through HCLOUD_ENDPOINT, as an operator would use it."""

from __future__ import annotations

from console.config import load_config
from tests.conftest import ROOT, hcloud, hcloud_json, wait_for

SEED = load_config(ROOT / "config.toml")


def test_server_list_shows_the_seeds_nodes(hcloud_env: dict[str, str]) -> None:
    servers = {s["name"]: s for s in hcloud_json(hcloud_env, "server", "list")}
    assert set(servers) >= {"k3s-mgr", "k3s-w1", "k3s-w2"}
    for node in SEED.nodes:
        s = servers[node.name]
        assert s["id"] == node.hetzner_id
        assert s["server_type"]["name"] == "cax11"
        assert s["datacenter"]["location"]["name"] == "nbg1"
        assert s["public_net"]["ipv4"]["ip"] == node.public_ipv4
        assert [p["ip"] for p in s["private_net"]] == [node.private_ipv4]
    table = hcloud(hcloud_env, "server", "list").stdout
    assert "k3s-mgr" in table and "10.0.1.5 (k3s-net)" in table


def test_server_describe(hcloud_env: dict[str, str]) -> None:
    text = hcloud(hcloud_env, "server", "describe", "k3s-w1").stdout
    assert "121365839" in text and "cax11" in text and "10.0.1.6" in text
    data = hcloud_json(hcloud_env, "server", "describe", "k3s-w1")
    assert data["load_balancers"] == [SEED.hetzner.load_balancer.id]
    assert data["public_net"]["firewalls"] == [{"id": SEED.hetzner.firewall.id, "status": "applied"}]


def test_load_balancer_describe(hcloud_env: dict[str, str]) -> None:
    lb = hcloud_json(hcloud_env, "load-balancer", "describe", "k3s-lb")
    assert lb["id"] == 5834131
    assert lb["public_net"]["ipv4"]["ip"] == "46.225.37.135"
    assert sorted(s["listen_port"] for s in lb["services"]) == [80, 443]
    for svc in lb["services"]:
        hc = svc["health_check"]
        assert (hc["protocol"], hc["interval"], hc["timeout"], hc["retries"]) == ("tcp", 15, 10, 3)
    assert sorted(t["server"]["id"] for t in lb["targets"]) == [121365839, 121365840]
    text = hcloud(hcloud_env, "load-balancer", "describe", "k3s-lb").stdout
    assert "k3s-w1" in text and "k3s-w2" in text and "healthy" in text


def test_network_and_firewall_describe(hcloud_env: dict[str, str]) -> None:
    net = hcloud_json(hcloud_env, "network", "describe", "11949384")
    assert net["ip_range"] == "10.0.0.0/16"
    assert sorted(net["servers"]) == [121365837, 121365839, 121365840]
    fw = hcloud_json(hcloud_env, "firewall", "describe", "coolify-fw")
    assert fw["id"] == 10553199
    (rule,) = fw["rules"]
    assert (rule["direction"], rule["protocol"], rule["port"]) == ("in", "tcp", "6443")
    assert rule["source_ips"] == ["10.0.0.0/16", "178.115.247.134/32"]


def test_poweroff_waits_for_the_action_then_poweron(hcloud_env: dict[str, str]) -> None:
    hcloud(hcloud_env, "server", "poweroff", "k3s-w2")
    # The CLI returned only once the action finished: the server is off now, not "stopping".
    assert hcloud_json(hcloud_env, "server", "describe", "k3s-w2")["status"] == "off"

    # The load balancer marks the target unhealthy per its own health check (15 s x 3 retries, scaled).
    def w2_unhealthy() -> bool:
        lb = hcloud_json(hcloud_env, "load-balancer", "describe", "k3s-lb")
        target = next(t for t in lb["targets"] if t["server"]["id"] == 121365840)
        return all(h["status"] == "unhealthy" for h in target["health_status"])

    wait_for(w2_unhealthy, 30, "k3s-w2 to turn unhealthy at the load balancer", interval=0.5)
    hcloud(hcloud_env, "server", "poweron", "k3s-w2")
    assert hcloud_json(hcloud_env, "server", "describe", "k3s-w2")["status"] == "running"

    def w2_healthy() -> bool:
        lb = hcloud_json(hcloud_env, "load-balancer", "describe", "k3s-lb")
        target = next(t for t in lb["targets"] if t["server"]["id"] == 121365840)
        return all(h["status"] == "healthy" for h in target["health_status"])

    wait_for(w2_healthy, 30, "k3s-w2 to turn healthy again", interval=0.5)


def test_bad_token_is_refused_by_the_cli(hcloud_env: dict[str, str]) -> None:
    proc = hcloud({**hcloud_env, "HCLOUD_TOKEN": "x" * 64}, "server", "list", check=False)
    assert proc.returncode != 0
    assert "unable to authenticate" in proc.stderr and "unauthorized" in proc.stderr
