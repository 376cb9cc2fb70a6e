"""The Kubernetes objects of the model, as immutable values.

Each class keeps the fields of the real API object that matter for
networking, under the API's own names turned into Python spelling
(``spec.podCIDRs`` -> ``pod_cidrs``, ``spec.nodeName`` -> ``node``). The
:class:`~kubenet_lab.cluster.Cluster` owns them and replaces an object when it
changes; nothing here is mutated in place.

>>> pod = Pod(name="web-1", node="node-1", ips=(ipaddress.ip_address("10.244.0.2"),), labels={"app": "web"})
>>> pod.ip, pod.key
(IPv4Address('10.244.0.2'), 'default/web-1')
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .addresses import IPAddress, IPNetwork

__all__ = [
    "Node",
    "Pod",
    "ContainerPort",
    "Service",
    "ServicePort",
    "EndpointSlice",
    "Endpoint",
    "EndpointPort",
    "SERVICE_TYPES",
]

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def _first(values: tuple):
    return values[0] if values else None


@dataclass(frozen=True)
class Node:
    """A Kubernetes Node: a machine on the underlay with a slice of the pod network.

    ``ips`` are its InternalIP addresses (``status.addresses``), the addresses
    other nodes reach it on: the VTEP address in overlays, the BGP next hop in
    routed designs. ``pod_cidrs`` is ``spec.podCIDRs``, the node's share of the
    cluster CIDR handed out by kube-controller-manager (empty when Calico
    blocks hand out pod IPs instead).
    """

    name: str
    ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    rack: str | None = None

    @property
    def ip(self) -> IPAddress | None:
        """The primary InternalIP."""
        return _first(self.ips)

    @property
    def pod_cidr(self) -> IPNetwork | None:
        """``spec.podCIDR``: the first of ``spec.podCIDRs``."""
        return _first(self.pod_cidrs)


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's container declares; a Service's named ``targetPort`` resolves through it."""

    port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    """A Pod: one network namespace with one IP per family (``status.podIPs``).

    A ``host_network`` pod shares its node's namespace and so its node's IPs,
    and takes nothing from IPAM. ``ready`` is the pod's Ready condition and
    ``terminating`` means it has a deletionTimestamp; EndpointSlices report both.
    """

    name: str
    node: str | None
    ips: tuple[IPAddress, ...] = ()
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    ready: bool = True
    terminating: bool = False
    host_network: bool = False
    phase: str = "Running"

    @property
    def ip(self) -> IPAddress | None:
        """``status.podIP``: the first of ``status.podIPs``."""
        return _first(self.ips)

    @property
    def key(self) -> str:
        """``namespace/name``, the way kubectl and kube-proxy name namespaced objects."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """One entry of a Service's ``spec.ports``.

    ``target_port`` is a number or the *name* of a container port; a name is
    resolved per pod, so two pods may serve the same Service on different
    numbers. ``node_port`` is the port opened on every node for NodePort and
    LoadBalancer Services.
    """

    port: int
    target_port: int | str
    protocol: str = "TCP"
    name: str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    """A Service: a stable virtual IP (the ClusterIP) in front of a set of pods.

    In network terms it is a VIP on a distributed L4 load balancer: every
    node's kube-proxy DNATs traffic for ``cluster_ips`` to one of the
    endpoints. ``cluster_ips`` is empty for a headless Service (``clusterIP: None``).
    ``health_check_node_port`` is the port on which kube-proxy tells an external load
    balancer whether this node has local endpoints (LoadBalancer with externalTrafficPolicy Local).
    """

    name: str
    ports: tuple[ServicePort, ...]
    cluster_ips: tuple[IPAddress, ...] = ()
    namespace: str = "default"
    selector: dict[str, str] | None = None
    type: str = "ClusterIP"
    ip_families: tuple[str, ...] = ("IPv4",)
    ip_family_policy: str = "SingleStack"
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity: str = "None"
    session_affinity_timeout: int | None = None
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()
    load_balancer_source_ranges: tuple[IPNetwork, ...] = ()
    publish_not_ready_addresses: bool = False
    headless: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    health_check_node_port: int | None = None

    @property
    def cluster_ip(self) -> IPAddress | None:
        """``spec.clusterIP``: the first of ``spec.clusterIPs``."""
        return _first(self.cluster_ips)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EndpointPort:
    """A port of an EndpointSlice: the Service port's name, and the pod-side number."""

    port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Endpoint:
    """One backend of a Service: a pod address with its conditions.

    ``ready`` = serving and not terminating; ``serving`` = the pod's Ready
    condition, whatever its termination; ``terminating`` = being deleted.
    kube-proxy uses ready endpoints, and serving+terminating ones only when no
    ready endpoint is left.
    """

    addresses: tuple[IPAddress, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    target_pod: str | None = None

    @property
    def address(self) -> IPAddress:
        return self.addresses[0]


@dataclass(frozen=True)
class EndpointSlice:
    """A ``discovery.k8s.io/v1`` EndpointSlice: one address family's endpoints of a Service.

    ``managed_by`` is the ``endpointslice.kubernetes.io/managed-by`` label:
    slices of the EndpointSlice controller are recomputed from selectors as
    pods come and go; any other slice (e.g. for a Service without selector)
    is kept exactly as given.
    """

    name: str
    service: str
    address_type: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]
    namespace: str = "default"
    managed_by: str = "endpointslice-controller.k8s.io"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def address_type(ip: IPAddress) -> str:
    """EndpointSlice ``addressType`` of an address: ``IPv4`` or ``IPv6``."""
    return "IPv4" if isinstance(ip, ipaddress.IPv4Address) else "IPv6"
