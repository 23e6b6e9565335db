"""The `hcloud` Python library against the lab: list, create, wait for actions, delete."""

from __future__ import annotations

import pytest
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import Network
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from lab.state import LabState


@pytest.fixture(scope="module")
def client(lab: LabState) -> Client:
    return Client(token=lab.secret("hcloud-token"), api_endpoint=lab.hetzner_url, poll_interval=0.2)


def test_lists_the_seed(client: Client) -> None:
    names = sorted(s.name for s in client.servers.get_all())
    assert names[:3] == ["k3s-mgr", "k3s-w1", "k3s-w2"]
    workers = client.servers.get_all(label_selector="role=worker")
    assert sorted(s.name for s in workers) == ["k3s-w1", "k3s-w2"]
    assert client.servers.get_all(label_selector="role notin (worker)")[0].name == "k3s-mgr"
    lb = client.load_balancers.get_by_name("k3s-lb")
    assert lb is not None and lb.id == 5834131
    assert {t.server.id for t in lb.targets} == {121365839, 121365840}


def test_create_wait_and_delete_a_server(client: Client) -> None:
    created = client.servers.create(
        name="lab-test-1",
        server_type=ServerType(name="cax11"),
        image=Image(name="ubuntu-24.04"),
        location=Location(name="nbg1"),
        ssh_keys=[SSHKey(name="openclaw")],
        networks=[Network(id=11949384)],
        labels={"purpose": "test"},
    )
    assert created.server.status == "initializing"
    assert created.root_password is None  # an SSH key was given
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
        assert action.status == "success"
    server = client.servers.get_by_id(created.server.id)
    assert server.status == "running"
    assert server.image.architecture == "arm"
    assert server.private_net[0].ip.startswith("10.0.")
    assert client.servers.get_by_name("lab-test-1").id == server.id

    with pytest.raises(APIException) as dup:
        client.servers.create(
            name="lab-test-1", server_type=ServerType(name="cax11"), image=Image(name="ubuntu-24.04")
        )
    assert dup.value.code == "uniqueness_error"

    delete = client.servers.delete(server)
    delete.wait_until_finished()
    assert delete.status == "success"
    with pytest.raises(APIException) as gone:
        client.servers.get_by_id(server.id)
    assert gone.value.code == "not_found"


def test_pagination(client: Client) -> None:
    page = client.server_types.get_list(page=1, per_page=2)
    assert len(page.server_types) == 2
    assert page.meta.pagination.next_page == 2
    assert page.meta.pagination.total_entries == len(client.server_types.get_all())


def test_invalid_input_is_refused(client: Client) -> None:
    with pytest.raises(APIException) as bad:
        client.servers.create(
            name="not a hostname!", server_type=ServerType(name="cax11"), image=Image(name="ubuntu-24.04")
        )
    assert bad.value.code == "invalid_input"
    with pytest.raises(APIException) as missing:
        client.servers.create(
            name="lab-test-2", server_type=ServerType(name="nope"), image=Image(name="ubuntu-24.04")
        )
    assert missing.value.code == "invalid_input"
