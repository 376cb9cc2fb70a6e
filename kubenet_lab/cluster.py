"""The Cluster: nodes, pods, services and endpoint slices, with their addresses.

A :class:`Cluster` is what a notebook builds and every later chapter reads.
It owns the allocators, so the addresses it hands out are the ones the real
components would hand out:

* node podCIDRs from kube-controller-manager's range allocator
  (:class:`~kubenet_lab.ipam.NodeCIDRAllocator`);
* pod IPs from the CNI ``host-local`` plugin over the node's podCIDR (as
  flannel and the bridge plugin configure it), or from Calico's IPAM blocks;
* ClusterIPs from kube-apiserver's allocator, NodePorts from its port allocator;
* EndpointSlices from the EndpointSlice controller's rules.

>>> c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12")
>>> c.add_node("node-1", ip="192.168.0.11").pod_cidr
IPv4Network('10.244.0.0/24')
>>> c.add_pod("web-1", node="node-1", labels={"app": "web"}).ip
IPv4Address('10.244.0.2')
>>> svc = c.add_service("web", selector={"app": "web"}, port=80, target_port=8080)
>>> [(e.address, p.port) for s in c.endpoint_slices(svc) for e in s.endpoints for p in s.ports]
[(IPv4Address('10.244.0.2'), 8080)]

Every method either completes or raises a :mod:`kubenet_lab.errors` error and
leaves the cluster as it was. Introduced in chapter 01.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .addresses import IPAddress, IPNetwork, family_name, parse_address, parse_network, parse_port
from .endpointslices import endpoint_slices_for
from .errors import AlreadyExists, Exhausted, InvalidValue, NotFound, Overlap
from .ipam import BlockIPAM, HostLocal, NodeCIDRAllocator, NodePortAllocator, ServiceIPAllocator
from .ipam.metallb import LoadBalancerIPAllocator
from .network import DEFAULT_BGP_ASN, ClusterNetwork, Rack
from .objects import SERVICE_TYPES, ContainerPort, EndpointSlice, Node, Pod, Service, ServicePort
from . import tables

__all__ = ["Cluster"]

# RFC 1123 subdomain (Node and Pod names) and RFC 1035 label (Service names), as the API server validates them.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
# Conventional first host number for nodes on an auto-addressed segment (192.168.0.11, .12, ...).
FIRST_NODE_HOST = 11


def _allocate_for(obj: str, field: str, allocator, value: object):
    """``allocator.allocate(value)``, a refusal re-raised against the field of ``obj`` that asked for
    ``value``, as kube-apiserver reports a taken or out-of-range NodePort or ClusterIP."""
    try:
        return allocator.allocate(value)
    except (InvalidValue, AlreadyExists) as exc:
        raise type(exc)(obj, field, value, exc.expected, exc.upstream) from None


def _check_name(kind: str, name: object, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(name, str) or not pattern.match(name) or len(name) > limit:
        rule = "a lowercase RFC 1123 name" if pattern is _DNS_SUBDOMAIN else "a lowercase RFC 1035 label"
        raise InvalidValue(kind, "metadata.name", name, f"must be {rule} of at most {limit} characters")
    return name


def _labels(obj: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidValue(obj, "labels", value, "must map strings to strings")
    return dict(value)


def _as_list(value: object) -> list:
    """A comma-separated string (as the flags take it), a list or tuple, or one value, as a list."""
    if isinstance(value, str):
        return value.split(",")
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Transaction:
    """Make a change of several allocations all-or-nothing.

    Each allocator is atomic on its own: a call that raises changes nothing.
    When one change takes several allocations (a podCIDR per family, a
    ClusterIP per family and a NodePort per port), a later failure must also
    undo the earlier ones *exactly*, cursors included (cidrset's next
    candidate, host-local's last reserved IP, Calico's free-list order), or
    the next allocation would differ from a cluster where nothing happened.
    So each allocator's state is copied before its first change and put back
    if the change fails. A change of one allocation needs no copy.
    """

    def __init__(self, steps: int) -> None:
        self._active = steps > 1
        self._saved: list[tuple[object, dict]] = []

    def touch(self, allocator):
        """Return ``allocator``, having saved its state if this is its first change."""
        if self._active and all(a is not allocator for a, _ in self._saved):
            self._saved.append((allocator, copy.deepcopy(vars(allocator))))
        return allocator

    def __enter__(self) -> _Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for allocator, saved in reversed(self._saved):
                vars(allocator).clear()
                vars(allocator).update(saved)


class Cluster:
    """A Kubernetes cluster's network: the objects and the allocators that addressed them.

    Parameters mirror the ClusterNetwork fields (see :mod:`kubenet_lab.network`):
    ``pod_cidr`` and ``service_cidr`` take one CIDR, or two (a list or a
    comma-separated string, as the flags do) for dual-stack.
    """

    def __init__(
        self,
        pod_cidr: object = "10.244.0.0/16",
        service_cidr: object = "10.96.0.0/12",
        *,
        node_mask: int | None = None,
        node_mask_ipv6: int | None = None,
        cni: str = "flannel-vxlan",
        ipam: str = "host-local",
        kube_proxy_mode: str = "iptables",
        mtu: int = 1500,
        node_subnet: object = None,
        racks: Iterable[Rack | dict] = (),
        bgp_design: str = "none",
        bgp_asn: int = DEFAULT_BGP_ASN,
        name: str = "lab",
        overlay_vni: int | None = None,
        overlay_port: int | None = None,
        same_subnet_direct: bool = False,
        veth_mtu: int | None = None,
        tunnel_mtu: int | None = None,
        load_balancer_pools: Iterable[object] = (),
    ):
        racks = tuple(r if isinstance(r, Rack) else Rack.from_object(r) for r in racks)
        network = ClusterNetwork.build(
            pod_cidr,
            service_cidr,
            node_mask=node_mask,
            node_mask_ipv6=node_mask_ipv6,
            cni=cni,
            ipam=ipam,
            kube_proxy_mode=kube_proxy_mode,
            mtu=mtu,
            node_subnet=node_subnet,
            racks=racks,
            bgp_design=bgp_design,
            bgp_asn=bgp_asn,
            name=name,
            overlay_vni=overlay_vni,
            overlay_port=overlay_port,
            same_subnet_direct=same_subnet_direct,
            veth_mtu=veth_mtu,
            tunnel_mtu=tunnel_mtu,
            load_balancer_pools=tuple(load_balancer_pools),
        )
        self._setup(network)

    @classmethod
    def from_network(cls, network: ClusterNetwork) -> Cluster:
        """An empty cluster with already validated settings."""
        cluster = cls.__new__(cls)
        cluster._setup(network)
        return cluster

    def _setup(self, network: ClusterNetwork) -> None:
        self.network = network
        self._nodes: dict[str, Node] = {}
        self._pods: dict[str, Pod] = {}
        self._services: dict[str, Service] = {}
        self._manual_slices: dict[str, EndpointSlice] = {}
        # Allocators, one per address family (kube-controller-manager and kube-apiserver
        # both keep one per --cluster-cidr / --service-cluster-ip-range entry).
        self.node_cidr_allocators: dict[int, NodeCIDRAllocator] = {}
        self.block_ipam: dict[int, BlockIPAM] = {}
        for cidr in network.pod_cidrs:
            if network.ipam == "host-local":
                self.node_cidr_allocators[cidr.version] = NodeCIDRAllocator(cidr, network.node_mask(cidr.version))
            else:
                self.block_ipam[cidr.version] = BlockIPAM(cidr)
        self.host_local: dict[tuple[str, int], HostLocal] = {}
        self.service_ip_allocators = {c.version: ServiceIPAllocator(c) for c in network.service_cidrs}
        self.node_port_allocator = NodePortAllocator()
        # MetalLB's controller, when the scenario has address pools.
        self.load_balancer_allocator = LoadBalancerIPAllocator(network.load_balancer_pools)
        # Calico's tunnel devices (vxlan.calico, tunl0) take an address from IPAM when calico-node starts.
        self.tunnel_addresses: dict[str, IPAddress] = {}
        self._topology = None

    # -- lookups ---------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def pods(self) -> list[Pod]:
        return list(self._pods.values())

    @property
    def services(self) -> list[Service]:
        return list(self._services.values())

    def node(self, name: str) -> Node:
        """The node called ``name``; NotFound names the nodes there are."""
        try:
            return self._nodes[name]
        except KeyError:
            known = ", ".join(self._nodes) or "none yet"
            raise NotFound("Cluster", "node", name, f"must name an existing node ({known})") from None

    def pod(self, name: str, namespace: str = "default") -> Pod:
        """The pod ``name`` (or ``"namespace/name"``)."""
        return self._namespaced(self._pods, "pod", name, namespace)

    def service(self, name: str, namespace: str = "default") -> Service:
        """The Service ``name`` (or ``"namespace/name"``)."""
        return self._namespaced(self._services, "service", name, namespace)

    @staticmethod
    def _namespaced(table: dict, kind: str, name: str, namespace: str):
        key = name if "/" in name else f"{namespace}/{name}"
        try:
            return table[key]
        except KeyError:
            raise NotFound("Cluster", kind, key, f"must name an existing {kind}") from None

    def pods_on(self, node: str) -> list[Pod]:
        self.node(node)
        return [p for p in self._pods.values() if p.node == node]

    def endpoint_slices(self, service: Service | str | None = None, namespace: str = "default") -> list[EndpointSlice]:
        """EndpointSlices of one Service, or of all: the controller's, recomputed now, plus manual ones."""
        if service is None:
            chosen = list(self._services.values())
        else:
            chosen = [service if isinstance(service, Service) else self.service(service, namespace)]
        slices: list[EndpointSlice] = []
        pods = list(self._pods.values())
        for svc in chosen:
            slices.extend(endpoint_slices_for(svc, pods))
            slices.extend(s for s in self._manual_slices.values() if s.service == svc.name and s.namespace == svc.namespace)
        if service is None:
            known = {s.key for s in self._services.values()}
            slices.extend(s for s in self._manual_slices.values() if f"{s.namespace}/{s.service}" not in known)
        return slices

    def blocks(self, node: str) -> list[IPNetwork]:
        """Calico IPAM blocks affine to ``node`` (empty unless ``ipam="calico"``)."""
        self.node(node)
        return [b for ipam in self.block_ipam.values() for b in ipam.blocks(node)]

    # -- nodes -----------------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        ip: object = None,
        *,
        pod_cidr: object = None,
        labels: Mapping[str, str] | None = None,
        rack: str | None = None,
    ) -> Node:
        """Add a node; give it a podCIDR per family unless ``pod_cidr`` says which it has.

        ``ip`` is its InternalIP (two, as a list, for dual-stack); without one it
        takes the next free address from .11 up on its rack's subnet (or on the
        cluster's node subnet, 192.168.0.0/24 unless set).
        """
        _check_name("Node", name, _DNS_SUBDOMAIN, 253)
        obj = f"Node {name}"
        if name in self._nodes:
            raise AlreadyExists("Cluster", "node", name, "is already a node of the cluster")
        labels = _labels(obj, labels)
        network = self.network
        configured = network.rack_of(name)
        if rack is not None and configured is None:
            network = network.with_rack_node(rack, name)
        elif rack is not None and configured.name != rack:
            raise InvalidValue(obj, "rack", rack, f"must match the underlay, which puts it in {configured.name}")
        rack_obj = network.rack_of(name)
        if network.racks and rack_obj is None:
            raise InvalidValue(obj, "rack", rack, "must name one of the underlay's racks: " + network._rack_names())
        ips = self._node_ips(obj, ip, rack_obj)
        with _Transaction(len(self.node_cidr_allocators)) as change:
            cidrs = self._node_pod_cidrs(obj, pod_cidr, change)
        node = Node(name=name, ips=ips, pod_cidrs=cidrs, labels=labels, rack=rack_obj.name if rack_obj else None)
        if self.block_ipam and network.cni in ("calico-vxlan", "calico-ipip") and 4 in self.block_ipam:
            self.tunnel_addresses[name] = self.block_ipam[4].allocate(name).ip
        for cidr in cidrs:
            self.host_local[(name, cidr.version)] = HostLocal(cidr)
        self.network = network
        self._nodes[name] = node
        self._changed()
        return node

    def _node_ips(self, obj: str, ip: object, rack: Rack | None) -> tuple[IPAddress, ...]:
        subnet = rack.subnet if rack else self.network.segment_subnet
        taken = {a for n in self._nodes.values() for a in n.ips}
        if ip is None:
            candidates = (a for a in subnet.hosts() if int(a) - int(subnet.network_address) >= FIRST_NODE_HOST)
            free = next((a for a in candidates if a not in taken), None)
            if free is None:
                raise InvalidValue(obj, "ip", None, f"must be given: subnet {subnet} has no free address left")
            return (free,)
        ips = tuple(parse_address(v, obj=obj, field="ip") for v in _as_list(ip))
        if len({a.version for a in ips}) != len(ips):
            raise InvalidValue(obj, "ip", ip, "must hold at most one address per family")
        for address in ips:
            for what, cidrs in (("podCIDRs", self.network.pod_cidrs), ("serviceCIDRs", self.network.service_cidrs)):
                inside = next((c for c in cidrs if address in c), None)
                if inside is not None:
                    raise Overlap(obj, "ip", str(address), f"must not be inside the cluster's {what} {inside}")
            if address in taken:
                owner = next(n.name for n in self._nodes.values() if address in n.ips)
                raise AlreadyExists(obj, "ip", str(address), f"is already the address of node {owner}")
            if rack is not None and address.version == subnet.version and address not in subnet:
                raise InvalidValue(obj, "ip", str(address), f"must be inside rack {rack.name}'s subnet {subnet}")
        return ips

    def _node_pod_cidrs(self, obj: str, pod_cidr: object, change: _Transaction) -> tuple[IPNetwork, ...]:
        if not self.node_cidr_allocators:
            if pod_cidr is not None:
                raise InvalidValue(obj, "spec.podCIDR", pod_cidr, "must be unset when Calico IPAM hands out pod IPs")
            return ()
        if pod_cidr is None:
            cidrs = []
            for allocator in self.node_cidr_allocators.values():
                try:
                    cidrs.append(change.touch(allocator).allocate())
                except Exhausted as exc:
                    raise Exhausted(obj, "spec.podCIDR", allocator.cluster_cidr,
                                    f"cannot be given: every /{allocator.node_mask} of the cluster CIDR is taken",
                                    upstream=exc.upstream) from None
            return tuple(cidrs)
        cidrs = tuple(parse_network(v, obj=obj, field="spec.podCIDRs") for v in _as_list(pod_cidr))
        if sorted(c.version for c in cidrs) != sorted(self.node_cidr_allocators):
            raise InvalidValue(obj, "spec.podCIDRs", pod_cidr,
                               f"must hold one CIDR for each of the cluster's families ({self.network.describe_families()})")
        for cidr in cidrs:
            allocator = self.node_cidr_allocators[cidr.version]
            if cidr.prefixlen != allocator.node_mask or not cidr.subnet_of(allocator.cluster_cidr):
                raise InvalidValue(obj, "spec.podCIDRs", str(cidr),
                                   f"must be a /{allocator.node_mask} inside the cluster CIDR {allocator.cluster_cidr}")
            owner = next((n.name for n in self._nodes.values() if cidr in n.pod_cidrs), None)
            if owner is not None:
                raise AlreadyExists(obj, "spec.podCIDRs", str(cidr), f"is already the podCIDR of node {owner}")
            change.touch(allocator).occupy(cidr)
        return cidrs

    def remove_node(self, name: str) -> None:
        """Delete a node, its pods (as the pod garbage collector would) and its podCIDRs."""
        node = self.node(name)
        for pod in self.pods_on(name):
            self.remove_pod(pod.name, pod.namespace)
        for cidr in node.pod_cidrs:
            self.node_cidr_allocators[cidr.version].release(cidr)
            del self.host_local[(name, cidr.version)]
        if name in self.tunnel_addresses:
            self.block_ipam[4].release(self.tunnel_addresses.pop(name))
        del self._nodes[name]
        self.network = self.network.without_node(name)
        self._changed()

    # -- pods ------------------------------------------------------------------------------

    def add_pod(
        self,
        name: str,
        node: str | None,
        *,
        namespace: str = "default",
        labels: Mapping[str, str] | None = None,
        ip: object = None,
        ports: object = None,
        ready: bool = True,
        terminating: bool = False,
        host_network: bool = False,
        phase: str = "Running",
    ) -> Pod:
        """Schedule a pod on ``node`` and give it an IP per family from the cluster's IPAM.

        ``ip`` asks for particular addresses (as a CNI ``IP=`` argument does);
        ``ports`` declares container ports, ``{"http": 8080}`` or ``[8080]``,
        which a Service's named ``targetPort`` resolves through. A
        ``host_network`` pod uses its node's addresses. ``node=None`` is a
        pod still Pending, with no address.
        """
        _check_name("Pod", name, _DNS_SUBDOMAIN, 253)
        _check_name("Namespace", namespace, _DNS_LABEL_1035, 63)
        key = f"{namespace}/{name}"
        obj = f"Pod {key}"
        if key in self._pods:
            raise AlreadyExists("Cluster", "pod", key, "is already a pod of the cluster")
        if node is not None:
            self.node(node)
        labels = _labels(obj, labels)
        container_ports = self._container_ports(obj, ports)
        if node is None or phase in ("Succeeded", "Failed"):
            ips: tuple[IPAddress, ...] = ()
        elif host_network:
            ips = self._nodes[node].ips
        else:
            ips = self._allocate_pod_ips(obj, key, node, ip)
        pod = Pod(name=name, node=node, ips=ips, namespace=namespace, labels=labels, ports=container_ports,
                  ready=bool(ready), terminating=bool(terminating), host_network=bool(host_network), phase=phase)
        self._pods[key] = pod
        self._changed()
        return pod

    @staticmethod
    def _container_ports(obj: str, ports: object) -> tuple[ContainerPort, ...]:
        if ports is None:
            return ()
        if isinstance(ports, Mapping):
            return tuple(ContainerPort(port=parse_port(p, obj=obj, field=f"ports.{n}"), name=n) for n, p in ports.items())
        if isinstance(ports, (list, tuple)):
            result = []
            for i, p in enumerate(ports):
                if isinstance(p, ContainerPort):
                    result.append(p)
                else:
                    result.append(ContainerPort(port=parse_port(p, obj=obj, field=f"ports[{i}]")))
            return tuple(result)
        raise InvalidValue(obj, "ports", ports, "must be a mapping of port names to numbers, or a list of numbers")

    def _allocate_pod_ips(self, obj: str, key: str, node: str, ip: object) -> tuple[IPAddress, ...]:
        requested: dict[int, IPAddress] = {}
        if ip is not None:
            for value in _as_list(ip):
                address = parse_address(value, obj=obj, field="ip")
                if address.version not in self.network.families or address.version in requested:
                    raise InvalidValue(obj, "ip", ip, f"must hold at most one address for each of the cluster's families ({self.network.describe_families()})")
                requested[address.version] = address
        ips = []
        with _Transaction(len(self.network.families)) as change:
            for version in self.network.families:
                wanted = requested.get(version)
                try:
                    if self.network.ipam == "host-local":
                        address = change.touch(self.host_local[(node, version)]).allocate(key, wanted).ip
                    else:
                        ipam = change.touch(self.block_ipam[version])
                        address = (ipam.assign(wanted, node) if wanted is not None else ipam.allocate(node)).ip
                except Exhausted as exc:
                    source = (f"node {node}'s podCIDR {self._nodes[node].pod_cidrs[self.network.families.index(version)]}"
                              if self.network.ipam == "host-local" else f"Calico pool {self.block_ipam[version].pool}")
                    raise Exhausted(obj, "spec.nodeName", node, f"leaves the pod without an IPv{version} address: "
                                    f"{source} has none free", upstream=exc.upstream) from None
                ips.append(address)
        return tuple(ips)

    def remove_pod(self, name: str, namespace: str = "default") -> None:
        """Delete a pod and give its addresses back to IPAM (the CNI DEL)."""
        pod = self.pod(name, namespace)
        if pod.ips and not pod.host_network:
            for address in pod.ips:
                if self.network.ipam == "host-local":
                    self.host_local[(pod.node, address.version)].release(pod.key)
                else:
                    self.block_ipam[address.version].release(address)
        del self._pods[pod.key]
        self._changed()

    # -- services --------------------------------------------------------------------------

    def add_service(
        self,
        name: str,
        *,
        selector: Mapping[str, str] | None = None,
        port: int | None = None,
        target_port: int | str | None = None,
        protocol: str = "TCP",
        ports: Iterable[ServicePort | Mapping[str, Any]] | None = None,
        type: str = "ClusterIP",
        cluster_ip: object = None,
        node_port: int | None = None,
        namespace: str = "default",
        ip_family_policy: str = "SingleStack",
        ip_families: Iterable[str] | None = None,
        external_traffic_policy: str = "Cluster",
        internal_traffic_policy: str = "Cluster",
        session_affinity: str = "None",
        session_affinity_timeout: int | None = None,
        external_ips: Iterable[object] = (),
        load_balancer_ips: Iterable[object] = (),
        load_balancer_source_ranges: Iterable[object] = (),
        publish_not_ready_addresses: bool = False,
        headless: bool = False,
        labels: Mapping[str, str] | None = None,
        health_check_node_port: int | None = None,
    ) -> Service:
        """Create a Service: a ClusterIP per family, NodePorts when its type needs them.

        One port: ``port=80, target_port=8080`` (``target_port`` defaults to
        ``port``, as the API server defaults it). Several: ``ports=[{"name":
        "http", "port": 80, "targetPort": "http"}, ...]`` in the API's own
        spelling. ``headless=True`` is ``clusterIP: None``.
        """
        _check_name("Service", name, _DNS_LABEL_1035, 63)
        _check_name("Namespace", namespace, _DNS_LABEL_1035, 63)
        key = f"{namespace}/{name}"
        obj = f"Service {key}"
        if key in self._services:
            raise AlreadyExists("Cluster", "service", key, "is already a Service of the cluster")
        if type not in SERVICE_TYPES:
            raise InvalidValue(obj, "spec.type", type, f"must be one of {', '.join(SERVICE_TYPES)}")
        for field, value, options in (
            ("spec.externalTrafficPolicy", external_traffic_policy, TRAFFIC_POLICIES),
            ("spec.internalTrafficPolicy", internal_traffic_policy, TRAFFIC_POLICIES),
            ("spec.ipFamilyPolicy", ip_family_policy, IP_FAMILY_POLICIES),
            ("spec.sessionAffinity", session_affinity, ("None", "ClientIP")),
        ):
            if value not in options:
                raise InvalidValue(obj, field, value, f"must be one of {', '.join(options)}")
        external_ips = tuple(parse_address(a, obj=obj, field="spec.externalIPs") for a in external_ips)
        load_balancer_ips = tuple(parse_address(a, obj=obj, field="status.loadBalancer.ingress") for a in load_balancer_ips)
        load_balancer_source_ranges = tuple(
            parse_network(r, obj=obj, field="spec.loadBalancerSourceRanges") for r in load_balancer_source_ranges)
        selector = None if selector is None else _labels(obj, selector)
        labels = _labels(obj, labels)
        if session_affinity_timeout is not None and (
                isinstance(session_affinity_timeout, bool) or not isinstance(session_affinity_timeout, int)
                or not 0 < session_affinity_timeout <= 86400):
            raise InvalidValue(obj, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", session_affinity_timeout,
                               "must be from 1 to 86400 seconds")
        if external_traffic_policy == "Local" and type == "ClusterIP" and not external_ips:
            raise InvalidValue(obj, "spec.externalTrafficPolicy", "Local",
                               "may only be set for NodePort or LoadBalancer Services, or with externalIPs")
        if headless and type != "ClusterIP":
            raise InvalidValue(obj, "spec.clusterIP", "None", "may only be headless for type ClusterIP")
        families = self._service_families(obj, ip_family_policy, ip_families, cluster_ip)
        service_ports = self._service_ports(obj, port, target_port, protocol, node_port, ports, type)
        needs_node_ports = type in ("NodePort", "LoadBalancer")
        # kube-apiserver gives a LoadBalancer with externalTrafficPolicy Local a health-check NodePort.
        needs_health_check = type == "LoadBalancer" and external_traffic_policy == "Local"
        if health_check_node_port is not None and not needs_health_check:
            raise InvalidValue(obj, "spec.healthCheckNodePort", health_check_node_port,
                               "may only be set for a LoadBalancer with externalTrafficPolicy Local")
        pools = self.load_balancer_allocator
        # MetalLB gives LoadBalancers their VIPs (or records the ones they ask for) when pools exist.
        metallb = type == "LoadBalancer" and bool(pools.pools) and (
            not load_balancer_ips or all(pools.pool_for(ip) is not None for ip in load_balancer_ips))
        steps = ((0 if headless else len(families)) + (len(service_ports) if needs_node_ports else 0)
                 + needs_health_check + (2 if metallb else 0))
        with _Transaction(steps) as change:
            cluster_ips = () if headless else self._allocate_cluster_ips(key, families, cluster_ip, change, obj)
            allocated_ports = [
                replace(sp, node_port=_allocate_for(obj, f"spec.ports[{i}].nodePort",
                                                    change.touch(self.node_port_allocator), sp.node_port))
                if needs_node_ports else sp
                for i, sp in enumerate(service_ports)
            ]
            health_check = (_allocate_for(obj, "spec.healthCheckNodePort", change.touch(self.node_port_allocator),
                                          health_check_node_port)
                            if needs_health_check else None)
            if metallb:
                ports = [(sp.protocol, sp.port) for sp in service_ports]
                change.touch(pools)
                load_balancer_ips = tuple(pools.assign(key, ip, ports) for ip in load_balancer_ips) or (
                    pools.allocate(key, families[0], ports=ports),)
        service = Service(
            name=name,
            namespace=namespace,
            ports=tuple(allocated_ports),
            cluster_ips=cluster_ips,
            selector=selector,
            type=type,
            ip_families=tuple(family_name(v) for v in families),
            ip_family_policy=ip_family_policy,
            external_traffic_policy=external_traffic_policy,
            internal_traffic_policy=internal_traffic_policy,
            session_affinity=session_affinity,
            session_affinity_timeout=session_affinity_timeout,
            external_ips=external_ips,
            load_balancer_ips=load_balancer_ips,
            load_balancer_source_ranges=load_balancer_source_ranges,
            publish_not_ready_addresses=bool(publish_not_ready_addresses),
            headless=bool(headless),
            labels=labels,
            health_check_node_port=health_check,
        )
        self._services[key] = service
        self._changed()
        return service

    def _service_families(self, obj: str, policy: str, ip_families: Iterable[str] | None, cluster_ip: object) -> tuple[int, ...]:
        available = [c.version for c in self.network.service_cidrs]
        if ip_families is not None:
            names = list(ip_families)
            if not names or any(n not in ("IPv4", "IPv6") for n in names) or len(set(names)) != len(names):
                raise InvalidValue(obj, "spec.ipFamilies", names, "must list IPv4 and/or IPv6, each at most once")
            families = tuple(int(n[-1]) for n in names)
        elif cluster_ip:
            families = tuple(parse_address(v, obj=obj, field="spec.clusterIPs").version for v in _as_list(cluster_ip))
        else:
            families = tuple(available) if policy != "SingleStack" else (available[0],)
        if policy == "SingleStack" and len(families) > 1:
            raise InvalidValue(obj, "spec.ipFamilyPolicy", policy, "must be PreferDualStack or RequireDualStack for two families")
        if policy == "RequireDualStack" and len(available) < 2:
            raise InvalidValue(obj, "spec.ipFamilyPolicy", policy, "needs a dual-stack cluster (two serviceCIDRs)")
        if policy != "SingleStack" and ip_families is None and len(families) == 1:
            families = tuple(available) if families[0] == available[0] else tuple(reversed(available))
        for version in families:
            if version not in available:
                raise InvalidValue(obj, "spec.ipFamilies", family_name(version), "must be a family the cluster has a serviceCIDR for")
        return families

    @staticmethod
    def _service_ports(obj, port, target_port, protocol, node_port, ports, type) -> tuple[ServicePort, ...]:
        if (port is None) == (ports is None):
            raise InvalidValue(obj, "spec.ports", ports if port is None else port, "must be given once: port=... or ports=[...]")
        if ports is None:
            ports = [{"port": port, "targetPort": target_port, "protocol": protocol, "nodePort": node_port}]
        result = []
        for i, entry in enumerate(ports):
            where = f"spec.ports[{i}]"
            if not isinstance(entry, ServicePort):
                if not isinstance(entry, Mapping):
                    raise InvalidValue(obj, where, entry, "must be a mapping with port, targetPort, protocol, name")
                number = parse_port(entry.get("port"), obj=obj, field=f"{where}.port")
                target = entry.get("targetPort")
                target = number if target is None else target
                if not isinstance(target, str):
                    target = parse_port(target, obj=obj, field=f"{where}.targetPort")
                elif not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", target) or len(target) > 15:
                    raise InvalidValue(obj, f"{where}.targetPort", target, "must be a port number or an IANA_SVC_NAME (at most 15 characters)")
                entry = ServicePort(port=number, target_port=target, protocol=entry.get("protocol") or "TCP",
                                    name=entry.get("name"), node_port=entry.get("nodePort"))
            if entry.protocol not in PROTOCOLS:
                raise InvalidValue(obj, f"{where}.protocol", entry.protocol, f"must be one of {', '.join(PROTOCOLS)}")
            if entry.node_port is not None and type == "ClusterIP":
                raise InvalidValue(obj, f"{where}.nodePort", entry.node_port, "may only be set for NodePort or LoadBalancer Services")
            result.append(entry)
        if len(result) > 1:
            for i, sp in enumerate(result):
                if not sp.name:
                    raise InvalidValue(obj, f"spec.ports[{i}].name", sp.name, "is required when a Service has several ports")
            names = [sp.name for sp in result]
            if len(set(names)) != len(names):
                raise InvalidValue(obj, "spec.ports[].name", names, "must be unique within the Service")
        return tuple(result)

    def _allocate_cluster_ips(self, key: str, families: tuple[int, ...], cluster_ip: object,
                              change: _Transaction, obj: str) -> tuple[IPAddress, ...]:
        wanted: dict[int, IPAddress] = {}
        for value in _as_list(cluster_ip) if cluster_ip else ():
            address = parse_address(value, obj=obj, field="spec.clusterIPs")
            wanted[address.version] = address
        ips = []
        for version in families:
            allocator = self.service_ip_allocators[version]
            requested = wanted.get(version)
            if requested is None and key == "default/kubernetes":
                requested = allocator.kubernetes_ip
            ips.append(_allocate_for(obj, "spec.clusterIPs", change.touch(allocator), requested))
        return tuple(ips)

    def remove_service(self, name: str, namespace: str = "default") -> None:
        """Delete a Service and free its ClusterIPs and NodePorts."""
        service = self.service(name, namespace)
        for address in service.cluster_ips:
            self.service_ip_allocators[address.version].release(address)
        for sp in service.ports:
            if sp.node_port is not None:
                self.node_port_allocator.release(sp.node_port)
        if service.health_check_node_port is not None:
            self.node_port_allocator.release(service.health_check_node_port)
        if self.load_balancer_allocator.ip(service.key) is not None:
            self.load_balancer_allocator.release(service.key)
        del self._services[service.key]
        self._changed()

    def add_endpoint_slice(self, endpoint_slice: EndpointSlice) -> EndpointSlice:
        """Add a slice written by hand (or by another controller); it is kept exactly as given."""
        if endpoint_slice.key in self._manual_slices:
            raise AlreadyExists("Cluster", "endpointslice", endpoint_slice.key, "is already an EndpointSlice of the cluster")
        self._manual_slices[endpoint_slice.key] = endpoint_slice
        self._changed()
        return endpoint_slice

    # -- the datapath ----------------------------------------------------------------------

    def _changed(self) -> None:
        self._topology = None

    def topology(self):
        """Every network namespace as the CNI leaves it (:mod:`kubenet_lab.overlay.topology`)."""
        from .overlay.topology import build_topology

        if self._topology is None:
            self._topology = build_topology(self)
        return self._topology

    def host(self, node: str):
        """A node's root namespace: ``.routes`` (ip route), ``.neighbors`` (ip neigh), ``.fdb``
        (bridge fdb), ``.links``, ``.tunnel_map``; ``print()`` it for all of them."""
        self.node(node)
        return self.topology()[node]

    def trace(self, src: str, dst: str, *, dport: int | None = None, proto: str = "icmp", size: int | None = None,
              sport: int | None = None, df: bool = True, endpoint: str | None = None, seed: int = 0):
        """Walk one packet from ``src`` (a pod or node name) to ``dst`` (a pod, node or Service name, or an IP).

        With a BGP design, ``"external"`` names a client outside the cluster, at either end
        (:mod:`kubenet_lab.overlay.topology`): a LoadBalancer VIP or a NodePort walked from outside.

        Returns a :class:`~kubenet_lab.datapath.trace.Trace`: every hop, the table entry that decided
        it, and the packet there. Through a Service, kube-proxy's rules pick the endpoint: by a
        seeded draw (``seed``), or the one named by ``endpoint``; ``trace.service_choice`` has the
        exact probability of each. See chapters 02 and 04.
        """
        from .datapath.trace import trace

        return trace(self, src, dst, dport=dport, proto=proto, size=size, sport=sport, df=df, endpoint=endpoint,
                     seed=seed)

    def kube_proxy(self, node: str, **flags):
        """The kube-proxy of ``node``: ``.iptables_restore()`` is what it feeds iptables-restore.

        ``flags`` are kube-proxy's settings under Python names (``masquerade_all=True``,
        ``masquerade_bit=14``, ``nodeport_addresses=("primary",)``, ...); see
        :class:`~kubenet_lab.kubeproxy.settings.ProxierSettings`. Chapter 04.
        """
        from .kubeproxy import KubeProxy

        return KubeProxy(self, node, **flags)

    # -- scenario files --------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *more: str | Path) -> Cluster:
        """Read a scenario: a Kubernetes List (JSON) or multi-document YAML, plus one ClusterNetwork.

        Several files are read as one scenario, so a ``kubectl get nodes,pods,
        services,endpointslices -A -o json`` dump can be paired with a small
        file holding the ClusterNetwork.
        """
        from .scenario import cluster_from_objects, read_objects

        objects = [o for p in (path, *more) for o in read_objects(p)]
        return cluster_from_objects(objects)

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> Cluster:
        """Build a cluster from Kubernetes objects already parsed into dicts."""
        from .scenario import cluster_from_objects

        return cluster_from_objects(list(objects))

    def to_objects(self) -> list[dict[str, Any]]:
        """The cluster as Kubernetes objects, the shapes ``kubectl get -o json`` prints."""
        from .scenario import cluster_to_objects

        return cluster_to_objects(self)

    def dump(self, path: str | Path) -> Path:
        """Write the scenario: YAML for ``.yaml``/``.yml``, a JSON ``List`` otherwise."""
        from .scenario import write_objects

        return write_objects(self.to_objects(), path)

    # -- display ---------------------------------------------------------------------------

    def tables(self) -> dict[str, tables.Table]:
        """The node, pod and service tables ``kubenet-lab show`` prints."""
        return tables.cluster_tables(self)

    def __str__(self) -> str:
        return "\n\n".join(t.text() for t in self.tables().values())

    def _repr_html_(self) -> str:
        return "".join(t.html() for t in self.tables().values())

    def __repr__(self) -> str:
        cidrs = ",".join(str(c) for c in self.network.pod_cidrs)
        return (f"<Cluster {self.network.name}: {len(self._nodes)} nodes, {len(self._pods)} pods, "
                f"{len(self._services)} services; pods {cidrs}; cni {self.network.cni}>")
