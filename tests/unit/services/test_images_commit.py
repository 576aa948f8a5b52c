"""`docker commit` and the builder's steps on real files: what the new image's config holds (the container's
config over the image's, then --change), its history entry, and an image made from scratch."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.metadata.db import Database
from berth.oci.image import OCI_CONFIG, OCI_MANIFEST, parse_image_manifest
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig
from berth.oci.platform import Platform
from berth.services.events import Events
from berth.services.imageio import ImageIO
from berth.services.images import Images
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar

BASE_RUNTIME = {"User": "", "Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "", "Labels": {"a": "1"},
                "ArgsEscaped": True}


class World:
    def __init__(self, root: Path) -> None:
        self.store = LocalStore(str(root))
        leases, events = Leases(), Events()
        self.images = Images(Database(str(root / "db")), self.store, Layers(self.store, Snapshots(str(root))), leases,
                             events, lambda i: [])
        self.io = ImageIO(self.images, leases, self.store, events, str(root))

    def base(self) -> str:
        raw = files_tar({"hello": b"world"})
        blob = gzip.compress(raw, mtime=0)
        layer = self.store.put(blob)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": BASE_RUNTIME,
                             "container": "sha256:old", "rootfs": {"type": "layers", "diff_ids": [
                                 "sha256:" + hashlib.sha256(raw).hexdigest()]},
                             "history": [{"created": "t0", "created_by": "base"}]}).encode()
        digest = self.store.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": digest, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           "digest": layer, "size": len(blob)}]}).encode()
        return self.images.register(parse_image_manifest(manifest))


@pytest.fixture()
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_commit_takes_the_containers_config_then_the_changes(w: World, tmp_path: Path) -> None:
    base = w.base()
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "made").write_bytes(b"by the container")
    container = RuntimeConfig.from_doc({"Hostname": "abc", "User": "", "Env": ["PATH=/bin", "X=1"], "Cmd": ["run"],
                                        "Labels": {}, "WorkingDir": "/srv", "Image": "base"})
    image_id = w.io.commit(base, upper, container, repo="app", tag="1", comment="why", author="me",
                           changes=["LABEL b=2", "EXPOSE 80"], container_id="c" * 64)
    config = w.images.config(image_id)
    assert config.doc["config"] == {**BASE_RUNTIME, "Env": ["PATH=/bin", "X=1"], "Cmd": ["run"], "WorkingDir": "/srv",
                                    "Labels": {"a": "1", "b": "2"}, "ExposedPorts": {"80/tcp": {}}}
    assert config.doc["container"] == "c" * 64 and config.author == "me"
    assert config.history[0] == HistoryEntry("t0", "base")
    assert config.history[1].created_by == "run" and config.history[1].comment == "why"
    assert config.history[1].author == "me" and not config.history[1].empty_layer
    assert len(config.diff_ids) == 2 and w.images.parent(image_id) == base
    assert w.images.resolve("app:1") == image_id


def test_a_config_step_adds_an_empty_layer_entry(w: World) -> None:
    base = w.base()
    image_id = w.io.derive(base, RuntimeConfig(labels={"x": "y"}), layer=None, step=HistoryEntry(created_by="LABEL"))
    config = w.images.config(image_id)
    assert config.runtime.labels == {"x": "y"} and "container" not in config.doc
    assert config.history[-1].created_by == "LABEL" and config.history[-1].empty_layer
    assert config.diff_ids == w.images.config(base).diff_ids


def test_an_image_from_scratch_takes_the_platform(w: World) -> None:
    image_id = w.io.derive(None, RuntimeConfig(env=("PATH=/bin",)), layer=None,
                           step=HistoryEntry(created_by="FROM scratch"), platform=Platform("linux", "arm", "v7"))
    config = w.images.config(image_id)
    assert (config.os, config.architecture, config.variant) == ("linux", "arm", "v7")
    assert config.doc["config"] == {"Env": ["PATH=/bin"]} and config.diff_ids == ()
