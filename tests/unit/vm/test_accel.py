from __future__ import annotations

import os

import pytest

from berth.vm.accel import choose, detect


@pytest.mark.parametrize("modules,device,name", [
    (set(), False, "tcg"),
    ({"kvm", "kvm_pvm"}, True, "tcg"),
    ({"kvm", "kvm_intel"}, True, "kvm"),
    ({"kvm", "kvm_amd"}, True, "kvm"),
    ({"kvm"}, True, "tcg"),
    ({"kvm", "kvm_intel"}, False, "tcg"),
])
def test_choose(modules: set[str], device: bool, name: str) -> None:
    accel = choose(modules, device)
    assert accel.name == name and accel.reason


def test_detect_reads_this_host() -> None:
    accel = detect()
    if os.path.exists("/sys/module/kvm_pvm"):  # this workplace: KVM that cannot boot a stock kernel
        assert accel.name == "tcg" and "kvm_pvm" in accel.reason
    elif not os.path.exists("/dev/kvm"):
        assert accel.name == "tcg"
    else:
        assert accel.name in ("kvm", "tcg")
