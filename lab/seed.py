"""Build the twin's initial state from config.toml: the seed's names, IDs, labels and addresses (as data)."""

from __future__ import annotations

import time

from console.config import Config
from lab.hetzner import catalog
from lab.hetzner.project import HetznerProject

# The cluster has run since before the seed's last update; servers were created then.
SEED_CREATED = time.mktime((2025, 11, 3, 9, 0, 0, 0, 0, 0))


def seed_hetzner(
    project: HetznerProject, config: Config, ssh_public_key: str | None, scenario: str = "seed"
) -> None:
    """Populate ``project`` as the seed describes it; ``scenario="empty"`` leaves a fresh project."""
    if scenario == "empty":
        return
    hz = config.hetzner
    dc = catalog.by_id_or_name(catalog.DATACENTERS, hz.datacenter)
    st = catalog.by_id_or_name(catalog.SERVER_TYPES, hz.server_type)
    if dc is None or st is None:
        raise ValueError(f"unknown datacenter {hz.datacenter!r} or server type {hz.server_type!r}")
    image = catalog.by_id_or_name(catalog.IMAGES, hz.image, architecture=st["architecture"])
    if image is None:
        raise ValueError(f"unknown image {hz.image!r} for {st['architecture']}")
    net = project.new_network(
        nid=hz.network.id,
        name=hz.network.name,
        ip_range=hz.network.ip_range,
        subnets=[{"type": "cloud", "ip_range": hz.network.subnet, "network_zone": hz.network.network_zone}],
        labels={"cluster": config.cluster.name},
        created=SEED_CREATED,
    )
    for node in config.nodes:
        server = project.new_server(
            sid=node.hetzner_id,
            name=node.name,
            server_type=st,
            image=image,
            datacenter=dc,
            ipv4=node.public_ipv4,
            created=SEED_CREATED,
            labels={
                "cluster": config.cluster.name,
                "role": "control-plane" if node.role == "server" else "worker",
            },
        )
        project.attach_private(server, net, node.private_ipv4)
    fw = project.new_firewall(
        fid=hz.firewall.id,
        name=hz.firewall.name,
        rules=[r.model_dump() for r in hz.firewall.rules],
        created=SEED_CREATED,
    )
    for name in hz.firewall.applied_to:
        fw["applied_to"].append({"type": "server", "server": {"id": config.node(name).hetzner_id}})
    if ssh_public_key:
        project.new_ssh_key(name="openclaw", public_key=ssh_public_key)
    lbc = hz.load_balancer
    lb_type = catalog.by_id_or_name(catalog.LOAD_BALANCER_TYPES, lbc.type)
    if lb_type is None:
        raise ValueError(f"unknown load balancer type {lbc.type!r}")
    lb = project.new_load_balancer(
        lid=lbc.id,
        name=lbc.name,
        lb_type=lb_type,
        location=dc["location"],
        algorithm=lbc.algorithm,
        ipv4=lbc.public_ipv4,
        labels={"cluster": config.cluster.name},
        created=SEED_CREATED,
    )
    lb["private_net"].append({"network": net["id"], "ip": lbc.private_ipv4 or project._free_private_ip(net)})
    hc = lbc.health_check
    for port in lbc.ports:
        lb["services"].append(
            project.service(
                {
                    "protocol": "tcp",
                    "listen_port": port,
                    "destination_port": port,
                    "proxyprotocol": False,
                    "health_check": {
                        "protocol": hc.protocol,
                        "port": port,
                        "interval": hc.interval_s,
                        "timeout": hc.timeout_s,
                        "retries": hc.retries,
                    },
                }
            )
        )
    for name in lbc.targets:
        project.add_target(
            lb,
            {
                "type": "server",
                "server": {"id": config.node(name).hetzner_id},
                "use_private_ip": lbc.use_private_ip,
            },
        )
    project.mark_healthy(lb)
