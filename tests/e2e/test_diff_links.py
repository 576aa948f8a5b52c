"""`docker diff` (GET /containers/{id}/changes) and legacy links (--link, HostConfig.Links, rm --link), with the
real docker CLI and the Docker SDK."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from berth_e2e_conftest import RUN_NET, assert_responsive, docker, is_dockerd

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's


def test_diff_lists_added_changed_and_deleted_like_docker(berthd, image, names):
    name = names()
    docker(berthd, "run", *RUN_NET, "--name", name, image, "sh", "-c",
           "touch /test && mkdir -p /a/b && echo x >> /etc/passwd && rm /etc/group")
    assert docker(berthd, "diff", name).stdout == \
        "A /a\nA /a/b\nC /etc\nD /etc/group\nC /etc/passwd\nA /test\n"


def test_diff_of_a_running_container_and_of_none(berthd, client, image, names):
    quiet = names()
    docker(berthd, "run", *RUN_NET, "--name", quiet, image, "true")
    assert docker(berthd, "diff", quiet).stdout == ""           # the API answers null, as Docker's does
    assert client.api.diff(quiet) is None
    # docker-py's own check (models_containers_test.test_diff): exactly one change, no mount points of ours.
    c = client.containers.run(image, ["touch", "/test"], detach=True, name=names())
    c.wait()
    assert c.diff() == [{"Path": "/test", "Kind": 1}]
    running = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", running, image, "sleep", "600")
    docker(berthd, "exec", running, "sh", "-c", "mkdir /work && echo hi > /work/f")
    assert docker(berthd, "diff", running).stdout == "A /work\nA /work/f\n"
    assert docker(berthd, "diff", "no-such-container", check=False).returncode != 0


def test_a_container_never_started_diffs_empty_and_commits(berthd, image, names):
    """As Docker: `docker create` then `diff` (no changes) and `commit` (the image again, one empty layer)."""
    fresh = names()
    docker(berthd, "create", *RUN_NET, "--name", fresh, image, "true")
    assert docker(berthd, "diff", fresh).stdout == ""
    new = docker(berthd, "commit", fresh, f"{fresh}:committed").stdout.strip()
    assert new.startswith("sha256:")
    assert docker(berthd, "run", "--rm", *RUN_NET, f"{fresh}:committed", "true").returncode == 0
    docker(berthd, "rmi", f"{fresh}:committed")


def test_diff_never_follows_what_the_container_planted(berthd, image, names, tmp_path):
    """A container replaces directories of its image with symlinks to host paths, makes a FIFO and a device
    node where the image had files: the diff lists them, opens none of them, and the host is untouched."""
    if is_dockerd(berthd):
        pytest.skip("berth's own walk")
    secret = tmp_path / "secret"
    (secret / "d").mkdir(parents=True)
    (secret / "d" / "f").write_text("host\n")
    before = sorted(p.name for p in secret.rglob("*"))
    name = names()
    docker(berthd, "run", *RUN_NET, "--name", name, image, "sh", "-c",
           f"rm -rf /var && ln -s {secret} /var && rm /etc/passwd && mkfifo /etc/passwd && "
           f"rm /etc/group && mknod /etc/group c 1 3 && ln -s {secret}/d /etc/d && mkdir /etc/d2 && ln -s / /etc/d2/up")
    out = docker(berthd, "diff", name, timeout=30).stdout.splitlines()
    assert {"C /var", "C /etc/passwd", "C /etc/group", "A /etc/d", "A /etc/d2", "A /etc/d2/up"} <= set(out), out
    assert not any(line.endswith(("/var/d", "/var/d/f", "/etc/d/f")) for line in out), out
    assert sorted(p.name for p in secret.rglob("*")) == before and (secret / "d" / "f").read_text() == "host\n"
    assert_responsive(berthd)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed")
def test_diff_of_a_vm_container(berthd, image, names):
    """The VM's root is the same overlay, shared in over 9p: the guest's changes land in the same upper
    directory; the /etc files berth copies in for the guest are not changes."""
    if is_dockerd(berthd):
        pytest.skip("VM isolation is berth's own")
    name = names()
    docker(berthd, "run", "--isolation", "hyperv", "--name", name, image, "sh", "-c",
           "touch /test && rm /etc/group", timeout=180)
    assert docker(berthd, "diff", name).stdout == "C /etc\nD /etc/group\nA /test\n"


# --------------------------------------------------------------------------- #
# Legacy links


def _inspect(d, name: str) -> dict:
    return json.loads(docker(d, "inspect", name).stdout)[0]


def test_link_gives_hosts_entries_variables_and_reads_back(berthd, image, names):
    db, web = names("db"), names("web")
    docker(berthd, "run", "-d", "--name", db, "-e", "FOO=1", "--expose", "5432", image, "sleep", "600")
    db_info = _inspect(berthd, db)
    ip, short = db_info["NetworkSettings"]["IPAddress"], db_info["Id"][:12]
    out = docker(berthd, "run", "--name", web, "--link", f"{db}:data", image, "sh", "-c",
                 "env | sort; cat /etc/hosts; ping -c1 -W2 data >/dev/null && echo reached").stdout
    env = out.splitlines()
    assert f"DATA_NAME=/{web}/data" in env and "DATA_ENV_FOO=1" in env
    assert f"DATA_PORT=tcp://{ip}:5432" in env and f"DATA_PORT_5432_TCP=tcp://{ip}:5432" in env
    assert f"DATA_PORT_5432_TCP_ADDR={ip}" in env and "DATA_PORT_5432_TCP_PORT=5432" in env
    assert "DATA_PORT_5432_TCP_PROTO=tcp" in env and not any(v.startswith("DATA_ENV_PATH=") for v in env)
    assert f"{ip}\tdata {short} {db}" in out and "reached" in out
    assert _inspect(berthd, web)["HostConfig"]["Links"] == [f"/{db}:/{web}/data"]


def test_link_errors_and_removal(berthd, client, image, names):
    cp = docker(berthd, "run", "--name", names(), "--link", "no-such-ctr:x", image, "true", check=False)
    assert cp.returncode == 125
    assert "could not get container for no-such-ctr: No such container: no-such-ctr" in cp.stderr, cp.stderr
    # docker-py's test_create_with_links / test_remove_link, in short
    target = client.containers.run(image, "cat", detach=True, stdin_open=True, environment={"FOO": "1"},
                                   name=names("target"))
    linker = client.api.create_container(image, "env", name=names("linker"), host_config=client.api.create_host_config(
        links={target.name: "mylink1"}, network_mode="bridge"))
    client.api.start(linker)
    assert client.api.wait(linker)["StatusCode"] == 0
    logs = client.api.logs(linker).decode()
    assert "MYLINK1_NAME=" in logs and "MYLINK1_ENV_FOO=1" in logs
    linker_name = client.api.inspect_container(linker)["Name"][1:]
    client.api.remove_container(f"{linker_name}/mylink1", link=True)
    assert client.api.inspect_container(linker)["HostConfig"]["Links"] is None
    assert {c["Id"] for c in client.api.containers(all=True)} >= {target.id, linker["Id"]}
    cp = docker(berthd, "rm", "--link", f"{linker_name}/mylink1", check=False)
    assert cp.returncode != 0 and "No such container" in cp.stderr
    # A link to a container that stopped: the start says why.
    stopped = names("stopped")
    docker(berthd, "run", "--name", stopped, image, "true")
    later = names("later")
    docker(berthd, "create", "--name", later, "--link", stopped, image, "true")
    cp = docker(berthd, "start", later, check=False)
    assert cp.returncode != 0 and "Cannot link to a non running container" in cp.stderr, cp.stderr


def test_a_hostile_alias_is_refused(berthd, image, names):
    """An alias goes into /etc/hosts and variable names: a newline in it would add a hosts line of its own."""
    db = names("db")
    docker(berthd, "run", "-d", "--name", db, image, "sleep", "600")
    for alias in ("a\n6.6.6.6 evil", "../x", "a b"):
        cp = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", berthd.sock,
                             "-H", "Content-Type: application/json",
                             "-d", json.dumps({"Image": image, "Cmd": ["true"],
                                               "HostConfig": {"Links": [f"{db}:{alias}"]}}),
                             "http://d/containers/create"], capture_output=True, text=True, timeout=30)
        assert cp.stdout == "400", (alias, cp.stdout)
    assert_responsive(berthd)


@pytest.mark.skipif(shutil.which("runsc") is None, reason="runsc is not installed")
def test_diff_of_a_runsc_container(berthd, image, names):
    if is_dockerd(berthd):
        pytest.skip("runsc is berth's")
    name = names()
    docker(berthd, "run", "--runtime", "runsc", "--network", "none", "--name", name, image, "sh", "-c",
           "touch /test && rm /etc/group")
    assert docker(berthd, "diff", name).stdout == "C /etc\nD /etc/group\nA /test\n"


def test_link_on_a_user_network_is_a_name_without_variables(berthd, image, names, network):
    net = network()
    db, web = names("db"), names("web")
    docker(berthd, "run", "-d", "--network", net, "--name", db, "-e", "FOO=1", image, "sleep", "600")
    out = docker(berthd, "run", "--network", net, "--name", web, "--link", f"{db}:bar", image, "sh", "-c",
                 "env; ping -c1 -W2 bar >/dev/null && echo reached").stdout
    assert "reached" in out and "BAR_NAME=" not in out and "BAR_ENV_FOO" not in out, out


def test_a_tree_1500_deep_is_diffed_exported_committed_and_removed(berthd, image, names, tmp_path):
    """A container can nest directories deeper than Python's recursion limit: berth's walks keep their
    own stack, so diff, export and commit work on it as on any other tree, and rm removes it."""
    name, tag = names(), f"deep-{names()}"
    docker(berthd, "run", *RUN_NET, "--name", name, image, "sh", "-c",
           "i=0; while [ $i -lt 1500 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo end > f", timeout=120)
    diff = docker(berthd, "diff", name, timeout=60).stdout.splitlines()
    assert len(diff) == 1501 and diff[0] == "A /d" and diff[-1] == "A " + "/d" * 1500 + "/f"
    out = tmp_path / "deep.tar"
    docker(berthd, "export", "-o", str(out), name, timeout=120)
    listed = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True, check=True).stdout
    assert "d/" * 1500 + "f" in listed
    docker(berthd, "commit", name, tag, timeout=120)
    again = docker(berthd, "run", "--rm", *RUN_NET, tag, "sh", "-c",
                   "cd /" + "/d" * 1500 + " && cat f", timeout=120, check=False)
    rm = docker(berthd, "rm", "-f", name, check=False, timeout=60)
    rmi = docker(berthd, "rmi", tag, check=False, timeout=60)
    assert_responsive(berthd)
    assert again.stdout == "end\n", again.stderr
    assert rm.returncode == 0, rm.stderr
    assert rmi.returncode == 0, rmi.stderr  # its 1500-deep layer is removed too (no RecursionError)
    assert docker(berthd, "image", "prune", "-f", timeout=60).returncode == 0
