"""`images --tree` and the image manifests of API 1.47 (`GET /images/json?manifests=1`).

A two-platform busybox (linux/amd64 + linux/arm64, made from Debian's packages by
berth.tools.bootstrap and loaded), a container on its host platform, and a plain
single-platform image: the docker CLI and berth's CLI must print the same tree, byte
for byte (headers keep the docker CLI's bold escapes even on a pipe), with -a, with a
REPOSITORY argument and with --filter; both refuse the same flags with the same words;
the raw API answers with Manifests only when asked.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from berth_e2e_conftest import API_VERSION, CLIS, assert_responsive, cli_run, docker, is_dockerd, unique_name

from berth.tools import bootstrap, layouttar



@pytest.fixture(autouse=True)
def _berthd_only(berthd) -> None:
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd serves API 1.41, before --tree and manifests")


@pytest.fixture(scope="module")
def treebox(berthd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-platform busybox loaded under a name of this module's own."""
    out = tmp_path_factory.mktemp("treebox")
    name = unique_name("treebox")
    asyncio.run(bootstrap.build_busybox(out / "layout", name=f"docker.io/library/{name}:latest"))
    layouttar.write_layout_tar(out / "layout", out / "treebox.tar")
    assert f"Loaded image: {name}:latest" in docker(berthd, "load", "-i", str(out / "treebox.tar"), timeout=120).stdout
    yield f"{name}:latest"
    docker(berthd, "rmi", "-f", f"{name}:latest", check=False)


@pytest.fixture(scope="module")
def plain(berthd, image) -> str:
    """The session's single-platform busybox under a name of this module's own."""
    name = f"{unique_name('plainbox')}:1"
    docker(berthd, "tag", image, name)
    yield name
    docker(berthd, "rmi", name, check=False)


def _both(d, *args: str) -> tuple:
    a = cli_run("docker", d, *args, check=False)
    b = cli_run("berth", d, *args, check=False)
    return a, b


def _same(d, *args: str) -> str:
    a, b = _both(d, *args)
    assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr), \
        f"docker {' '.join(args)}:\n{a.stdout}{a.stderr}\nberth:\n{b.stdout}{b.stderr}"
    assert a.returncode == 0, a.stderr
    return a.stdout


def _raw_images(client, **query: str) -> list[dict]:
    api = client.api
    return api._result(api._get(api._url("/images/json"), params=query), json=True)


def test_the_tree_is_the_same_with_both_clients(berthd, client, treebox, plain, names) -> None:
    docker(berthd, "create", "--name", names(), treebox, "true")  # the host platform is in use
    repo = treebox.split(":")[0]
    # The docker CLI orders images by creation time with Go's sort.Slice, stable only up to 12
    # images: with more (a whole-suite session), images created in the same second may come in
    # another order, so the whole listing is compared only while it is short.
    if len(_raw_images(client, all="1")) <= 12:
        whole = _same(berthd, "images", "--tree")
        assert "\x1b[39m\x1b[1mIMAGE\x1b[0m" in whole  # the docker CLI's bold headers, even on a pipe
        assert treebox in whole and plain in whole
        assert treebox in _same(berthd, "images", "--tree", "-a")
    mine = _same(berthd, "images", "--tree", repo)
    lines = mine.splitlines()
    assert plain not in mine and any(line.startswith(treebox) for line in lines)
    platform_rows = [line for line in lines if line.startswith(("├─ ", "└─ "))]
    assert [r.split()[1] for r in platform_rows] == ["linux/amd64", "linux/arm64"], mine
    assert platform_rows[0].rstrip().endswith("U"), mine  # in use: the container above
    assert not platform_rows[1].rstrip().endswith("U"), mine
    assert _same(berthd, "image", "ls", "--tree", "-f", f"reference={repo}") == mine
    assert mine.startswith("WARNING: This is an experimental feature.")
    assert treebox in _same(berthd, "images", "--tree", "-a", repo)
    single = _same(berthd, "images", "--tree", plain)
    assert [line.split()[1] for line in single.splitlines() if line.startswith("└─ ")] == ["linux/amd64"]
    assert_responsive(berthd)


@pytest.mark.parametrize("columns", [120, 60, 30])
def test_on_a_terminal_both_clients_colour_and_fit_alike(berthd, treebox, plain, columns: int) -> None:
    pexpect = pytest.importorskip("pexpect")

    def on_tty(which: str) -> bytes:
        child = pexpect.spawn(CLIS[which], ["images", "--tree", treebox.split(":")[0]], env=berthd.env,
                              dimensions=(40, columns), timeout=60)
        out = child.read()
        child.close()
        assert child.exitstatus == 0, out
        return out

    theirs, ours = on_tty("docker"), on_tty("berth")
    assert ours == theirs, f"docker:\n{theirs.decode()}\nberth:\n{ours.decode()}"
    assert b"\x1b[34m\x1b[1mtreebox-" in theirs  # a terminal: names in bold blue (cut to fit when narrow)
    assert_responsive(berthd)


@pytest.mark.parametrize(("flag", "message"), [
    (["-q"], "--quiet is not yet supported with --tree"),
    (["--no-trunc"], "--no-trunc is not yet supported with --tree"),
    (["--digests"], "--show-digest is not yet supported with --tree"),
    (["--format", "{{.ID}}"], "--format is not yet supported with --tree"),
])
def test_what_the_tree_refuses_both_clients_refuse_alike(berthd, flag: list[str], message: str) -> None:
    a, b = _both(berthd, "images", "--tree", *flag)
    assert (a.returncode, a.stdout, a.stderr.strip()) == (1, "", message)
    assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr)


def test_a_bad_filter_is_the_daemon_s_error_with_both_clients(berthd) -> None:
    a, b = _both(berthd, "images", "--tree", "--filter", "nosuch=1")
    assert a.returncode == 1 and "invalid filter 'nosuch'" in a.stderr, a.stderr
    assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr)


def test_the_api_lists_manifests_only_when_asked(berthd, client, treebox, plain) -> None:
    assert API_VERSION == "1.47"
    rows = {t: r for r in _raw_images(client) for t in r["RepoTags"]}
    assert "Manifests" not in rows[treebox] and "Manifests" not in rows[plain]
    rows = {t: r for r in _raw_images(client, manifests="1") for t in r["RepoTags"]}
    multi = rows[treebox]["Manifests"]
    assert [m["ImageData"]["Platform"]["architecture"] for m in multi] == ["amd64", "arm64"]
    for m in multi:
        assert m["Kind"] == "image" and m["Available"] is True and m["ID"] == m["Descriptor"]["digest"]
        assert m["Size"]["Total"] == m["Size"]["Content"] + m["ImageData"]["Size"]["Unpacked"]
        assert 0 < m["Size"]["Content"] < m["Size"]["Total"]
    inspected = client.api.inspect_image(treebox)
    assert inspected["Id"] == rows[treebox]["Id"]
    [own] = rows[plain]["Manifests"]
    assert own["Kind"] == "image" and own["Available"] is True
    assert own["ImageData"]["Platform"]["os"] == "linux"
    assert own["Size"]["Content"] > 0
    # the SDK's own call, with the query spelled out, and a filter together with manifests
    filtered = _raw_images(client, manifests="true",
                           filters=json.dumps({"reference": [treebox.split(":")[0]]}))
    assert [r["RepoTags"] for r in filtered] == [[treebox]] and len(filtered[0]["Manifests"]) == 2
    assert_responsive(berthd)


SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "docker-engine-api-v1.47.yaml"


def test_the_manifests_match_the_api_spec(berthd, client, treebox, plain) -> None:
    """Each ImageManifestSummary validates against the v1.47 spec (strictly: no nulls)."""
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    if not SPEC_PATH.exists():
        pytest.skip(f"the API spec is not at {SPEC_PATH}")
    definitions = yaml.safe_load(SPEC_PATH.read_text())["definitions"]
    summary = definitions["ImageManifestSummary"]
    # The spec lists "UnpackedSize" as required in ImageData but defines no such property (the
    # Go type, ImageProperties, has Platform, Containers and Size.Unpacked only).
    image_data = summary["properties"]["ImageData"]
    image_data["required"] = [k for k in image_data["required"] if k in image_data["properties"]]
    schema = {**summary, "definitions": definitions}
    rows = [r for r in _raw_images(client, manifests="1") if {treebox, plain} & set(r["RepoTags"])]
    assert len(rows) == 2
    for row in rows:
        for m in row["Manifests"]:
            jsonschema.validate(m, schema)
    assert_responsive(berthd)


def test_a_hostile_platform_name_does_not_reach_the_terminal(berthd, rootfs_tar, tmp_path) -> None:
    """An index whose second platform is named with terminal escapes: listed, not obeyed."""
    name = unique_name("hostileplat")
    _load(berthd, _archive(rootfs_tar, tmp_path, f"{name}:1", lambda m: [{
        "mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 2,
        "platform": {"architecture": "evil\x1b]0;pwned\x07", "os": "linux"}}]))
    try:
        tree = cli_run("berth", berthd, "images", "--tree", name).stdout
        assert "\x1b]" not in tree and "\x07" not in tree and "linux/evil?]0;pwned?" in tree
    finally:
        docker(berthd, "rmi", "-f", f"{name}:1", check=False)
    assert_responsive(berthd)


def test_an_attestation_adds_content_but_no_platform_row(berthd, client, rootfs_tar, tmp_path) -> None:
    """BuildKit's attestation manifest beside an image: Kind "attestation", For the image's manifest."""
    name = unique_name("attested")
    attestation = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    _load(berthd, _archive(rootfs_tar, tmp_path, f"{name}:1", lambda m: [{
        "mediaType": OCI_MANIFEST, "digest": _digest(attestation), "size": len(attestation),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": m}}]))
    try:
        [row] = _raw_images(client, manifests="1", filters=json.dumps({"reference": [name]}))
        image, attested = row["Manifests"]
        assert image["Kind"] == "image" and image["Available"] is True
        assert attested["Kind"] == "attestation" and attested["AttestationData"] == {"For": image["ID"]}
        assert "ImageData" not in attested
        tree = _same(berthd, "images", "--tree", name)
        assert [line.split()[1] for line in tree.splitlines() if line.startswith(("├─ ", "└─ "))] == ["linux/amd64"]
    finally:
        docker(berthd, "rmi", "-f", f"{name}:1", check=False)
    assert_responsive(berthd)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load(d, archive: Path) -> None:
    out = docker(d, "load", "-i", str(archive), timeout=120).stdout
    assert "Loaded image" in out, out


def _archive(rootfs_tar: Path, tmp_path: Path, ref: str, more: Callable[[str], list[dict]]) -> Path:
    """An OCI layout tar naming *ref*: an index of one linux/amd64 image plus more(its manifest's digest)."""
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        blobs[_digest(data)] = data
        return _digest(data)

    raw = rootfs_tar.read_bytes()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": put(layer), "size": len(layer)}]}).encode()
    image = put(manifest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": image, "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}, *more(image)]}).encode()
    repo, _, tag = ref.rpartition(":")
    top = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": put(index), "size": len(index),
         "annotations": {"io.containerd.image.name": f"docker.io/library/{repo}:{tag}",
                         "org.opencontainers.image.ref.name": tag}}]}).encode()
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        for member, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", top),
                             *((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
