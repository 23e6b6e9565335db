"""The K3s upgrade's pure parts: versions and their rules, flags read back from a Node, the installer line,
the drain simulation and the system-upgrade-controller Plans (the lab runs them end to end:
tests/test_upgrade.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actions.upgrade_suc import plans
from console.drain_sim import simulate
from console.errors import ActionFailed
from console.k3s import K3sVersion, installer_command, node_args, node_env, refusals

NOW = {"k3s-mgr": "v1.34.4+k3s1", "k3s-w1": "v1.34.4+k3s1", "k3s-w2": "v1.34.4+k3s1"}
ALL = list(NOW)


def test_versions_parse_and_order() -> None:
    assert K3sVersion.parse("v1.34.5+k3s1") > K3sVersion.parse("v1.34.4+k3s2")
    assert K3sVersion.parse("v1.34.4+k3s2") > K3sVersion.parse("v1.34.4+k3s1")
    assert str(K3sVersion.parse(" v1.35.0+k3s1 ")) == "v1.35.0+k3s1"
    for bad in ("1.34.5", "v1.34+k3s1", "v1.34.5-k3s1", "latest"):
        with pytest.raises(ValueError, match="not a K3s version"):
            K3sVersion.parse(bad)


def test_the_next_patch_and_the_next_minor_may_follow() -> None:
    assert refusals(NOW, "k3s-mgr", ALL, "v1.34.5+k3s1", False) == []
    assert refusals(NOW, "k3s-mgr", ALL, "v1.35.2+k3s1", False) == []


def test_a_skipped_minor_version_is_refused_per_node() -> None:
    why = refusals(NOW, "k3s-mgr", ALL, "v1.36.0+k3s1", False)
    assert len(why) == 3 and "skips a minor version" in why[0] and "v1.35.x first" in why[0]


def test_an_agent_never_runs_newer_than_the_server() -> None:
    why = refusals(NOW, "k3s-mgr", ["k3s-w1"], "v1.34.5+k3s1", False)
    assert why == [
        "k3s-w1 would run v1.34.5+k3s1, newer than the server k3s-mgr (v1.34.4+k3s1): "
        "upgrade the server first"
    ]
    ahead = {**NOW, "k3s-mgr": "v1.34.5+k3s1"}
    assert refusals(ahead, "k3s-mgr", ["k3s-w1"], "v1.34.5+k3s1", False) == []


def test_a_downgrade_needs_its_flag_and_stays_in_its_minor_version() -> None:
    why = refusals(NOW, "k3s-mgr", ALL, "v1.34.3+k3s1", False)
    assert len(why) == 3 and "--allow-downgrade" in why[0]
    assert refusals(NOW, "k3s-mgr", ALL, "v1.34.3+k3s1", True) == []
    (minor,) = refusals(NOW, "k3s-mgr", ["k3s-w1"], "v1.33.8+k3s1", True)
    assert "another minor version" in minor and "etcd snapshot" in minor
    # The server alone downgraded below an agent left as it is: that agent would be newer.
    (ahead,) = refusals(
        {**NOW, "k3s-w2": "v1.34.3+k3s1"}, "k3s-mgr", ["k3s-mgr", "k3s-w2"], "v1.34.3+k3s1", True
    )
    assert (
        ahead.startswith("k3s-w1 would run v1.34.4+k3s1, newer than the server")
        and "downgrade k3s-w1 first" in ahead
    )


def _node(args: Any, env: Any = None) -> dict[str, Any]:
    ann = {"k3s.io/node-args": json.dumps(args)} if args is not None else {}
    if env is not None:
        ann["k3s.io/node-env"] = json.dumps(env)
    return {"metadata": {"name": "k3s-w1", "annotations": ann}}


def test_flags_are_read_back_from_the_node() -> None:
    node = _node(
        ["agent", "--node-ip", "10.0.1.6", "--flannel-iface", "enp7s0"],
        {"K3S_TOKEN": "********", "K3S_URL": "https://10.0.1.5:6443"},
    )
    assert node_args(node) == ["agent", "--node-ip", "10.0.1.6", "--flannel-iface", "enp7s0"]
    assert node_env(node) == {"K3S_URL": "https://10.0.1.5:6443"}  # the redacted token is not carried
    with pytest.raises(ActionFailed, match=r"no k3s\.io/node-args"):
        node_args(_node(None))
    with pytest.raises(ActionFailed, match="secret flag --token"):
        node_args(_node(["server", "--token", "********"]))


def test_the_installer_line_keeps_the_token_off_the_command_line() -> None:
    env = {"K3S_URL": "https://10.0.1.5:6443", "K3S_TOKEN": "not on the command line"}
    line = installer_command(["agent", "--node-ip", "10.0.1.6"], "v1.34.5+k3s1", env)
    assert line == (
        "read -r K3S_TOKEN && export K3S_TOKEN && curl -sfL https://get.k3s.io | "
        "INSTALL_K3S_VERSION=v1.34.5+k3s1 K3S_URL=https://10.0.1.5:6443 sh -s - agent --node-ip 10.0.1.6"
    )
    server = installer_command(["server", "--cluster-init"], "v1.34.5+k3s1", {})
    assert "K3S_URL" not in server and "read -r" not in server


def _pod(name: str, node: str, cpu: str = "100m", mem: str = "128Mi", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": extra.pop("namespace", "docfast"), "labels": extra.pop("labels", {})}
    meta["ownerReferences"] = extra.pop("owners", [{"kind": "ReplicaSet", "name": "rs", "controller": True}])
    spec = {
        "nodeName": node,
        "containers": [{"resources": {"requests": {"cpu": cpu, "memory": mem}}}],
        **extra,
    }
    return {"metadata": meta, "spec": spec, "status": {"phase": "Running"}}


def _k8s_node(name: str, taint: bool = False) -> dict[str, Any]:
    spec = (
        {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
        if taint
        else {}
    )
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {"allocatable": {"cpu": "2", "memory": "3908848Ki"}},
    }


NODES = [_k8s_node("k3s-mgr", taint=True), _k8s_node("k3s-w1"), _k8s_node("k3s-w2")]


def test_a_drain_that_fits_names_the_room_left() -> None:
    pods = [_pod("a", "k3s-w1"), _pod("b", "k3s-w1"), _pod("c", "k3s-w2", cpu="500m")]
    sim = simulate("k3s-w1", NODES, pods, [])
    assert sim.fits and sim.moving == ["docfast/a", "docfast/b"] and not sim.blocked
    assert "k3s-w2 1.50 CPU" in sim.lines()[0]  # the tainted server takes none of them
    assert "k3s-mgr" not in sim.lines()[0].split(";")[1]


def test_a_drain_with_no_room_says_which_pods() -> None:
    pods = [_pod("big", "k3s-w1", cpu="1500m"), _pod("there", "k3s-w2", cpu="1")]
    sim = simulate("k3s-w1", NODES, pods, [])
    assert not sim.fits and sim.short == ["docfast/big"]


def test_a_budget_allowing_no_disruption_blocks_and_is_named() -> None:
    pods = [_pod("a", "k3s-w1", labels={"app": "docfast"})]
    budget = {
        "metadata": {"name": "docfast-all", "namespace": "docfast"},
        "spec": {"selector": {"matchLabels": {"app": "docfast"}}},
        "status": {"disruptionsAllowed": 0},
    }
    sim = simulate("k3s-w1", NODES, pods, [budget])
    assert sim.blocked and "docfast/docfast-all" in sim.blocked[0] and "holds a" in sim.blocked[0]


def test_the_primary_moves_first_and_its_budget_is_no_hold() -> None:
    owner = [{"kind": "Cluster", "name": "main-db", "controller": True}]
    pods = [_pod("main-db-1", "k3s-w1", namespace="postgres", owners=owner, labels={"role": "primary"})]
    budget = {
        "metadata": {"name": "main-db-primary", "namespace": "postgres"},
        "spec": {"selector": {"matchLabels": {"role": "primary"}}},
        "status": {"disruptionsAllowed": 0},
    }
    sim = simulate("k3s-w1", NODES, pods, [budget], "main-db-1", "postgres", "main-db-2")
    assert sim.primary == "main-db-1" and not sim.blocked and sim.staying == ["main-db-1"]
    assert any("switch over to main-db-2 first" in line for line in sim.lines())
    stuck = simulate("k3s-w1", NODES, pods, [budget], "main-db-1", "postgres", None)
    assert stuck.blocked  # no replica to move to: the budget holds it


def test_a_pod_whose_pair_runs_everywhere_else_waits_pending() -> None:
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "pooler"}}}
            ]
        }
    }
    pods = [
        _pod("pooler-1", "k3s-w1", namespace="postgres", labels={"app": "pooler"}, affinity=anti),
        _pod("pooler-2", "k3s-w2", namespace="postgres", labels={"app": "pooler"}, affinity=anti),
    ]
    sim = simulate("k3s-w1", NODES, pods, [])
    assert sim.pending == ["postgres/pooler-1"] and sim.fits


def test_the_plans_are_what_the_controller_expects() -> None:
    server, agent = plans("v1.34.5+k3s1", ["k3s-mgr"], ["k3s-w1", "k3s-w2"], 90)
    assert server["spec"]["cordon"] is True and "drain" not in server["spec"]
    assert agent["spec"]["prepare"] == {"image": "rancher/k3s-upgrade", "args": ["prepare", "k3s-server"]}
    assert agent["spec"]["concurrency"] == 1 and agent["spec"]["drain"]["timeout"] == "90s"
    exprs = agent["spec"]["nodeSelector"]["matchExpressions"]
    assert {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k3s-w1", "k3s-w2"]} in exprs
    (only_agents,) = plans("v1.34.5+k3s1", [], ["k3s-w1"], 90)
    assert "prepare" not in only_agents["spec"]  # no server Plan to wait for


def test_a_pod_bound_to_the_control_plane_has_nowhere_else_to_go() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "node-role.kubernetes.io/control-plane",
                                "operator": "In",
                                "values": ["true"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    tolerate = [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    ]
    nodes = [{**n, "metadata": {**n["metadata"], "labels": {}}} for n in NODES]
    nodes[0]["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": "true"}
    pods = [
        _pod("suc", "k3s-mgr", affinity=affinity, tolerations=tolerate),
        _pod("dns", "k3s-mgr", tolerations=tolerate),
    ]
    sim = simulate("k3s-mgr", nodes, pods, [])
    assert sim.pending == ["docfast/suc"] and sim.fits and sim.moving == ["docfast/suc", "docfast/dns"]


async def test_answered_waits_out_an_api_that_does_not_answer_and_no_longer() -> None:
    from console.clients.kube import KubeError, answered

    calls: list[int] = []

    async def restarting() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KubeError(0, "Unreachable", "ServerDisconnectedError: Server disconnected")
        return "answered"

    assert await answered(restarting, timeout=5) == "answered" and len(calls) == 3

    async def forbidden() -> str:
        raise KubeError(403, "Forbidden", "nodes is forbidden")

    with pytest.raises(KubeError) as refused:
        await answered(forbidden, timeout=5)
    assert refused.value.status == 403  # not a restart: at once
