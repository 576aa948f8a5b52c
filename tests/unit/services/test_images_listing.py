"""Image listings as Docker shows them: parents (build steps, commits) hidden unless --all, the
`reference` filter's matched names only, Go's path.Match patterns, rmi taking untagged parents along,
and image events with Docker's actor and attributes. Real files in a tmp dir."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.errors import InvalidArgument
from berth.metadata.db import Database
from berth.oci.image import OCI_CONFIG as MEDIA_CONFIG
from berth.oci.image import OCI_MANIFEST as MEDIA_MANIFEST
from berth.oci.image import parse_image_manifest
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig
from berth.services.events import Events
from berth.services.imageio import ImageIO
from berth.services.imageremoval import ImageRemoval, Removal
from berth.services.images import Images
from berth.services.imageviews import ImageViews
from berth.services.layers import Layers, Leases
from berth.services.patterns import reference_matches
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar


class Store:
    def __init__(self, root: Path) -> None:
        self.store = LocalStore(str(root))
        self.db = Database(str(root / "db"))
        self.events = Events()
        self.leases, self.layers = Leases(), Layers(self.store, Snapshots(str(root)))
        self.images = Images(self.db, self.store, self.layers, self.leases, self.events, lambda i: [])
        self.views = ImageViews(self.images)
        self.removal = ImageRemoval(self.images, self.views, self.db, self.store, self.layers, self.leases, self.events)
        self.io = ImageIO(self.images, self.leases, self.store, self.events, str(root))

    def base(self, labels: dict[str, str] | None = None) -> str:
        raw = files_tar({"hello": b"world"})
        blob = gzip.compress(raw, mtime=0)
        layer = self.store.put(blob)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}},
                             "rootfs": {"type": "layers",
                                        "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode()
        digest = self.store.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                               "config": {"mediaType": MEDIA_CONFIG, "digest": digest, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           "digest": layer, "size": len(blob)}]}).encode()
        return self.images.register(parse_image_manifest(manifest))

    def step(self, parent: str, label: str) -> str:
        """A metadata-only step on *parent*, as a build's LABEL makes it."""
        return self.io.derive(parent, RuntimeConfig(labels={"step": label}), layer=None,
                              step=HistoryEntry(created_by=label))

    def ids(self, **kw: object) -> set[str]:
        return {i.id for i in self.views.listing(**kw)}  # type: ignore[arg-type]

    def published(self) -> list[tuple[str, str, str, dict[str, str]]]:
        return [(e.kind, e.action, e.actor, e.attributes) for e in self.events._ring]


@pytest.fixture()
def s(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_an_untagged_parent_is_hidden_unless_all(s: Store) -> None:
    base = s.base()
    s.images.set_tag("base:1", base)
    one = s.step(base, "one")
    two = s.step(one, "two")
    s.images.set_tag("app:1", two)
    assert s.views.inspect("app:1").parent == one and s.views.inspect(one).parent == base
    assert s.ids() == {base, two}                      # `one` is an intermediate: hidden
    assert s.ids(all_=True) == {base, one, two}        # docker images -a
    listed = {i.id: i for i in s.views.listing(all_=True)}
    assert listed[two].parent == one and listed[base].parent == ""
    assert s.ids(filters={"dangling": ["true"]}) == set()  # an intermediate is not dangling
    assert Removal(deleted=one) not in s.removal.prune().removed
    assert s.images.record(one)


def test_rmi_takes_untagged_parents_along(s: Store) -> None:
    base = s.base()
    s.images.set_tag("base:1", base)
    one = s.step(base, "one")
    two = s.step(one, "two")
    s.images.set_tag("app:1", two)
    out = s.removal.remove("app:1")
    assert out == [Removal(untagged="app:1"), Removal(deleted=two), Removal(deleted=one)]  # base is tagged: it stays
    assert s.images.record(base)


def test_a_parent_with_another_child_stays(s: Store) -> None:
    base = s.base()
    one = s.step(base, "one")
    a, b = s.step(one, "a"), s.step(one, "b")
    s.images.set_tag("a:1", a)
    s.images.set_tag("b:1", b)
    s.removal.remove("a:1")
    assert s.images.record(one) and s.images.record(base)
    assert s.removal.remove("b:1")[-2:] == [Removal(deleted=one), Removal(deleted=base)]


def test_reference_filter_lists_only_the_matched_names(s: Store) -> None:
    base = s.base()
    for tag in ("busybox:latest", "busybox:1", "other/name:1"):
        s.images.set_tag(tag, base)
    (item,) = s.views.listing(filters={"reference": ["busybox:latest"]})
    assert item.repo_tags == ("busybox:latest",)  # `docker images -q busybox:latest` prints the id once
    (item,) = s.views.listing(filters={"reference": ["busybox"]})
    assert item.repo_tags == ("busybox:1", "busybox:latest")
    assert s.views.listing(filters={"reference": ["nothing"]}) == []
    (item,) = s.views.listing()
    assert len(item.repo_tags) == 3


@pytest.mark.parametrize("pattern, name, want", [
    ("busybox", "busybox:latest", True),
    ("busybox:latest", "busybox:latest", True),
    ("busybox:1", "busybox:latest", False),
    ("busy*", "busybox:1", True),
    ("*", "library/busybox:1", False),      # path.Match: `*` stops at `/`
    ("*/*", "user/app:1", True),
    ("user/*", "user/app:1", True),
    ("b?sybox:[0-9]", "busybox:7", True),
    ("b?sybox:[^0-9]", "busybox:7", False),
    ("localhost:5000/app", "localhost:5000/app:2", True),
    ("busybox", "busybox@sha256:" + "a" * 64, True),
])
def test_reference_patterns_as_go_path_match(pattern: str, name: str, want: bool) -> None:
    assert reference_matches([pattern], name) is want


def test_image_events_as_docker(s: Store) -> None:
    base = s.base({"maintainer": "me"})
    s.images.tag(base, "lab", "1")
    s.images.tag(base, "lab", "2")
    s.removal.remove("lab:2")
    list(s.io.save(["lab:1"]))
    s.removal.remove("lab:1")
    events = s.published()
    assert ("image", "tag", base, {"maintainer": "me", "name": "lab:1"}) in events  # labels + the new name
    assert ("image", "untag", base, {"maintainer": "me", "name": "lab:2"}) in events
    assert ("image", "save", base, {"maintainer": "me", "name": base}) in events
    assert events[-1] == ("image", "delete", base, {"name": base})


def test_image_prune_event(s: Store) -> None:
    s.base()
    result = s.removal.prune()
    assert s.published()[-1] == ("image", "prune", "", {"reclaimed": str(result.reclaimed)})


def test_before_since_and_until_filters(s: Store) -> None:
    base = s.base()
    s.images.set_tag("base:1", base)
    one = s.step(base, "one")
    s.images.set_tag("one:1", one)
    two = s.step(one, "two")
    s.images.set_tag("two:1", two)
    assert s.ids(filters={"before": ["two:1"]}) == {base, one}
    assert s.ids(filters={"since": ["base:1"]}) == {one, two}
    assert s.ids(filters={"since": ["base:1"], "before": ["two:1"]}) == {one}
    assert s.ids(filters={"until": ["10m"]}) == set()  # all made just now
    assert s.ids(filters={"until": [str(2**33)]}) == {base, one, two}
    with pytest.raises(InvalidArgument, match="until"):
        s.ids(filters={"until": ["yesterday"]})
