"""Endpoints as kube-proxy sees them, and which of them one node may send a connection to.

An EndpointSlice lists the real servers behind a Service: pod addresses with
the Service port's *name* and the pod-side port number. kube-proxy joins the
two on ``(namespace, service, port name, protocol)``, so a slice port only
counts if a Service port has the same name and protocol
(``pkg/proxy/endpointslicecache.go``). Each endpoint is ``ip:port``
(``[ip]:port`` for IPv6) and carries three conditions:

* **ready**: serving and not terminating: a normal pool member;
* **serving**: the pod passes its readiness probe, even while shutting down;
* **terminating**: the pod is being deleted (connection draining).

Endpoints are sorted as plain strings (so ``10.1.1.11:11`` comes before
``10.1.1.1:11``); that order fixes the order of the load-balancing rules.

:func:`categorize_endpoints` is ``CategorizeEndpoints`` (``pkg/proxy/topology.go``):
from all endpoints it picks the pool for Cluster traffic policy (every ready
endpoint), the pool for Local policy (this node's ready endpoints), each falling
back to serving-and-terminating endpoints when it has no ready one, so a
rolling update never blackholes a Service whose last pods are draining.

>>> eps = (EndpointInfo("10.0.1.1", 80, is_local=True), EndpointInfo("10.0.1.2", 80, is_local=False))
>>> from kubenet_lab.kubeproxy.serviceport import ServicePortInfo, ServicePortName
>>> import ipaddress
>>> sp = ServicePortInfo(ServicePortName("ns1", "svc1", "", "TCP"), ipaddress.ip_address("172.30.1.1"), 80,
...                      internal_policy_local=True)
>>> pools = categorize_endpoints(eps, sp)
>>> [str(e) for e in pools.cluster], [str(e) for e in pools.local], pools.has_any
([], ['10.0.1.1:80'], True)
"""

from __future__ import annotations

from collections.abc import Iterable
from socket import inet_ntoa
from dataclasses import dataclass, field

from ..errors import InvalidValue
from ..objects import EndpointSlice
from .serviceport import Ignored, ServicePortInfo, ServicePortName

__all__ = ["EndpointInfo", "CategorizedEndpoints", "endpoints_map", "categorize_endpoints", "SERVICE_NAME_LABEL"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of one service port (kube-proxy's ``BaseEndpointInfo``).

    ``ip`` is the canonical address text; ``str()`` gives ``ip:port``, bracketed
    for IPv6, the form used in comments, DNAT targets and chain-name hashes.
    """

    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    endpoint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"
        object.__setattr__(self, "endpoint", text)

    def __str__(self) -> str:
        return self.endpoint


@dataclass(frozen=True)
class CategorizedEndpoints:
    """``CategorizeEndpoints``' four results for one service port on one node.

    ``cluster``: the pool for Cluster traffic policy (empty if never used);
    ``local``: the pool of this node's endpoints for Local policy (empty if never
    used); ``reachable``: every endpoint this node may DNAT to (one KUBE-SEP
    chain each); ``has_any``: whether any usable endpoint exists anywhere, even
    when none is reachable from this node.
    """

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    reachable: tuple[EndpointInfo, ...]
    has_any: bool


def endpoints_map(endpoint_slices: Iterable[EndpointSlice], family: int, node_name: str,
                  ignored: list[Ignored]) -> dict[ServicePortName, tuple[EndpointInfo, ...]]:
    """The endpoints of every service port, from the slices of address type ``family``.

    As kube-proxy does: a slice without a Service name, a port without a name
    or number and an endpoint without an address are skipped (and noted in
    ``ignored``); only the first address of an endpoint is used; an endpoint
    seen twice keeps its first entry when the second is terminating, the
    second otherwise; each list is sorted by its ``ip:port`` text. An address
    of the wrong family raises InvalidValue (the API server rejects such slices).
    """
    address_type = f"IPv{family}"
    found: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for endpoint_slice in endpoint_slices:
        obj = f"EndpointSlice {endpoint_slice.key}"
        if not endpoint_slice.service:
            ignored.append(Ignored(obj, f"metadata.labels[{SERVICE_NAME_LABEL}]", endpoint_slice.service,
                                   "is unset, so kube-proxy ignores the slice",
                                   f"no {SERVICE_NAME_LABEL} label set on endpoint slice: {endpoint_slice.name}"))
            continue
        if endpoint_slice.address_type == "FQDN":
            ignored.append(Ignored(obj, "addressType", "FQDN", "is not an IP family, so kube-proxy ignores the slice",
                                   "EndpointSlice address type not supported"))
            continue
        if endpoint_slice.address_type != address_type:
            continue
        for i, port in enumerate(endpoint_slice.ports):
            if port.name is None:
                ignored.append(Ignored(obj, f"ports[{i}].name", None, "is unset (write \"\" for an unnamed port)",
                                       "Ignoring port with nil name"))
                continue
            if not port.port:
                ignored.append(Ignored(obj, f"ports[{i}].port", port.port, "is unset or 0",
                                       "Ignoring invalid endpoint port"))
                continue
            name = ServicePortName(endpoint_slice.namespace, endpoint_slice.service, port.name, port.protocol)
            by_endpoint = found.setdefault(name, {})
            for j, endpoint in enumerate(endpoint_slice.endpoints):
                if not endpoint.addresses:
                    ignored.append(Ignored(obj, f"endpoints[{j}].addresses", [], "is empty",
                                           "Ignoring invalid endpoint port with empty address"))
                    continue
                address = endpoint.addresses[0]
                if address.version != family:
                    raise InvalidValue(obj, f"endpoints[{j}].addresses[0]", str(address),
                                       f"must be an {address_type} address, as the slice's addressType says")
                info = EndpointInfo(
                    ip=inet_ntoa(address.packed) if family == 4 else str(address),
                    port=port.port,
                    is_local=bool(node_name) and endpoint.node_name == node_name,
                    ready=endpoint.ready,
                    serving=endpoint.serving,
                    terminating=endpoint.terminating,
                )
                if info.endpoint not in by_endpoint or not info.terminating:
                    by_endpoint[info.endpoint] = info
    return {name: tuple(sorted(eps.values(), key=str)) for name, eps in found.items() if eps}


def categorize_endpoints(endpoints: tuple[EndpointInfo, ...], service_port: ServicePortInfo) -> CategorizedEndpoints:
    """``CategorizeEndpoints``: the Cluster pool, the Local pool, all reachable endpoints, and "any at all?".

    Topology-aware routing (zone and node hints) is not modelled:
    :class:`~kubenet_lab.objects.Endpoint` carries no hints, and without hints
    kube-proxy uses every ready endpoint.
    """
    cluster: tuple[EndpointInfo, ...] = ()
    local: tuple[EndpointInfo, ...] = ()
    has_any = False
    if service_port.uses_cluster_endpoints:
        cluster = tuple(ep for ep in endpoints if ep.ready)
        if not cluster:
            cluster = tuple(ep for ep in endpoints if ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not service_port.uses_local_endpoints:
        return CategorizedEndpoints(cluster, local, cluster, has_any)

    has_local_ready = has_local_serving_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            has_local_ready = has_local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            has_local_serving_terminating = has_local_serving_terminating or ep.is_local
    use_serving_terminating = False
    if has_local_ready:
        local = tuple(ep for ep in endpoints if ep.is_local and ep.ready)
    elif has_local_serving_terminating:
        use_serving_terminating = True
        local = tuple(ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating)
    if not service_port.uses_cluster_endpoints:
        return CategorizedEndpoints(cluster, local, local, has_any)
    if not use_serving_terminating:
        # local holds only ready endpoints and cluster holds every ready one: cluster covers local.
        return CategorizedEndpoints(cluster, local, cluster, has_any)
    # kube-proxy merges the two through a map (random order); we keep the sorted order.
    merged = {ep.endpoint: ep for ep in cluster + local}
    return CategorizedEndpoints(cluster, local, tuple(sorted(merged.values(), key=str)), has_any)
