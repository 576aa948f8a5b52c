"""The pool of ready VMs, as values: shapes, members, and what a refill should start.

    shape = shape_of(config, plan, host_cpus=2, nic=False)   # None: this container can't use the pool
    for s in refill(settings, in_use=[shape], members=[...]):
        ...start one pooled clone of shape s...

Strategy: pure. A pooled VM is a template clone restored ahead of time, before
anyone knows which container it will serve; so what must match is what was
fixed when its QEMU started: guest RAM, vCPUs, the number of 9p devices and
whether it has a network card (a template's key, less the artifacts). That is a
`Shape`. A container whose plan has read-only shares is not served from the
pool: QEMU's `readonly=on` is set when it starts, and the pool's host-side bind
mounts would make only their top mount read-only. `refill` says which shapes
to start next: most recently used first, up to `per_shape` each, while the sum
of the pooled VMs' guest RAM stays within `memory_mib` (the bound is on RAM a
guest may touch, the worst case; an idle pooled clone costs far less, see
BENCHMARKS.md). `MemberState` is what a pooled VM writes in its directory, so a
restarted daemon can adopt the ones still waiting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.vm import sizing
from berth.vm.shares import Plan

DEFAULT_PER_SHAPE = 1
DEFAULT_MEMORY_MIB = 1024
MAX_SHAPES = 4  # shapes remembered (the most recently used); older ones stop being refilled
MEMBER_PREFIX = "p-"  # a pooled VM's directory: <pool root>/p-<12 hex>
READY_FILE = "ready"  # written by the pooled VM once it waits; removed when it is claimed
CLAIMED_FILE = "claimed"  # written when a container took it: the directory is that container's now
CLAIM_SOCKET = "claim.sock"
SHAPES_FILE = "shapes.json"


@dataclass(frozen=True, slots=True, order=True)
class Shape:
    """What a pooled VM and the container it serves must agree on."""

    mem_mib: int
    vcpus: int
    slots: int  # 9p devices besides the root: 0, 1, 2, 4, ...
    nic: bool

    @property
    def share_tags(self) -> tuple[str, ...]:
        """The 9p tags, in device order (as berth.vm.shares.shares() names them)."""
        return ("rootfs", *(f"s{i}" for i in range(self.slots)))

    def key(self) -> str:
        return f"m{self.mem_mib}-c{self.vcpus}-s{self.slots}-{'n' if self.nic else 'x'}"

    def to_doc(self) -> dict[str, Any]:
        return {"mem_mib": self.mem_mib, "vcpus": self.vcpus, "slots": self.slots, "nic": self.nic}

    @classmethod
    def from_doc(cls, doc: object) -> Shape:
        """Raises InvalidArgument on anything but a well-formed shape (the files are ours, but checked)."""
        if not isinstance(doc, dict):
            raise InvalidArgument("a VM shape is a JSON object")
        try:
            mem, cpus, slots, nic = doc["mem_mib"], doc["vcpus"], doc["slots"], doc["nic"]
        except KeyError as exc:
            raise InvalidArgument(f"a VM shape needs {exc.args[0]}") from None
        if not all(type(v) is int for v in (mem, cpus, slots)) or type(nic) is not bool:
            raise InvalidArgument("a VM shape's sizes are integers and nic a boolean")
        if not (sizing.MIN_MEM_MIB <= mem <= 1 << 20 and 1 <= cpus <= 1024 and 0 <= slots <= 64) \
                or slots != sizing.share_slots(slots):
            raise InvalidArgument(f"a VM shape out of range: {doc}")
        return cls(mem, cpus, slots, nic)


@dataclass(frozen=True, slots=True)
class Settings:
    per_shape: int = DEFAULT_PER_SHAPE  # 0 disables the pool
    memory_mib: int = DEFAULT_MEMORY_MIB  # bound on the pooled VMs' guest RAM, all shapes together

    @property
    def enabled(self) -> bool:
        return self.per_shape > 0 and self.memory_mib > 0


@dataclass(frozen=True, slots=True)
class MemberState:
    """A waiting pooled VM, as its `ready` file says."""

    pid: int  # the pooled VM's process (it becomes the container's monitor when claimed)
    qemu_pid: int
    shape: Shape
    artifacts_id: str

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "qemu_pid": self.qemu_pid, "shape": self.shape.to_doc(),
                           "artifacts": self.artifacts_id})

    @classmethod
    def from_json(cls, text: str) -> MemberState:
        """Raises InvalidArgument when *text* is not a member's state."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"a pooled VM's state is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("a pooled VM's state is a JSON object")
        pid, qemu, art = doc.get("pid"), doc.get("qemu_pid"), doc.get("artifacts")
        if type(pid) is not int or type(qemu) is not int or pid <= 0 or qemu <= 0 or not isinstance(art, str):
            raise InvalidArgument("a pooled VM's state needs pid, qemu_pid and artifacts")
        return cls(pid, qemu, Shape.from_doc(doc.get("shape")), art)


def shape_of(config: dict[str, Any], plan: Plan, *, host_cpus: int, nic: bool) -> Shape | None:
    """The shape of VM this container's OCI *config* and mount *plan* need; None when the pool can't serve it."""
    if plan.readonly_tags:
        return None
    return Shape(sizing.memory_mib(config), sizing.vcpus(config, host_cpus),
                 sizing.share_slots(plan.share_count()), nic)


def remember(shapes: Sequence[Shape], used: Shape) -> tuple[Shape, ...]:
    """The remembered shapes after *used* was asked for: most recent first, at most MAX_SHAPES."""
    return (used, *(s for s in shapes if s != used))[:MAX_SHAPES]


def refill(settings: Settings, in_use: Sequence[Shape], members: Iterable[Shape]) -> list[Shape]:
    """The pooled VMs to start, in order, given the shapes in use (most recent first) and the
    members waiting or starting now; never past `per_shape` each nor the memory bound."""
    if not settings.enabled:
        return []
    have: dict[Shape, int] = {}
    used = 0
    for s in members:
        have[s] = have.get(s, 0) + 1
        used += s.mem_mib
    out: list[Shape] = []
    for s in in_use:
        while have.get(s, 0) < settings.per_shape and used + s.mem_mib <= settings.memory_mib:
            out.append(s)
            have[s] = have.get(s, 0) + 1
            used += s.mem_mib
    return out


def surplus(settings: Settings, in_use: Sequence[Shape], members: Sequence[Shape]) -> list[int]:
    """Indexes into *members* that should be stopped: shapes no longer remembered, more than
    `per_shape` of one shape, or past the memory bound (the least recently used shapes go first)."""
    rank = {s: i for i, s in enumerate(in_use)}
    order = sorted(range(len(members)), key=lambda i: rank.get(members[i], len(rank)))
    keep: dict[Shape, int] = {}
    used = 0
    out: list[int] = []
    for i in order:
        s = members[i]
        if not settings.enabled or s not in rank or keep.get(s, 0) >= settings.per_shape \
                or used + s.mem_mib > settings.memory_mib:
            out.append(i)
            continue
        keep[s] = keep.get(s, 0) + 1
        used += s.mem_mib
    return sorted(out)


def parse_shapes(text: str) -> tuple[Shape, ...]:
    """The remembered shapes file; a damaged one is forgotten (the pool relearns from use)."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, list):
            return ()
        return tuple(Shape.from_doc(d) for d in doc)[:MAX_SHAPES]
    except (ValueError, InvalidArgument):
        return ()


def dump_shapes(shapes: Sequence[Shape]) -> str:
    return json.dumps([s.to_doc() for s in shapes])
