"""LoadBalancer VIPs from address pools, as MetalLB's controller hands them out.

On bare metal nothing gives a ``type: LoadBalancer`` Service its external IP;
MetalLB's controller does, from ``IPAddressPool`` resources, and its speakers
then advertise the VIP (by ARP in L2 mode, by BGP to the ToRs in BGP mode,
chapter 06). The allocation rules, from metallb ``internal/allocator/allocator.go``:

* a pool is a list of CIDRs or ``first-last`` ranges; **every** address of a
  CIDR is usable, network and broadcast addresses included, unless the pool
  sets ``avoidBuggyIPs``, which skips IPv4 addresses ending in .0 or .255
  ("can confuse smurf protection on crappy CPE firmwares");
* ``AllocateFromPool`` walks the pool's ranges in order and takes the **lowest**
  address that can be assigned; ``Allocate`` tries each pool with
  ``autoAssign`` (the default) until one has room (MetalLB iterates a Go map,
  so its pool order is unspecified; here pools are tried in the order given);
* a Service may ask for an address (``spec.loadBalancerIP`` or the
  ``metallb.universe.tf/loadBalancerIPs`` annotation); it must lie in a pool;
* two Services share an address only when both carry the same sharing key
  (``metallb.universe.tf/allow-shared-ip``) and use different ports;
* errors carry MetalLB's own texts ("no available IPs in pool …",
  "… is not allowed in config", "port … is already in use on …").

>>> pools = LoadBalancerIPAllocator([AddressPool("default", ("192.168.10.0/30",))])
>>> pools.allocate("default/web"), pools.allocate("default/api")
(IPv4Address('192.168.10.0'), IPv4Address('192.168.10.1'))
>>> LoadBalancerIPAllocator([AddressPool("p", ("192.168.10.0/30",), avoid_buggy_ips=True)]).allocate("default/web")
IPv4Address('192.168.10.1')
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..addresses import IPAddress, parse_address, parse_network
from ..errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated

__all__ = ["AddressPool", "LoadBalancerIPAllocator", "parse_pool_range"]


def parse_pool_range(value: object, *, obj: str) -> tuple[IPAddress, IPAddress]:
    """A pool entry, ``10.0.0.0/24`` or ``10.0.0.10-10.0.0.20``, as its (first, last) addresses."""
    if isinstance(value, str) and "-" in value:
        first_text, last_text = (part.strip() for part in value.split("-", 1))
        first = parse_address(first_text, obj=obj, field="addresses")
        last = parse_address(last_text, obj=obj, field="addresses")
        if first.version != last.version or last < first:
            raise InvalidValue(obj, "addresses", value, "must be a range first-last of one family, first <= last")
        return first, last
    network = parse_network(value, obj=obj, field="addresses")
    return network.network_address, network.broadcast_address


@dataclass(frozen=True)
class AddressPool:
    """A MetalLB ``IPAddressPool``: named ranges, ``autoAssign`` and ``avoidBuggyIPs``."""

    name: str
    addresses: tuple[str, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    ranges: tuple[tuple[IPAddress, IPAddress], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        obj = f"IPAddressPool {self.name}"
        if not isinstance(self.addresses, (tuple, list)) or not self.addresses:
            raise InvalidValue(obj, "addresses", self.addresses, "must list at least one CIDR or range")
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "ranges", tuple(parse_pool_range(a, obj=obj) for a in self.addresses))

    def contains(self, ip: IPAddress) -> bool:
        if self.avoid_buggy_ips and _buggy(ip):
            return False
        return any(first.version == ip.version and first <= ip <= last for first, last in self.ranges)

    @property
    def size(self) -> int:
        return sum(int(last) - int(first) + 1 for first, last in self.ranges)


def _buggy(ip: IPAddress) -> bool:
    """MetalLB's ipConfusesBuggyFirmwares: an IPv4 address ending in 0 or 255."""
    return ip.version == 4 and int(ip) & 0xFF in (0, 255)


@dataclass
class _Allocation:
    pool: str
    ip: IPAddress
    ports: tuple[tuple[str, int], ...]
    sharing_key: str | None
    backend_key: str | None = None


class LoadBalancerIPAllocator:
    """MetalLB's controller-side allocator over an ordered list of pools."""

    def __init__(self, pools: list[AddressPool] | tuple[AddressPool, ...]):
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise InvalidValue("MetalLB", "pools", names, "must have unique names")
        self.pools = tuple(pools)
        self._allocated: dict[str, _Allocation] = {}

    def __repr__(self) -> str:
        return f"LoadBalancerIPAllocator({[p.name for p in self.pools]}, allocated={len(self._allocated)})"

    def pool_for(self, ip: IPAddress) -> str | None:
        return next((p.name for p in self.pools if p.contains(ip)), None)

    def ip(self, service: str) -> IPAddress | None:
        allocation = self._allocated.get(service)
        return allocation.ip if allocation else None

    def _conflict(self, service: str, ip: IPAddress, ports, sharing_key, backend_key=None) -> str | None:
        for other, allocation in self._allocated.items():
            if other == service or allocation.ip != ip:
                continue
            if not allocation.sharing_key or not sharing_key:
                return f"address {ip} is in use by {other}, and " + (
                    "existing service does not allow sharing" if not allocation.sharing_key
                    else "new service does not allow sharing")
            if allocation.sharing_key != sharing_key:
                return f'sharing key "{sharing_key}" does not match existing sharing key "{allocation.sharing_key}"'
            if allocation.backend_key != backend_key:
                return f'backend key "{backend_key}" does not match existing sharing key "{allocation.backend_key}"'
            clash = set(allocation.ports) & set(ports)
            if clash:
                proto, port = sorted(clash)[0]
                return f'port {proto}/{port} is already in use on "{ip}"'
        return None

    def assign(self, service: str, ip: object, ports=(), sharing_key: str | None = None,
               backend_key: str | None = None) -> IPAddress:
        """Give ``service`` the address it asked for (``spec.loadBalancerIP``).

        Sharing needs the same sharing key (the allow-shared-ip annotation) and the same backend
        key (MetalLB uses the Service's selector, so shared VIPs reach one set of pods), and
        different ports.
        """
        obj = f"MetalLB Service {service}"
        address = parse_address(ip, obj=obj, field="loadBalancerIP")
        pool = self.pool_for(address)
        if pool is None:
            raise InvalidValue(obj, "loadBalancerIP", str(address), "must lie in one of the address pools",
                               upstream=f'"{address}" is not allowed in config')
        conflict = self._conflict(service, address, tuple(ports), sharing_key, backend_key)
        if conflict:
            raise AlreadyExists(obj, "loadBalancerIP", str(address), "cannot be shared", upstream=conflict)
        self._allocated[service] = _Allocation(pool, address, tuple(ports), sharing_key, backend_key)
        return address

    def allocate(self, service: str, family: int = 4, *, pool: str | None = None, ports=(),
                 sharing_key: str | None = None, backend_key: str | None = None) -> IPAddress:
        """The lowest assignable address of ``pool``, or of the first auto-assign pool with room."""
        obj = f"MetalLB Service {service}"
        if service in self._allocated:
            return self._allocated[service].ip
        if pool is not None and pool not in {p.name for p in self.pools}:
            raise InvalidValue(obj, "metallb.universe.tf/address-pool", pool, "must name an address pool",
                               upstream=f'unknown pool "{pool}"')
        candidates = [p for p in self.pools if (p.name == pool if pool else p.auto_assign)]
        for candidate in candidates:
            for first, last in candidate.ranges:
                if first.version != family:
                    continue
                for value in range(int(first), int(last) + 1):
                    address = ipaddress.ip_address(value)
                    if candidate.avoid_buggy_ips and _buggy(address):
                        continue
                    if self._conflict(service, address, tuple(ports), sharing_key, backend_key) is None:
                        self._allocated[service] = _Allocation(candidate.name, address, tuple(ports), sharing_key,
                                                               backend_key)
                        return address
        where = f'pool "{pool}"' if pool else "any auto-assign pool"
        raise Exhausted(obj, "status.loadBalancer.ingress", pool or [p.name for p in self.pools],
                        f"cannot get an IPv{family} address from {where}",
                        upstream=f'no available IPs in pool "{pool}"' if pool else "no available IPs")

    def release(self, service: str) -> None:
        if service not in self._allocated:
            raise NotAllocated(f"MetalLB Service {service}", "status.loadBalancer.ingress", None, "was never allocated")
        del self._allocated[service]
