"""NodePort allocation (kube-apiserver portallocator, KEP-3668 static/dynamic bands)."""

import pytest

from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from kubenet_lab.ipam import NodePortAllocator
from kubenet_lab.ipam.nodeport import static_band_size


# kubernetes pkg/registry/core/service/portallocator/allocator_test.go, Test_calculateRangeOffset
@pytest.mark.parametrize("size, want", [(2768, 86), (10, 0), (16, 0), (128, 16), (2048, 64), (4096, 128)])
def test_static_band_size_matches_upstream(size, want):
    assert static_band_size(size) == want


def test_default_range_bands():
    # DefaultServiceNodePortRange = PortRange{Base: 30000, Size: 2768}: 30000-32767.
    ports = NodePortAllocator()
    assert (ports.first, ports.last, ports.free) == (30000, 32767, 2768)
    assert ports.static_band == (30000, 30085) and ports.dynamic_band == (30086, 32767)


def test_dynamic_band_first_then_static():
    ports = NodePortAllocator(30000, 30127)  # 128 ports: static band 16
    taken = [ports.allocate() for _ in range(112)]
    assert sorted(taken) == list(range(30016, 30128))
    rest = [ports.allocate() for _ in range(16)]
    assert sorted(rest) == list(range(30000, 30016))
    with pytest.raises(Exhausted, match="range is full"):
        ports.allocate()


def test_requested_release_and_errors_leave_state_unchanged():
    ports = NodePortAllocator()
    assert ports.allocate(30080) == 30080
    for bad, error in ((30080, AlreadyExists), (29999, InvalidValue), (32768, InvalidValue), (True, InvalidValue)):
        with pytest.raises(error):
            ports.allocate(bad)
    assert ports.free == 2767
    ports.release(30080)
    with pytest.raises(NotAllocated):
        ports.release(30080)
    assert ports.free == 2768


def test_seeded_and_reproducible():
    assert [NodePortAllocator(seed=3).allocate() for _ in range(2)] == [NodePortAllocator(seed=3).allocate()] * 2
