"""berth.oci.manifestlist: docker's references, store entries, lists and annotate rules, checked
against what docker 28's CLI wrote and printed for the same manifests (facts recorded below)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest

from berth.errors import InvalidArgument
from berth.oci import manifestlist as ml

# The file docker 28's CLI wrote for member 127.0.0.1:45361/src/two:v1 of a list after
# `manifest annotate --arch arm64 --variant v8 --os-features a,b --os-features a`.
DOCKER_FILE = (
    '{"Ref":"127.0.0.1:45361/src/two:v1","Descriptor":{"mediaType":"application/vnd.docker.distributi'
    'on.manifest.v2+json","digest":"sha256:6ec910f9d74cc9843c0817544b4fb006ff175240b002f918c4a0c8c21f'
    '075f45","size":423,"platform":{"architecture":"arm64","os":"linux","os.features":["a","b"],"vari'
    'ant":"v8"}},"Raw":"eyJzY2hlbWFWZXJzaW9uIjoyLCJtZWRpYVR5cGUiOiJhcHBsaWNhdGlvbi92bmQuZG9ja2VyLmRpc'
    '3RyaWJ1dGlvbi5tYW5pZmVzdC52Mitqc29uIiwiY29uZmlnIjp7Im1lZGlhVHlwZSI6ImFwcGxpY2F0aW9uL3ZuZC5kb2NrZ'
    'XIuY29udGFpbmVyLmltYWdlLnYxK2pzb24iLCJzaXplIjoxNzMsImRpZ2VzdCI6InNoYTI1NjpkY2E2M2U0ZDUyMDRjYmUzM'
    'zgwN2UwZGU2MmRjODQyNDVhYzQyNTQxNDEwNjI3YjEyNWMzMzBhMDQzOTEyOTk1In0sImxheWVycyI6W3sibWVkaWFUeXBlI'
    'joiYXBwbGljYXRpb24vdm5kLmRvY2tlci5pbWFnZS5yb290ZnMuZGlmZi50YXIuZ3ppcCIsInNpemUiOjEwNSwiZGlnZXN0I'
    'joic2hhMjU2OjEwYzQ4Y2VkMzBlZGFiZDNmZDIxN2Q4NTdiMWVkZDg1Njk5Yjg4ZTczYTFjMDIxZjI2ODUxMWQ3NzE0Y2QzZ'
    'DgifV19","SchemaV2Manifest":{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.'
    'manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":'
    '173,"digest":"sha256:dca63e4d5204cbe33807e0de62dc84245ac42541410627b125c330a043912995"},"layers"'
    ':[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":105,"digest":"sha256:1'
    '0c48ced30edabd3fd217d857b1edd85699b88e73a1c021f268511d7714cd3d8"}]}}'
).encode()

# What `docker manifest inspect 127.0.0.1:45361/dst/g:v1` printed for a local list of that one member.
DOCKER_INSPECT = (
    '{\n'
    '   "schemaVersion": 2,\n'
    '   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",\n'
    '   "manifests": [\n'
    '      {\n'
    '         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
    '         "size": 423,\n'
    '         "digest": "sha256:6ec910f9d74cc9843c0817544b4fb006ff175240b002f918c4a0c8c21f075f45",\n'
    '         "platform": {\n'
    '            "architecture": "arm64",\n'
    '            "os": "linux",\n'
    '            "os.features": [\n'
    '               "a",\n'
    '               "b"\n'
    '            ],\n'
    '            "variant": "v8"\n'
    '         }\n'
    '      }\n'
    '   ]\n'
    '}\n'
).encode()
RAW = base64.b64decode(json.loads(DOCKER_FILE)["Raw"])


def _entry(ref: str = "127.0.0.1:45361/src/two:v1", raw: bytes = RAW,
           platform: ml.Platform | None = None) -> ml.Entry:
    return ml.image_manifest(ml.normalize(ref), ml.DOCKER_MANIFEST, raw, platform)


@pytest.mark.parametrize("text, full, file", [
    ("busybox", "docker.io/library/busybox:latest", "docker.io_library_busybox-latest"),
    ("user/app:1", "docker.io/user/app:1", "docker.io_user_app-1"),
    ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", "127.0.0.1-5000_a_b-v1"),
    ("x@sha256:" + "a" * 64, "docker.io/library/x@sha256:" + "a" * 64,
     "docker.io_library_x@sha256-" + "a" * 64),
])
def test_normalize_and_file_names_are_dockers(text: str, full: str, file: str) -> None:
    ref = ml.normalize(text)
    assert str(ref) == full and ml.filesafe(ref) == file and "/" not in file


@pytest.mark.parametrize("text, message", [
    ("Bad", "invalid reference format: repository name (library/Bad) must be lowercase"),
    ("127.0.0.1:5000/Foo:v1", "invalid reference format: repository name (Foo) must be lowercase"),
    ("::", "invalid reference format"),
    ("../../etc/passwd", "invalid reference format"),
])
def test_bad_references_in_dockers_words(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ml.normalize(text)
    assert str(err.value) == message


def test_a_name_too_long_for_one_file_is_refused() -> None:
    ref = ml.normalize("127.0.0.1:5000/" + "/".join(["abcdefghij"] * 30) + ":v1")
    with pytest.raises(InvalidArgument, match="too long"):
        ml.filesafe(ref)


def test_docker_store_file_round_trips_byte_for_byte() -> None:
    entry = ml.from_store(DOCKER_FILE, "test")
    assert entry.platform == ml.Platform("arm64", "linux", "", ("a", "b"), "v8")
    assert entry.to_store() == DOCKER_FILE
    assert entry.blobs == ("sha256:dca63e4d5204cbe33807e0de62dc84245ac42541410627b125c330a043912995",
                           "sha256:10c48ced30edabd3fd217d857b1edd85699b88e73a1c021f268511d7714cd3d8")


def test_store_file_whose_bytes_do_not_match_its_digest_is_refused() -> None:
    doc = json.loads(DOCKER_FILE)
    doc["Raw"] = base64.b64encode(RAW.replace(b'"size":105', b'"size":106')).decode()
    with pytest.raises(InvalidArgument, match="do not match its digest"):
        ml.from_store(json.dumps(doc).encode(), "test")


@pytest.mark.parametrize("field, value", [
    ("Ref", "../../../etc/x"), ("Ref", "busybox"), ("Raw", None), ("Raw", "%%%"),
])
def test_malformed_store_files_are_refused(field: str, value: object) -> None:
    doc = json.loads(DOCKER_FILE)
    doc[field] = value
    with pytest.raises(InvalidArgument):
        ml.from_store(json.dumps(doc).encode(), "test")


def test_hostile_platform_values_are_refused() -> None:
    doc = json.loads(DOCKER_FILE)
    doc["Descriptor"]["platform"]["architecture"] = "\x1b[2Jarm"
    with pytest.raises(InvalidArgument, match="architecture"):
        ml.from_store(json.dumps(doc).encode(), "test")


def test_terminal_control_characters_in_a_manifest_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="control characters"):
        _entry(raw=RAW.replace(b'"schemaVersion"', '"\u009b2J":1,"schemaVersion"'.encode()))


def test_a_list_is_not_a_member() -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": ml.OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(InvalidArgument, match="is a manifest list"):
        ml.image_manifest(ml.normalize("a/b:1"), ml.OCI_INDEX, index, None)


def test_list_bytes_are_dockers_layout_and_media_type() -> None:
    one = _entry(platform=ml.Platform("amd64", "linux"))
    two = replace(one, platform=ml.Platform("arm64", "linux", "", ("f",), "v8"))
    media_type, body = ml.list_bytes(ml.normalize("127.0.0.1:45361/dst/l:v1"), [one, two], for_push=True)
    assert media_type == ml.DOCKER_LIST
    assert body.startswith(b'{\n   "schemaVersion": 2,\n   "mediaType": "' + ml.DOCKER_LIST.encode()
                           + b'",\n   "manifests": [\n      {\n         "mediaType"')
    assert b'"size": 423,\n         "digest": "sha256:6ec9' in body
    assert b'"os.features": [\n               "f"\n            ],\n            "variant": "v8"' in body
    oci = replace(one, media_type=ml.OCI_MANIFEST)
    assert ml.list_bytes(ml.normalize("127.0.0.1:45361/dst/l:v1"), [oci, one])[0] == ml.OCI_INDEX


def test_list_printed_as_docker_printed_it() -> None:
    _, body = ml.list_bytes(ml.normalize("127.0.0.1:45361/dst/g:v1"), [ml.from_store(DOCKER_FILE, "test")])
    assert body + b"\n" == DOCKER_INSPECT


def test_push_needs_os_and_arch_and_one_registry() -> None:
    target = ml.normalize("127.0.0.1:45361/dst/l:v1")
    with pytest.raises(InvalidArgument, match="must have an OS and Architecture"):
        ml.list_bytes(target, [_entry()], for_push=True)
    assert b'"platform": {\n            "architecture": "",\n            "os": ""' in ml.list_bytes(target, [_entry()])[1]
    other = _entry("127.0.0.2:1/src/two:v1", platform=ml.Platform("amd64", "linux"))
    with pytest.raises(InvalidArgument, match="127.0.0.2:1 != 127.0.0.1:45361"):
        ml.list_bytes(target, [other], for_push=True)


def test_annotate_follows_dockers_rules() -> None:
    entry = _entry(platform=ml.Platform("amd64", "linux", "", ("a",)))
    done = ml.annotate(entry, ml.Annotation(arch="arm64", variant="v8", os_features=("a", "b", "a")))
    assert done.platform == ml.Platform("arm64", "linux", "", ("a", "b"), "v8")
    with pytest.raises(InvalidArgument) as err:
        ml.annotate(done, ml.Annotation(os="windows"))
    assert str(err.value) == "manifest entry for image has unsupported os/arch combination: windows/"
    with pytest.raises(InvalidArgument):
        ml.annotate(done, ml.Annotation(variant="v8\nX"))


def test_verbose_is_marshal_indent_of_the_store_json() -> None:
    entry = ml.from_store(DOCKER_FILE, "test")
    text = entry.verbose().decode()
    assert text.startswith('{\n\t"Ref": "127.0.0.1:45361/src/two:v1",\n\t"Descriptor": {\n\t\t"mediaType"')
    assert '\t"SchemaV2Manifest": {\n\t\t"schemaVersion": 2,' in text and text.endswith("}\n")
    assert json.loads(ml.verbose_list([entry, entry])) == [json.loads(DOCKER_FILE)] * 2
    assert entry.plain() == b"{\n\t\"schemaVersion\": 2," + entry.plain()[len(b"{\n\t\"schemaVersion\": 2,"):]
    assert hashlib.sha256(entry.raw).hexdigest() == entry.digest.split(":")[1]


def test_children_of_a_registry_list_are_checked_and_bounded() -> None:
    good = {"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"architecture": "arm", "os": "linux"}}]}
    assert ml.children(json.dumps(good).encode(), "x") == [("sha256:" + "a" * 64, ml.Platform("arm", "linux"))]
    with pytest.raises(InvalidArgument, match="more than the 1"):
        ml.children(json.dumps({"manifests": good["manifests"] * 2}).encode(), "x", limit=1)
    with pytest.raises(InvalidArgument, match="malformed digest"):
        ml.children(b'{"manifests":[{"digest":"sha256:../../x"}]}', "x")
