"""The long tail of the Engine API, with the real docker CLI and the Docker SDK: swarm paths answered
as by a Docker node outside a swarm, image/volume/network events, listing filters, wrong types in
create bodies, the restarting state, anonymous volumes and prune, load errors, repeated query keys."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time

import docker as docker_sdk
import pytest
from berth_e2e_conftest import (
    RUN_NET,
    LineReader,
    assert_responsive,
    docker,
    finish,
    is_dockerd,
    popen_docker,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's


def inspect(d, what: str) -> dict:
    return json.loads(docker(d, "inspect", what).stdout)[0]


def events_between(client, since: float, filters: dict | None = None) -> list[dict]:
    """Every event from *since* until now, read back through the API (since/until replay)."""
    until = time.time() + 0.5
    time.sleep(0.6)
    return list(client.api.events(since=since, until=until, filters=filters or {}, decode=True))


def context_tar(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


# --------------------------------------------------------------------------- #
# Swarm: berth is never a swarm node


def test_swarm_paths_answer_as_a_node_outside_a_swarm(berthd, client):
    cp = docker(berthd, "swarm", "leave", "--force", check=False)
    assert cp.returncode != 0 and "This node is not part of a swarm" in cp.stderr, cp.stderr
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"]):
        cp = docker(berthd, *args, check=False)
        assert cp.returncode != 0 and "This node is not a swarm manager" in cp.stderr, (args, cp.stderr)
    assert client.api.leave_swarm(force=True) is True  # docker-py's tear-down: a 503 is "not in a swarm"
    with pytest.raises(docker_sdk.errors.APIError) as caught:
        client.api.inspect_swarm()
    assert caught.value.response.status_code == 503
    info = client.info()["Swarm"]
    assert info["LocalNodeState"] == "inactive" and info["NodeID"] == "" and info["ControlAvailable"] is False
    assert "Swarm: inactive" in docker(berthd, "info").stdout
    assert_responsive(berthd)


def test_swarm_init_and_join_say_what_to_use_instead(berthd):
    if is_dockerd(berthd):
        pytest.skip("berth's own answer")
    for args in (["swarm", "init"], ["swarm", "join", "--token", "x", "192.0.2.1:2377"]):
        cp = docker(berthd, *args, check=False)
        assert cp.returncode != 0, cp.stdout
        assert "does not run swarm mode" in cp.stderr and "compose" in cp.stderr, cp.stderr
    cp = docker(berthd, "plugin", "ls", check=False)  # plugins are another matter: still not served
    assert cp.returncode != 0 and "plugins" in cp.stderr
    assert_responsive(berthd)


# --------------------------------------------------------------------------- #
# Events of images, volumes and networks


def test_volume_events(berthd, client, image, names):
    since = time.time()
    vol = unique_name("evvol")
    docker(berthd, "volume", "create", vol)
    docker(berthd, "run", "--rm", *RUN_NET, "--name", names(), "-v", f"{vol}:/data", image, "true")
    docker(berthd, "volume", "rm", vol)
    docker(berthd, "volume", "prune", "-f")
    got = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"])
           for e in events_between(client, since, {"type": ["volume"]})]
    mine = [g for g in got if g[1] == vol]
    assert [a for a, _, _ in mine] == ["create", "mount", "unmount", "destroy"], got
    assert mine[0][2] == {"driver": "local"}
    mount = mine[1][2]
    assert mount["destination"] == "/data" and mount["read/write"] == "true" and mount["driver"] == "local"
    assert len(mount["container"]) == 64
    assert any(a == "prune" and "reclaimed" in attrs for a, _, attrs in got)
    # the CLI's own filter and format
    out = docker(berthd, "events", "--since", str(since), "--until", str(time.time()), "--filter", "type=volume",
                 "--filter", f"volume={vol}", "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}").stdout
    assert out.split("\n")[0] == f"volume create {vol}", out


def test_docker_events_follows_live_with_a_type_filter(berthd, image):
    proc = popen_docker(berthd, "events", "--filter", "type=volume", "--filter", "event=create",
                        "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}")
    reader = LineReader(proc.stdout)
    net = unique_name("livenet")
    try:
        time.sleep(0.5)  # subscribed
        vol = unique_name("live")
        docker(berthd, "volume", "create", vol)
        docker(berthd, "network", "create", net)  # filtered out
        reader.wait_line(f"volume create {vol}")
        docker(berthd, "volume", "rm", vol)  # filtered out by event=create
        time.sleep(0.3)
        assert reader.lines == [f"volume create {vol}"]
    finally:
        proc.terminate()
        finish(proc)
        docker(berthd, "network", "rm", net, check=False)
    assert_responsive(berthd)


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry (the README's set-up)")
def test_push_and_pull_events(berthd, client, image, tmp_path):
    from berth.testing.registry import LocalRegistry

    with LocalRegistry(tmp_path) as registry:
        name = f"{registry.address}/ev/busybox"
        docker(berthd, "tag", image, f"{name}:1")
        since = time.time()
        docker(berthd, "push", f"{name}:1", timeout=120)
        docker(berthd, "rmi", f"{name}:1")
        docker(berthd, "pull", f"{name}:1", timeout=120)
        got = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]["name"])
               for e in events_between(client, since, {"type": ["image"], "event": ["push", "pull"]})]
        docker(berthd, "rmi", f"{name}:1")
    # as Docker: the reference is the actor, its name without the tag the attribute
    assert got == [("push", f"{name}:1", name), ("pull", f"{name}:1", name)], got


def test_network_events(berthd, client, image, names, network):
    since = time.time()
    net = network()
    name = names()
    docker(berthd, "run", "--rm", "--network", net, "--name", name, image, "true")
    docker(berthd, "network", "rm", net)
    docker(berthd, "network", "prune", "-f")
    net_events = events_between(client, since, {"type": ["network"]})
    mine = [e for e in net_events if e["Actor"]["Attributes"].get("name") == net]
    assert [e["Action"] for e in mine] == ["create", "connect", "disconnect", "destroy"], net_events
    connect = mine[1]["Actor"]["Attributes"]
    assert connect["type"] == "bridge" and len(connect["container"]) == 64
    assert mine[0]["Actor"]["ID"] == mine[1]["Actor"]["ID"]  # the network's id
    assert any(e["Action"] == "prune" and e["Actor"]["Attributes"] == {"reclaimed": "0"} for e in net_events)
    # a `network` filter names the network, by name or id prefix
    by_id = events_between(client, since, {"network": [mine[0]["Actor"]["ID"][:12]]})
    assert {e["Action"] for e in by_id} == {"create", "connect", "disconnect", "destroy"}


def test_image_events(berthd, client, image, tmp_path):
    since = time.time()
    repo = unique_name("evimg")
    docker(berthd, "tag", image, f"{repo}:1")
    image_id = inspect(berthd, image)["Id"]
    docker(berthd, "save", "-o", str(tmp_path / "x.tar"), f"{repo}:1")
    docker(berthd, "rmi", f"{repo}:1")
    imported = docker(berthd, "import", str(tmp_path / "x.tar"), f"{repo}:imp").stdout.strip()
    docker(berthd, "rmi", f"{repo}:imp")
    got = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name"))
           for e in events_between(client, since, {"type": ["image"]})]
    assert ("tag", image_id, f"{repo}:1") in got
    assert ("save", image_id, image_id) in got
    assert ("untag", image_id, f"{repo}:1") in got
    assert ("import", imported, imported) in got
    assert ("delete", imported, imported) in got
    assert all(e["Type"] == "image" for e in events_between(client, since, {"type": ["image"]}))
    # an `image` filter matches a reference with or without its tag
    tagged = events_between(client, since, {"image": [repo]})
    assert {e["Action"] for e in tagged} >= {"tag", "untag"}


def test_load_event_and_container_event_image_filter(berthd, client, image, tmp_path, names):
    since = time.time()
    docker(berthd, "save", "-o", str(tmp_path / "b.tar"), image)
    docker(berthd, "load", "-i", str(tmp_path / "b.tar"))
    docker(berthd, "run", "--rm", *RUN_NET, "--name", names(), image, "true")
    image_id = inspect(berthd, image)["Id"]
    loaded = events_between(client, since, {"type": ["image"], "event": ["load"]})
    assert [(e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in loaded] == [(image_id, image_id)]
    runs = events_between(client, since, {"image": ["busybox"], "type": ["container"]})
    assert {"create", "start", "die", "destroy"} <= {e["Action"] for e in runs}


# --------------------------------------------------------------------------- #
# Listings


def test_ps_name_filter_anchored_on_the_slash(berthd, image, names):
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, image, "true")
    cid = inspect(berthd, name)["Id"]
    for pattern in (f"^/{name}$", f"^{name}$", name, f"/{name}"):
        out = docker(berthd, "ps", "-aq", "--no-trunc", "--filter", f"name={pattern}").stdout.split()
        assert out == [cid], (pattern, out)
    assert docker(berthd, "ps", "-aq", "--filter", f"name=^/{name}x$").stdout.strip() == ""


def test_images_q_ref_prints_a_shared_id_once(berthd, image):
    repo = unique_name("twice")
    docker(berthd, "tag", image, f"{repo}:a")
    docker(berthd, "tag", image, f"{repo}:b")
    try:
        ids = docker(berthd, "images", "-q", f"{repo}:a").stdout.split()
        assert len(ids) == 1, ids
        assert docker(berthd, "images", "--format", "{{.Tag}}", f"{repo}:a").stdout.split() == ["a"]
        assert sorted(docker(berthd, "images", "--format", "{{.Tag}}", repo).stdout.split()) == ["a", "b"]
    finally:
        docker(berthd, "rmi", f"{repo}:a", f"{repo}:b")


def test_build_intermediates_hidden_unless_all_and_commit_parent(berthd, client, image, names):
    tag = unique_name("layered") + ":1"
    client.images.build(fileobj=context_tar(f"FROM {image}\nLABEL one=1\nLABEL two=2\n"), custom_context=True,
                        tag=tag, rm=True)
    try:
        top = inspect(berthd, tag)
        middle = top["Parent"]
        assert middle and inspect(berthd, middle)["Parent"] == inspect(berthd, image)["Id"]
        docker(berthd, "builder", "prune", "-f")  # the build cache is gone: still intermediates, not dangling
        shown = docker(berthd, "images", "-q", "--no-trunc").stdout.split()
        everything = docker(berthd, "images", "-aq", "--no-trunc").stdout.split()
        dangling = docker(berthd, "images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
        assert middle not in shown and middle in everything and middle not in dangling
        assert top["Id"] in shown
        # commit: the new image's parent is the container's image
        name = names()
        docker(berthd, "run", *RUN_NET, "--name", name, tag, "touch", "/x")
        since = time.time()
        committed = docker(berthd, "commit", "-m", "why", name).stdout.strip()
        assert inspect(berthd, committed)["Parent"] == top["Id"]
        # its event is the container's, as Docker's: naming the new image
        (event,) = events_between(client, since, {"event": ["commit"]})
        assert event["Type"] == "container" and event["Actor"]["ID"] == inspect(berthd, name)["Id"]
        attrs = event["Actor"]["Attributes"]
        assert (attrs["imageID"], attrs["imageRef"], attrs["comment"], attrs["name"]) == (committed, "", "why", name)
        docker(berthd, "rm", name)
        docker(berthd, "rmi", committed)
    finally:
        out = docker(berthd, "rmi", tag, check=False).stdout
    assert f"Deleted: {middle}" in out  # rmi takes the untagged parents along, as Docker's
    assert middle not in docker(berthd, "images", "-aq", "--no-trunc").stdout.split()


# --------------------------------------------------------------------------- #
# Wrong types and values in create bodies


@pytest.mark.parametrize("host_config, field", [
    ({"LogConfig": {"Type": "json-file", "Config": "x"}}, "HostConfig.LogConfig.Config"),
    ({"Ulimits": 5}, "HostConfig.Ulimits"),
    ({"PortBindings": "x"}, "HostConfig.PortBindings"),
    ({"ShmSize": "lots"}, "HostConfig.ShmSize"),
    ({"Ulimits": [{"Name": "nofile", "Soft": "a", "Hard": 1}]}, "HostConfig.Ulimits[0].Soft"),
    ({"RestartPolicy": "always"}, "HostConfig.RestartPolicy"),
])
def test_wrong_types_in_the_create_body_are_400(berthd, client, image, host_config, field):
    before = len(client.api.containers(all=True))
    res = client.api._post_json(client.api._url("/containers/create"),
                                data={"Image": image, "Cmd": ["true"], "HostConfig": host_config})
    assert res.status_code == 400, res.text
    assert field in res.json()["message"]
    assert len(client.api.containers(all=True)) == before
    assert_responsive(berthd)


@pytest.mark.parametrize("body", ['"x"', "[1]", "5", '{"Cmd": 5}'])
def test_a_commit_body_that_is_not_a_container_config_is_400(berthd, client, image, names, body):
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, image, "true")
    res = client.api._post(client.api._url("/commit"), params={"container": name}, data=body,
                           headers={"Content-Type": "application/json"})
    assert res.status_code == 400, res.text
    assert_responsive(berthd)


def test_docker_words_for_log_driver_and_restart_policy(berthd, client, image):
    with pytest.raises(docker_sdk.errors.APIError) as caught:
        client.api.create_container(image, ["true"], host_config=client.api.create_host_config(
            log_config=docker_sdk.types.LogConfig(type="asdf", config={})))
    assert caught.value.explanation == "logger: no log driver named 'asdf' is registered"
    for policy, words in (({"Name": "always", "MaximumRetryCount": 2}, "can only be used with 'on-failure'"),
                          ({"Name": "on-failure", "MaximumRetryCount": -1}, "cannot be negative"),
                          ({"Name": "sometimes"}, "unknown policy 'sometimes'")):
        with pytest.raises(docker_sdk.errors.APIError) as caught:
            client.api.create_container(image, ["true"], host_config=client.api.create_host_config(
                restart_policy=policy))
        assert caught.value.status_code == 400 and words in caught.value.explanation


def test_isolation_default_reads_back_as_given(berthd, client, image, names):
    name = names()
    client.api.create_container(image, ["true"], name=name,
                                host_config=client.api.create_host_config(isolation="default"))
    assert inspect(berthd, name)["HostConfig"]["Isolation"] == "default"
    docker(berthd, "start", "-a", name)  # and it runs, in process isolation
    assert docker(berthd, "ps", "-aq", "--filter", f"name={name}", "--filter", "isolation=process").stdout.strip()


# --------------------------------------------------------------------------- #
# Containers, volumes, load, build


def test_a_restarting_container_needs_force_to_be_removed(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--restart", "always", image, "sh", "-c", "exit 1")
    # the back-off doubles: after a few runs it waits seconds between them, in state "restarting"
    wait_until(lambda: inspect(berthd, name)["RestartCount"] >= 4 and
               inspect(berthd, name)["State"]["Status"] == "restarting", 60, "a looping container, restarting")
    cp = docker(berthd, "rm", name, check=False)
    assert cp.returncode != 0 and "stop the container before attempting removal" in cp.stderr.lower(), cp.stderr
    docker(berthd, "rm", "-f", name)
    assert docker(berthd, "ps", "-aq", "--filter", f"name=^/{name}$").stdout.strip() == ""
    assert_responsive(berthd)


def test_an_unnamed_api_volume_is_anonymous_and_pruned(berthd, client):
    named = unique_name("keep")
    client.api.create_volume(named)
    anonymous = client.api.create_volume()["Name"]
    try:
        assert "com.docker.volume.anonymous" in client.api.inspect_volume(anonymous)["Labels"]
        result = client.api.prune_volumes()
        assert anonymous in result["VolumesDeleted"] and named not in result["VolumesDeleted"]
        assert client.api.prune_volumes()["VolumesDeleted"] == []  # a list, even when nothing went
    finally:
        client.api.remove_volume(named, force=True)


def test_a_load_of_bytes_that_are_not_a_tar_streams_the_error(berthd, client):
    with pytest.raises(docker_sdk.errors.ImageLoadError):
        client.images.load(b"abc")
    res = client.api._post(client.api._url("/images/load"), data=b"not a tar at all",
                           headers={"Content-Type": "application/x-tar"})
    assert res.status_code == 200
    last = json.loads(res.text.strip().splitlines()[-1])
    assert last["error"] and last["errorDetail"]["message"] == last["error"]
    cp = docker(berthd, "load", input="garbage", check=False)
    assert cp.returncode != 0 and cp.stderr.strip()
    assert_responsive(berthd)


def test_build_takes_every_extrahosts_value(berthd, client, image):
    tag = unique_name("hosts") + ":1"
    dockerfile = f"FROM {image}\nRUN cat /etc/hosts\n"
    lines = client.api.build(fileobj=context_tar(dockerfile), custom_context=True, tag=tag, decode=True, rm=True,
                             extra_hosts={"first.example": "192.0.2.10", "second.example": "192.0.2.20"})
    text = "".join(item.get("stream", "") for item in lines)
    try:
        assert "192.0.2.10" in text and "first.example" in text, text
        assert "192.0.2.20" in text and "second.example" in text, text
    finally:
        docker(berthd, "rmi", tag, check=False)
