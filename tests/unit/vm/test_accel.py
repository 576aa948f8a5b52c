from __future__ import annotations

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


def test_this_machine_uses_tcg_for_its_pvm_kvm() -> None:
    accel = detect()
    assert accel.name in ("kvm", "tcg")
