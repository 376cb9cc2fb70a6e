"""ProxyState: everything one kube-proxy knows for one IP family, before it writes a rule.

kube-proxy keeps two maps, filled from the API server's watch streams: the
``ServicePortMap`` (every Service port of its family) and the ``EndpointsMap``
(every endpoint of those ports). A full sync turns them into rules. A
:class:`ProxyState` is that pair, built in one go from Service and
EndpointSlice objects, plus the list of objects kube-proxy would have skipped
with a log line.

>>> state = ProxyState.build([], [], ProxierSettings("node-1"), 4)
>>> state.service_ports, state.total_endpoints, state.large_cluster
((), 0, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import InvalidValue
from ..objects import EndpointSlice, Service
from .endpoints import EndpointInfo, endpoints_map
from .serviceport import Ignored, ServicePortInfo, ServicePortName, service_ports
from .settings import ProxierSettings, check_family

__all__ = ["ProxyState", "LARGE_CLUSTER_ENDPOINTS_THRESHOLD"]

# Above this many endpoints kube-proxy drops the comments from its per-endpoint rules
# (largeClusterEndpointsThreshold in proxier.go: "even by 40%+" smaller input).
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000


@dataclass(frozen=True)
class ProxyState:
    """The service ports (in input order) and their endpoints for one IP family and node."""

    family: int
    service_ports: tuple[ServicePortInfo, ...]
    endpoints: Mapping[ServicePortName, tuple[EndpointInfo, ...]]
    ignored: tuple[Ignored, ...] = ()

    @classmethod
    def build(cls, services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
              settings: ProxierSettings, family: int,
              health_check_node_ports: Mapping[str, int] | None = None) -> ProxyState:
        """Build the state of ``settings.node_name``'s kube-proxy for ``family`` (4 or 6).

        ``health_check_node_ports`` (``namespace/name`` -> port) overrides the Services' own
        ``health_check_node_port``, as kube-proxy's test harness sets them.
        """
        check_family("ProxyState", family)
        services = list(services)
        if health_check_node_ports is None:
            health_check_node_ports = {s.key: s.health_check_node_port for s in services if s.health_check_node_port}
        ignored: list[Ignored] = []
        ports: list[ServicePortInfo] = []
        keys: set[str] = set()
        for service in services:
            if service.key in keys:
                raise InvalidValue("ProxyState", "services", service.key, "must name each Service once")
            keys.add(service.key)
            ports.extend(service_ports(service, family, health_check_node_ports or {}, ignored))
        endpoints = endpoints_map(endpoint_slices, family, settings.node_name, ignored)
        return cls(family=family, service_ports=tuple(ports), endpoints=endpoints, ignored=tuple(ignored))

    @property
    def total_endpoints(self) -> int:
        """Endpoints of all service ports, ready or not: kube-proxy's measure of cluster size."""
        return sum(len(self.endpoints.get(sp.name, ())) for sp in self.service_ports)

    @property
    def large_cluster(self) -> bool:
        """Large-cluster mode: more than 1000 endpoints, so per-endpoint rules lose their comments."""
        return self.total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
