"""An image's manifests as GET /images/json?manifests=1 shows them (API 1.47's ImageManifestSummary).

Strategy: a pure function of services.imagemanifests' values; Docker's field names live here only.
"""

from __future__ import annotations

from typing import Any

from berth.services.imagemanifests import Kind, ManifestSummary


def manifest(m: ManifestSummary) -> dict[str, Any]:
    """One entry of an image summary's "Manifests"."""
    descriptor: dict[str, Any] = {"mediaType": m.media_type, "digest": m.id, "size": m.size}
    if m.annotations:
        descriptor["annotations"] = dict(m.annotations)
    if m.descriptor_platform is not None:
        descriptor["platform"] = dict(m.descriptor_platform)
    out: dict[str, Any] = {"ID": m.id, "Descriptor": descriptor, "Available": m.available,
                           "Size": {"Total": m.total, "Content": m.content}, "Kind": m.kind.value}
    if m.kind is Kind.IMAGE:
        out["ImageData"] = {"Platform": dict(m.platform), "Containers": list(m.containers),
                            "Size": {"Unpacked": m.unpacked}}
    elif m.kind is Kind.ATTESTATION:
        out["AttestationData"] = {"For": m.attests}
    return out
