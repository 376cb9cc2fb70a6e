"""NodePort allocation in kube-apiserver (``--service-node-port-range``, default 30000-32767).

A NodePort is a static PAT entry opened on *every* node: traffic to any node's
address on that port is translated to the Service. kube-apiserver hands the
port numbers out the way it hands out ClusterIPs (KEP-3668, GA in 1.29): the
range is split into a lower *static* band, kept for ports users choose, and an
upper *dynamic* band that automatic allocation tries first.

The static band is ``min(max(16, size // 32), 128)`` ports long (0 when the
range has 16 ports or fewer), from kubernetes
``pkg/registry/core/service/portallocator/allocator.go`` (``calculateRangeOffset``).
For the default range of 2768 ports it is 86 ports: 30000-30085.

Automatic allocation picks a random start in the dynamic band and scans
forward, wrapping within the band; only when the dynamic band is full does it
scan the static band the same way. The random start is seeded here, so a
scenario gives the same ports every time.

>>> ports = NodePortAllocator()
>>> ports.static_band, ports.dynamic_band
((30000, 30085), (30086, 32767))
>>> ports.allocate(30080)
30080
>>> 30086 <= ports.allocate() <= 32767
True
"""

from __future__ import annotations

import random

from ..addresses import parse_port
from ..errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from ._rand import rand_below

DEFAULT_RANGE = (30000, 32767)

__all__ = ["NodePortAllocator", "DEFAULT_RANGE", "static_band_size"]


def static_band_size(size: int, *, minimum: int = 16, maximum: int = 128, step: int = 32) -> int:
    """Length of the static band for a range of ``size`` ports (KEP-3668's offset)."""
    if size <= minimum:
        return 0
    return min(max(minimum, size // step), maximum)


class NodePortAllocator:
    """Hands out NodePorts from ``first``-``last`` with KEP-3668's static/dynamic bands."""

    def __init__(self, first: int = DEFAULT_RANGE[0], last: int = DEFAULT_RANGE[1], *, seed: int = 0):
        obj = "NodePortAllocator"
        for name, value in (("first", first), ("last", last)):
            parse_port(value, obj=obj, field=name)
        if last < first:
            raise InvalidValue(obj, "last", last, f"must not be below the first port {first}")
        self.first, self.last = first, last
        self._offset = static_band_size(last - first + 1)
        self._used: set[int] = set()
        self._random = random.Random(seed)

    def __repr__(self) -> str:
        return f"NodePortAllocator({self.first}, {self.last}, used={len(self._used)})"

    @property
    def static_band(self) -> tuple[int, int] | None:
        """The lower band, kept for ports that Services ask for by number (``None`` when there is none)."""
        return (self.first, self.first + self._offset - 1) if self._offset else None

    @property
    def dynamic_band(self) -> tuple[int, int]:
        """The upper band, where automatic allocation looks first."""
        return (self.first + self._offset, self.last)

    @property
    def free(self) -> int:
        return self.last - self.first + 1 - len(self._used)

    def allocate(self, requested: int | None = None) -> int:
        """Take ``requested`` (anywhere in the range), or the next free port found from a random start."""
        obj = f"NodePortAllocator {self.first}-{self.last}"
        if requested is not None:
            if isinstance(requested, bool) or not isinstance(requested, int) or not self.first <= requested <= self.last:
                raise InvalidValue(obj, "nodePort", requested, f"must be in the range {self.first}-{self.last}",
                                   upstream="provided port is not in the valid range")
            if requested in self._used:
                raise AlreadyExists(obj, "nodePort", requested, "is already allocated",
                                    upstream="provided port is already allocated")
            self._used.add(requested)
            return requested
        bands = [self.dynamic_band] + ([self.static_band] if self.static_band else [])
        for low, high in bands:
            size = high - low + 1
            start = rand_below(self._random, size)
            for step in range(size):
                port = low + (start + step) % size
                if port not in self._used:
                    self._used.add(port)
                    return port
        raise Exhausted(obj, "nodePort", None, "has no free port left", upstream="range is full")

    def release(self, port: int) -> None:
        """Free ``port``; releasing one never handed out is an error here (kube-apiserver ignores it)."""
        if port not in self._used:
            raise NotAllocated(f"NodePortAllocator {self.first}-{self.last}", "nodePort", port, "was never allocated")
        self._used.remove(port)
