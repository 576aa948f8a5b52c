"""End-to-end: volumes and mounts through the real docker CLI, the Docker SDK and berth's CLI.

Named and anonymous volumes, an image's VOLUME filled from the image, read-only
binds, every --mount type, --volumes-from, the local driver's tmpfs and bind
options, removal while in use, prune, filters, and a VM-isolated container on a
volume. The tests pass against the reference dockerd too (BERTH_TEST_TARGET=dockerd),
except where Docker 20.10 differs from today's Docker (noted at each check).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from berth_e2e_conftest import RUN_NET, docker, is_dockerd, unique_name

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

BERTH = str(Path(sys.executable).parent / "berth")


def run(d, *args, **kw):
    return docker(d, "run", *RUN_NET, *args, **kw)


def inspect(d, kind: str, name: str) -> dict:
    return json.loads(docker(d, kind, "inspect", name).stdout)[0]


def mounts_of(d, name: str) -> dict[str, dict]:
    return {m["Destination"]: m for m in json.loads(docker(d, "inspect", "-f", "{{json .Mounts}}", name).stdout)}


def mounted(path: str) -> bool:
    """Whether *path* is a mount point on the host (from mountinfo; os.path.ismount misses binds)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture
def volumes(berthd) -> Iterator:
    """volumes() -> a fresh volume name, removed (with force) when the test ends."""
    made: list[str] = []

    def new() -> str:
        made.append(unique_name("vol"))
        return made[-1]
    yield new
    if made:
        docker(berthd, "volume", "rm", "-f", *made, check=False)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="volumes-e2e-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- #
# named and anonymous volumes


def test_named_volume_keeps_data_for_the_next_container(berthd, image, volumes):
    vol = volumes()
    assert docker(berthd, "volume", "create", "--label", "team=db", vol).stdout.strip() == vol
    run(berthd, "--rm", "-v", f"{vol}:/data", image, "sh", "-c", "echo kept > /data/f; mkdir /data/sub")
    assert run(berthd, "--rm", "-v", f"{vol}:/data", image, "cat", "/data/f").stdout == "kept\n"
    doc = inspect(berthd, "volume", vol)
    assert doc["Name"] == vol and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Labels"] == {"team": "db"}
    assert doc["Mountpoint"] == os.path.join(berthd.root, "volumes", vol, "_data")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", doc["CreatedAt"])
    assert Path(doc["Mountpoint"], "f").read_text() == "kept\n"
    # Creating it again is not an error: the same volume comes back.
    assert docker(berthd, "volume", "create", vol).stdout.strip() == vol


def test_volume_is_created_on_first_use_and_shown_in_inspect(berthd, image, names, volumes):
    vol, name = volumes(), names()
    run(berthd, "--name", name, "-v", f"{vol}:/data", image, "true")
    assert vol in docker(berthd, "volume", "ls", "-q").stdout.split()
    m = mounts_of(berthd, name)["/data"]
    assert m["Type"] == "volume" and m["RW"] is True and m["Mode"] == "z" and m["Propagation"] == ""
    assert m["Source"] == os.path.join(berthd.root, "volumes", vol, "_data")


def test_anonymous_volume_goes_with_rm_v_and_named_one_stays(berthd, image, names, volumes):
    vol, name = volumes(), names()
    run(berthd, "--name", name, "-v", "/anon", "-v", f"{vol}:/named", image, "sh", "-c", "echo x > /anon/f")
    anon = mounts_of(berthd, name)["/anon"]["Source"].split("/")[-2]
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    if not is_dockerd(berthd):  # Docker 23+ labels anonymous volumes; the reference 20.10 does not
        assert inspect(berthd, "volume", anon)["Labels"] == {"com.docker.volume.anonymous": ""}
    docker(berthd, "rm", "-v", name)
    listed = docker(berthd, "volume", "ls", "-q").stdout.split()
    assert anon not in listed and vol in listed


def test_run_rm_removes_its_anonymous_volumes(berthd, image):
    before = set(docker(berthd, "volume", "ls", "-q").stdout.split())
    run(berthd, "--rm", "-v", "/scratch", image, "touch", "/scratch/f")
    assert set(docker(berthd, "volume", "ls", "-q").stdout.split()) == before


def test_image_volume_is_filled_from_the_image(berthd, image, names, volumes):
    seed, tag = names("seed"), unique_name("volimg").lower()
    run(berthd, "--name", seed, image, "sh", "-c",
        "mkdir -p /data/deep && echo seed > /data/seed && ln -s seed /data/link && chown -R 1000:1000 /data"
        " && chmod 750 /data")
    docker(berthd, "commit", "--change", "VOLUME /data", seed, tag)
    try:
        first = names()
        out = run(berthd, "--name", first, tag, "sh", "-c",
                  "cat /data/seed; stat -c '%u %g %a' /data /data/deep; readlink /data/link; echo more > /data/more")
        assert out.stdout.split("\n")[:4] == ["seed", "1000 1000 750", "1000 1000 755", "seed"]
        assert json.loads(docker(berthd, "inspect", "-f", "{{json .Config.Volumes}}", first).stdout) == {"/data": {}}
        assert mounts_of(berthd, first)["/data"]["Type"] == "volume"
        # A named volume that is empty is filled the same way; one that is not keeps its content.
        vol = volumes()
        assert run(berthd, "--rm", "-v", f"{vol}:/data", tag, "cat", "/data/seed").stdout == "seed\n"
        run(berthd, "--rm", "-v", f"{vol}:/data", image, "sh", "-c", "rm /data/seed; echo mine > /data/own")
        assert run(berthd, "--rm", "-v", f"{vol}:/data", tag, "ls", "/data").stdout.split() == ["deep", "link", "own"]
        # nocopy: nothing is copied.
        empty = volumes()
        assert run(berthd, "--rm", "-v", f"{empty}:/data:nocopy", tag, "ls", "-A", "/data").stdout == ""
        # A bind is never filled.
        with tempfile.TemporaryDirectory(dir="/tmp") as host:
            run(berthd, "--rm", "-v", f"{host}:/data", tag, "true")
            assert os.listdir(host) == []
    finally:
        docker(berthd, "rmi", "-f", tag, check=False)


def test_read_only_bind_refuses_writes(berthd, image, names, host_dir):
    (host_dir / "in").write_text("host\n")
    name = names()
    cp = run(berthd, "--name", name, "-v", f"{host_dir}:/h:ro", image, "sh", "-c",
             "cat /h/in; echo x > /h/new", check=False)
    assert cp.returncode != 0 and "host\n" in cp.stdout
    assert "Read-only file system" in cp.stderr + cp.stdout
    assert not (host_dir / "new").exists()
    m = mounts_of(berthd, name)["/h"]
    assert (m["Type"], m["Source"], m["RW"], m["Mode"], m["Propagation"]) == ("bind", str(host_dir), False, "ro",
                                                                              "rprivate")


def test_bind_propagation_needs_a_shared_source(berthd, image, names, host_dir):
    # On a private mount of its own (whatever /tmp is on this host) nothing could propagate, and Docker
    # says so at start.
    subprocess.run(["mount", "--bind", str(host_dir), str(host_dir)], check=True)
    try:
        subprocess.run(["mount", "--make-private", str(host_dir)], check=True)
        r = run(berthd, "--rm", "-v", f"{host_dir}:/h:rslave", image, "true", check=False)
        assert r.returncode != 0 and f"path {host_dir} is mounted on" in r.stderr
        assert "is not a shared or slave mount" in r.stderr
        # Made shared, it propagates: a mount made on the host later shows inside.
        subprocess.run(["mount", "--make-shared", str(host_dir)], check=True)
        (host_dir / "later").mkdir()
        name = names()
        docker(berthd, "run", "-d", *RUN_NET, "--name", name, "-v", f"{host_dir}:/h:rshared", image, "sleep", "300")
        assert mounts_of(berthd, name)["/h"]["Propagation"] == "rshared"
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(host_dir / "later")], check=True)
        assert docker(berthd, "exec", name, "sh", "-c", "grep -c ' /h/later ' /proc/self/mountinfo").stdout == "1\n"
        docker(berthd, "rm", "-f", name)
    finally:
        subprocess.run(["umount", "-l", str(host_dir / "later")], capture_output=True)
        subprocess.run(["umount", "-l", str(host_dir)], capture_output=True)


# --------------------------------------------------------------------------- #
# --mount and --volumes-from


def test_mount_flag_forms(berthd, image, names, volumes, host_dir):
    vol, name = volumes(), names()
    (host_dir / "f").write_text("bound\n")
    out = run(berthd, "--name", name,
              "--mount", f"type=volume,source={vol},target=/v",
              "--mount", f"type=bind,src={host_dir},dst=/b,readonly",
              "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770",
              image, "sh", "-c", "echo v > /v/f; cat /b/f; df -k /t | tail -1; stat -c %a /t; touch /b/no",
              check=False)
    lines = out.stdout.splitlines()
    assert lines[0] == "bound" and lines[1].split()[1] == "1024" and lines[2] == "1770"
    assert "Read-only file system" in out.stderr + out.stdout
    assert run(berthd, "--rm", "-v", f"{vol}:/v", image, "cat", "/v/f").stdout == "v\n"
    mounts = mounts_of(berthd, name)
    assert mounts["/b"]["RW"] is False and mounts["/b"]["Type"] == "bind"
    assert mounts["/t"]["Type"] == "tmpfs" and mounts["/v"]["Type"] == "volume"


def test_mount_flag_errors(berthd, image):
    missing = run(berthd, "--rm", "--mount", "type=bind,source=/nonexistent-berth-src,target=/x", image, "true",
                  check=False)
    assert missing.returncode == 125
    assert 'invalid mount config for type "bind": bind source path does not exist: /nonexistent-berth-src' \
        in missing.stderr
    relative = run(berthd, "--rm", "-v", "somevol:relative/path", image, "true", check=False)
    assert relative.returncode == 125 and "must be absolute" in relative.stderr
    twice = run(berthd, "--rm", "-v", "/tmp:/same", "--mount", "type=tmpfs,dst=/same", image, "true", check=False)
    assert twice.returncode == 125 and "Duplicate mount point: /same" in twice.stderr


def test_volumes_from(berthd, image, names, volumes):
    vol, first, second = volumes(), names(), names()
    run(berthd, "--name", first, "-v", f"{vol}:/named", "-v", "/anon", image, "sh", "-c",
        "echo n > /named/f; echo a > /anon/f")
    out = run(berthd, "--name", second, "--volumes-from", first, image, "cat", "/named/f", "/anon/f").stdout
    assert out == "n\na\n"
    assert mounts_of(berthd, second)["/anon"]["Source"] == mounts_of(berthd, first)["/anon"]["Source"]
    ro = run(berthd, "--rm", "--volumes-from", f"{first}:ro", image, "touch", "/named/g", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr + ro.stdout
    # The anonymous volume is the first container's; removing the second with -v keeps it.
    docker(berthd, "rm", "-v", second)
    assert run(berthd, "--rm", "--volumes-from", first, image, "cat", "/anon/f").stdout == "a\n"


# --------------------------------------------------------------------------- #
# removal, prune, listing


def test_volume_in_use_cannot_be_removed(berthd, image, names, volumes):
    vol, name = volumes(), names()
    docker(berthd, "create", "--name", name, "-v", f"{vol}:/d", image, "true")
    cp = docker(berthd, "volume", "rm", vol, check=False)
    assert cp.returncode == 1 and "volume is in use" in cp.stderr
    full_id = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    assert full_id in cp.stderr
    docker(berthd, "rm", name)
    docker(berthd, "volume", "rm", vol)
    assert docker(berthd, "volume", "rm", "-f", vol).returncode == 0   # gone already: fine with -f
    missing = docker(berthd, "volume", "rm", vol, check=False)
    assert missing.returncode == 1 and "no such volume" in missing.stderr


def test_volume_api_in_use_is_409(berthd, image, names, volumes, client):
    import docker as docker_sdk
    vol, name = volumes(), names()
    client.volumes.create(vol)
    client.containers.create(image, ["true"], name=name, volumes={vol: {"bind": "/d", "mode": "rw"}})
    with pytest.raises(docker_sdk.errors.APIError) as err:
        client.volumes.get(vol).remove()
    assert err.value.status_code == 409 and "volume is in use" in str(err.value)


def test_prune(berthd, image, names, volumes):
    named, keep_label = volumes(), volumes()
    docker(berthd, "volume", "create", named)
    docker(berthd, "volume", "create", "--label", "keep=1", keep_label)
    user = names()
    run(berthd, "--name", user, "-v", "/in-use", image, "true")
    in_use = mounts_of(berthd, user)["/in-use"]["Source"].split("/")[-2]
    dropped = names()
    run(berthd, "--name", dropped, "-v", "/dropped", image, "true")
    unused_anon = mounts_of(berthd, dropped)["/dropped"]["Source"].split("/")[-2]
    docker(berthd, "rm", dropped)
    out = docker(berthd, "volume", "prune", "-f", "--filter", "label!=keep").stdout
    assert unused_anon in out and in_use not in out
    listed = docker(berthd, "volume", "ls", "-q").stdout.split()
    assert in_use in listed and keep_label in listed
    if is_dockerd(berthd):
        return  # Docker 20.10 prunes named volumes too; since 23 only with --all
    assert named in listed
    out = docker(berthd, "volume", "prune", "-af", "--filter", "label!=keep").stdout
    assert named in out
    assert keep_label in docker(berthd, "volume", "ls", "-q").stdout.split()


def test_volume_ls_filters(berthd, image, names, volumes):
    used, free = volumes(), volumes()
    docker(berthd, "volume", "create", "--label", "tier=web", "--label", "x=1", used)
    docker(berthd, "volume", "create", "--label", "tier=db", free)
    docker(berthd, "create", "--name", names(), "-v", f"{used}:/d", image, "true")

    def ls(*flt: str) -> set[str]:
        args = [a for f in flt for a in ("--filter", f)]
        return set(docker(berthd, "volume", "ls", "-q", *args).stdout.split()) & {used, free}
    assert ls("dangling=true") == {free}
    assert ls("dangling=false") == {used}
    assert ls("label=tier=web") == {used}
    assert ls("label=tier") == {used, free}
    assert ls("label=tier", "label=x=1") == {used}
    assert ls(f"name={free[-8:]}") == {free}
    assert ls("driver=local") == {used, free}
    bad = docker(berthd, "volume", "ls", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr.lower()
    table = docker(berthd, "volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Label \"tier\"}}").stdout
    assert f"{used} local web" in table.splitlines()


# --------------------------------------------------------------------------- #
# the local driver's options


def test_tmpfs_volume_is_mounted_while_used(berthd, image, names, volumes):
    vol, holder = volumes(), names()
    docker(berthd, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m", vol)
    data = inspect(berthd, "volume", vol)["Mountpoint"]
    assert inspect(berthd, "volume", vol)["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}
    docker(berthd, "run", "-d", *RUN_NET, "--name", holder, "-v", f"{vol}:/v", image,
           "sh", "-c", "echo from-holder > /v/f; sleep 300")
    assert run(berthd, "--rm", "-v", f"{vol}:/v", image, "sh", "-c",
               "until [ -e /v/f ]; do sleep 0.1; done; cat /v/f; df -k /v | tail -1").stdout.split()[:3] == [
        "from-holder", "tmpfs", "4096"]
    assert mounted(data)
    docker(berthd, "rm", "-f", holder)
    assert not mounted(data)
    assert run(berthd, "--rm", "-v", f"{vol}:/v", image, "ls", "-A", "/v").stdout == ""


def test_bind_volume_of_a_host_directory(berthd, image, volumes, host_dir):
    vol = volumes()
    (host_dir / "keep").write_text("precious\n")
    docker(berthd, "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host_dir}", vol)
    assert run(berthd, "--rm", "-v", f"{vol}:/v", image, "sh", "-c", "cat /v/keep; echo new > /v/new").stdout \
        == "precious\n"
    assert (host_dir / "new").read_text() == "new\n"
    assert not mounted(inspect(berthd, "volume", vol)["Mountpoint"])
    docker(berthd, "volume", "rm", vol)
    # Removing the volume never empties the directory it was bound to.
    assert sorted(os.listdir(host_dir)) == ["keep", "new"]


def test_bad_driver_options(berthd, volumes):
    cp = docker(berthd, "volume", "create", "-o", "colour=red", volumes(), check=False)
    assert cp.returncode != 0 and 'invalid option: "colour"' in cp.stderr
    cp = docker(berthd, "volume", "create", "-d", "nfs-plugin", volumes(), check=False)
    assert cp.returncode != 0 and 'plugin "nfs-plugin" not found' in cp.stderr
    cp = docker(berthd, "volume", "create", "a/b", check=False)
    assert cp.returncode != 0 and "includes invalid characters for a local volume name" in cp.stderr


# --------------------------------------------------------------------------- #
# the SDK, berth's own CLI, VM isolation


def test_sdk_volumes(berthd, image, client, volumes):
    vol = volumes()
    v = client.volumes.create(name=vol, driver="local", labels={"k": "v"})
    assert v.name == vol and v.attrs["Labels"] == {"k": "v"}
    assert vol in [x.name for x in client.volumes.list(filters={"label": "k=v"})]
    out = client.containers.run(image, ["sh", "-c", "echo sdk > /d/f; cat /d/f"], remove=True,
                                volumes={vol: {"bind": "/d", "mode": "rw"}},
                                **({"network_mode": "none"} if RUN_NET else {}))
    assert out == b"sdk\n"
    client.volumes.get(vol).remove()
    assert vol not in [x.name for x in client.volumes.list()]
    assert isinstance(client.volumes.prune(), dict)


def berth(d, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BERTH, "-H", d.host, *args], input=input, capture_output=True, text=True, timeout=120)


def test_berth_cli_volume_verbs_and_mount_flags(berthd, image, names, volumes, host_dir):
    vol, name = volumes(), names()
    assert berth(berthd, "volume", "create", "--label", "via=berth", vol).stdout.strip() == vol
    assert vol in berth(berthd, "volume", "ls", "-q", "-f", "label=via=berth").stdout.split()
    assert json.loads(berth(berthd, "volume", "inspect", vol).stdout)[0]["Labels"] == {"via": "berth"}
    r = berth(berthd, "run", "--name", name, "--mount", f"type=volume,src={vol},dst=/v",
              "--mount", f"type=bind,src={host_dir},dst=/h,ro", image, "sh", "-c", "echo cli > /v/f; ls /h")
    assert r.returncode == 0, r.stderr
    r = berth(berthd, "run", "--rm", "--volumes-from", f"{name}:ro", image, "cat", "/v/f")
    assert r.stdout == "cli\n", r.stderr
    busy = berth(berthd, "volume", "rm", vol)
    assert busy.returncode == 1 and "volume is in use" in busy.stderr
    berth(berthd, "rm", name)
    assert berth(berthd, "volume", "rm", vol).returncode == 0
    r = berth(berthd, "volume", "prune", "-f")
    assert r.returncode == 0 and "Total reclaimed space" in r.stdout


def test_vm_isolated_container_uses_a_volume(berthd, image, volumes):
    if is_dockerd(berthd):
        pytest.skip("VM isolation is berth's own")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    vol = volumes()
    out = docker(berthd, "run", "--rm", "--isolation", "hyperv", "-v", f"{vol}:/data", image,
                 "sh", "-c", "echo from-vm > /data/f; cat /data/f", timeout=180).stdout
    assert out == "from-vm\n"
    assert run(berthd, "--rm", "-v", f"{vol}:/data", image, "cat", "/data/f").stdout == "from-vm\n"


def test_a_volume_whose_directory_was_deleted_by_hand_still_removes(berthd):
    """The record is all that is left: `volume rm` answers as for any volume, and the name is free again."""
    if is_dockerd(berthd):
        pytest.skip("berth's data root layout")
    name = unique_name("gone")
    docker(berthd, "volume", "create", name)
    shutil.rmtree(Path(berthd.root) / "volumes" / name)
    assert docker(berthd, "volume", "rm", name).stdout == f"{name}\n"
    assert name not in docker(berthd, "volume", "ls", "-q").stdout.split()
    docker(berthd, "volume", "create", name)
    docker(berthd, "volume", "rm", name)
