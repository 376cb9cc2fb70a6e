"""ClusterNetwork: the cluster-wide network settings of a scenario.

Kubernetes has no single object for "how is this cluster's network built":
the answers are spread over flags and resources of several components. A
kubenet-lab scenario gathers them in one ``kubenet-lab.io/v1alpha1
ClusterNetwork`` object whose field names are spelled like the flags they
stand for:

==========================  ==========================================================
field                       real setting
==========================  ==========================================================
``podCIDRs``                kube-controller-manager ``--cluster-cidr`` (two for dual-stack)
``serviceCIDRs``            kube-apiserver ``--service-cluster-ip-range``
``nodeCIDRMaskSize``        kube-controller-manager ``--node-cidr-mask-size(-ipv4)``
``nodeCIDRMaskSizeIPv6``    kube-controller-manager ``--node-cidr-mask-size-ipv6``
``cni``                     which CNI plugin and datapath mode the nodes run
``ipam``                    who hands out pod IPs: ``host-local`` or ``calico`` blocks
``kubeProxy.mode``          kube-proxy ``--proxy-mode``
``underlay``                the physical network: MTU, node subnet, racks and ToRs
``bgp``                     how routes are exchanged in BGP-routed designs
``overlay``                 ``vni``, ``port``, and flannel's ``directRouting`` /
                            Calico's ``crossSubnet`` (encapsulate only across subnets);
                            ``vethMTU`` and ``tunnelMTU`` override the computed MTUs
                            (to reproduce a misconfigured cluster)
``loadBalancer.pools``      MetalLB ``IPAddressPool`` s: ``name``, ``addresses``
                            (CIDRs or first-last ranges), ``autoAssign``, ``avoidBuggyIPs``
==========================  ==========================================================

>>> net = ClusterNetwork.from_object({
...     "apiVersion": "kubenet-lab.io/v1alpha1", "kind": "ClusterNetwork",
...     "metadata": {"name": "lab"},
...     "spec": {"podCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/12"]}})
>>> net.pod_cidrs, net.cni, net.node_mask(4)
((IPv4Network('10.244.0.0/16'),), 'flannel-vxlan', 24)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from .addresses import IPNetwork, family_name, parse_network
from .errors import InvalidValue, Overlap

API_VERSION = "kubenet-lab.io/v1alpha1"
KIND = "ClusterNetwork"

CNI_MODES = (
    "flannel-vxlan",
    "calico-vxlan",
    "calico-ipip",
    "calico-bgp",
    "cilium-vxlan",
    "cilium-geneve",
    "native-routing",
)
IPAM_MODES = ("host-local", "calico")
KUBE_PROXY_MODES = ("iptables", "nftables", "ipvs")
BGP_DESIGNS = ("none", "full-mesh", "route-reflectors", "per-rack-ebgp")

# kube-controller-manager's defaults (pkg/controller/nodeipam: defaultNodeMaskCIDRIPv4/IPv6).
DEFAULT_NODE_MASK = {4: 24, 6: 64}
# Calico's default AS number for the node-to-node mesh (calico BGPConfiguration asNumber).
DEFAULT_BGP_ASN = 64512
DEFAULT_MTU = 1500
# Without racks, all nodes share one L2 segment; kubenet-lab gives it this subnet.
DEFAULT_NODE_SUBNET = "192.168.0.0/24"
# With racks, the ToR-spine links are /31s (RFC 3021) from this range, kept clear of every cluster range.
FABRIC_SUBNET = "172.31.255.0/24"

__all__ = ["ClusterNetwork", "Rack", "CNI_MODES", "IPAM_MODES", "KUBE_PROXY_MODES", "BGP_DESIGNS"]


def _pool(value: object):
    """A MetalLB IPAddressPool from a scenario's ``loadBalancer.pools`` entry (or an AddressPool)."""
    from .ipam.metallb import AddressPool

    if isinstance(value, AddressPool):
        return value
    if not isinstance(value, dict) or not value.get("name"):
        raise InvalidValue("ClusterNetwork", "spec.loadBalancer.pools[]", value, "must be {name, addresses: [...]}")
    return AddressPool(value["name"], tuple(value.get("addresses") or ()), auto_assign=value.get("autoAssign", True),
                       avoid_buggy_ips=value.get("avoidBuggyIPs", False))


def _one_of(obj: str, name: str, value: object, options: tuple[str, ...]) -> str:
    if value not in options:
        raise InvalidValue(obj, name, value, f"must be one of {', '.join(options)}")
    return value  # type: ignore[return-value]


def _cidr_list(obj: str, name: str, value: object) -> tuple[IPNetwork, ...]:
    """One CIDR, a comma-separated string, or a list of one or two of different families."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not 1 <= len(items) <= 2:
        raise InvalidValue(obj, name, value, "must be one CIDR, or two of different families for dual-stack")
    cidrs = tuple(parse_network(item, obj=obj, field=name) for item in items)
    if len(cidrs) == 2 and cidrs[0].version == cidrs[1].version:
        raise InvalidValue(obj, name, value, "must hold at most one CIDR per family (one IPv4, one IPv6)")
    return cidrs


def _mask(obj: str, name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise InvalidValue(obj, name, value, f"must be a prefix length from 1 to {limit}")
    return value


@dataclass(frozen=True)
class Rack:
    """A rack: one L2 segment (``subnet``) behind a top-of-rack router.

    In BGP-routed designs the ToR is a BGP speaker with its own AS number
    (``tor_asn``), the way a data-centre fabric gives each rack its own AS.
    """

    name: str
    subnet: IPNetwork
    tor: str
    tor_asn: int | None = None
    nodes: tuple[str, ...] = ()

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Rack:
        where = f"ClusterNetwork rack {obj.get('name', '?')}"
        if not isinstance(obj, dict) or not obj.get("name"):
            raise InvalidValue("ClusterNetwork", "spec.underlay.racks[].name", obj, "must be set for every rack")
        tor = obj.get("tor") or {}
        asn = tor.get("asn")
        if asn is not None and (not isinstance(asn, int) or not 0 < asn < 2**32):
            raise InvalidValue(where, "tor.asn", asn, "must be an AS number from 1 to 4294967295")
        nodes = obj.get("nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise InvalidValue(where, "nodes", nodes, "must be a list of node names")
        return cls(
            name=obj["name"],
            subnet=parse_network(obj.get("subnet"), obj=where, field="subnet"),
            tor=tor.get("name") or f"tor-{obj['name']}",
            tor_asn=asn,
            nodes=tuple(nodes),
        )

    def to_object(self) -> dict[str, Any]:
        tor: dict[str, Any] = {"name": self.tor}
        if self.tor_asn is not None:
            tor["asn"] = self.tor_asn
        return {"name": self.name, "subnet": str(self.subnet), "tor": tor, "nodes": list(self.nodes)}


@dataclass(frozen=True)
class ClusterNetwork:
    """The cluster-wide network settings (see the module docstring for the fields)."""

    pod_cidrs: tuple[IPNetwork, ...]
    service_cidrs: tuple[IPNetwork, ...]
    node_cidr_mask_size: int | None = None
    node_cidr_mask_size_ipv6: int | None = None
    cni: str = "flannel-vxlan"
    ipam: str = "host-local"
    kube_proxy_mode: str = "iptables"
    mtu: int = DEFAULT_MTU
    node_subnet: IPNetwork | None = None
    racks: tuple[Rack, ...] = ()
    bgp_design: str = "none"
    bgp_asn: int = DEFAULT_BGP_ASN
    name: str = "lab"
    overlay_vni: int | None = None
    overlay_port: int | None = None
    same_subnet_direct: bool = False
    veth_mtu: int | None = None
    tunnel_mtu: int | None = None
    load_balancer_pools: tuple = ()

    @classmethod
    def build(
        cls,
        pod_cidr: object,
        service_cidr: object,
        *,
        node_mask: int | None = None,
        node_mask_ipv6: int | None = None,
        cni: str = "flannel-vxlan",
        ipam: str = "host-local",
        kube_proxy_mode: str = "iptables",
        mtu: int = DEFAULT_MTU,
        node_subnet: object = None,
        racks: tuple[Rack, ...] | list[Rack] = (),
        bgp_design: str = "none",
        bgp_asn: int = DEFAULT_BGP_ASN,
        name: str = "lab",
        overlay_vni: int | None = None,
        overlay_port: int | None = None,
        same_subnet_direct: bool = False,
        veth_mtu: int | None = None,
        tunnel_mtu: int | None = None,
        load_balancer_pools: tuple | list = (),
    ) -> ClusterNetwork:
        """Validate every setting and return the settings object; raise InvalidValue/Overlap."""
        obj = "ClusterNetwork"
        pods = _cidr_list(obj, "podCIDRs", pod_cidr)
        services = _cidr_list(obj, "serviceCIDRs", service_cidr)
        if node_mask is not None:
            _mask(obj, "nodeCIDRMaskSize", node_mask, pods[0].max_prefixlen)
        if node_mask_ipv6 is not None:
            _mask(obj, "nodeCIDRMaskSizeIPv6", node_mask_ipv6, 128)
        _one_of(obj, "cni", cni, CNI_MODES)
        _one_of(obj, "ipam", ipam, IPAM_MODES)
        _one_of(obj, "kubeProxy.mode", kube_proxy_mode, KUBE_PROXY_MODES)
        _one_of(obj, "bgp.design", bgp_design, BGP_DESIGNS)
        for field_name, value in (("underlay.mtu", mtu), ("overlay.vethMTU", veth_mtu), ("overlay.tunnelMTU", tunnel_mtu)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 9216):
                raise InvalidValue(obj, field_name, value, "must be an MTU from 68 to 9216 bytes")
        if isinstance(bgp_asn, bool) or not isinstance(bgp_asn, int) or not 0 < bgp_asn < 2**32:
            raise InvalidValue(obj, "bgp.asn", bgp_asn, "must be an AS number from 1 to 4294967295")
        subnet = None if node_subnet is None else parse_network(node_subnet, obj=obj, field="underlay.subnet")
        network = cls(
            pod_cidrs=pods,
            service_cidrs=services,
            node_cidr_mask_size=node_mask,
            node_cidr_mask_size_ipv6=node_mask_ipv6,
            cni=cni,
            ipam=ipam,
            kube_proxy_mode=kube_proxy_mode,
            mtu=mtu,
            node_subnet=subnet,
            racks=tuple(racks),
            bgp_design=bgp_design,
            bgp_asn=bgp_asn,
            name=name,
            overlay_vni=overlay_vni,
            overlay_port=overlay_port,
            same_subnet_direct=bool(same_subnet_direct),
            veth_mtu=veth_mtu,
            tunnel_mtu=tunnel_mtu,
            load_balancer_pools=tuple(_pool(p) for p in load_balancer_pools),
        )
        network._check_mtu()
        network._check_ranges()
        network._check_node_masks()
        return network

    def _check_mtu(self) -> None:
        """The pods' MTU (the underlay's less the encapsulation) must stay usable for every family:
        68 bytes for IPv4 (RFC 791), 1280 for IPv6 (RFC 8200 §5)."""
        from .overlay.modes import IPV4_MIN_MTU, IPV6_MIN_MTU

        mode = self.datapath  # also validates the overlay options against the CNI
        pod_mtu = mode.pod_mtu(self.mtu, 4)
        for version, minimum in ((4, IPV4_MIN_MTU), (6, IPV6_MIN_MTU)):
            if version in self.families and pod_mtu < minimum:
                raise InvalidValue("ClusterNetwork", "underlay.mtu", self.mtu,
                                   f"leaves pods {pod_mtu} bytes after {mode.cni}'s {mode.overhead(4)}-byte overhead, "
                                   f"under the IPv{version} minimum of {minimum}")

    @property
    def pod_mtu(self) -> int:
        """The pods' MTU: ``overlay.vethMTU`` if set (Calico's veth_mtu), else the underlay's less the overhead."""
        return self.veth_mtu if self.veth_mtu is not None else self.datapath.pod_mtu(self.mtu, 4)

    @property
    def tunnel_device_mtu(self) -> int:
        """The tunnel device's MTU: ``overlay.tunnelMTU`` if set, else the underlay's less the overhead."""
        return self.tunnel_mtu if self.tunnel_mtu is not None else self.datapath.pod_mtu(self.mtu, 4)

    def _check_node_masks(self) -> None:
        """Ask kube-controller-manager's allocator whether each node mask fits its cluster CIDR."""
        from .ipam import NodeCIDRAllocator

        if self.ipam == "calico":
            return  # Calico's blocks, not node podCIDRs, carve up the pool: no node mask applies.
        for cidr in self.pod_cidrs:
            mask = self.node_mask(cidr.version)
            try:
                NodeCIDRAllocator(cidr, mask)
            except InvalidValue as exc:
                field = "nodeCIDRMaskSizeIPv6" if cidr.version == 6 and self.node_cidr_mask_size_ipv6 else "nodeCIDRMaskSize"
                raise InvalidValue("ClusterNetwork", field, mask, f"{exc.expected} (for {cidr})", exc.upstream) from None

    def _check_ranges(self) -> None:
        """Pod, service and node ranges must not share addresses; racks must not share nodes."""
        named = [("podCIDRs", c) for c in self.pod_cidrs] + [("serviceCIDRs", c) for c in self.service_cidrs]
        named += [("underlay.subnet", s) for s in self.underlay_subnets()]
        if self.racks:
            named.append(("the fabric links", ipaddress.ip_network(FABRIC_SUBNET)))
        for pool in self.load_balancer_pools:
            for first, last in pool.ranges:
                named += [(f"loadBalancer pool {pool.name}", net) for net in ipaddress.summarize_address_range(first, last)]
        for i, (name_a, a) in enumerate(named):
            for name_b, b in named[i + 1 :]:
                if a.version == b.version and a.overlaps(b) and name_a != name_b:
                    raise Overlap("ClusterNetwork", name_b, str(b), f"must not overlap {name_a} {a}")
        seen: dict[str, str] = {}
        for rack in self.racks:
            for node in rack.nodes:
                if node in seen:
                    raise InvalidValue(
                        f"ClusterNetwork rack {rack.name}", "nodes", node, f"is already in rack {seen[node]}"
                    )
                seen[node] = rack.name

    @property
    def datapath(self):
        """The CNI's datapath mode with this scenario's overlay options (:mod:`kubenet_lab.overlay.modes`)."""
        from .overlay.modes import mode_for

        return mode_for(self.cni).with_options(vni=self.overlay_vni, udp_port=self.overlay_port,
                                               same_subnet_direct=self.same_subnet_direct or None)

    @property
    def segment_subnet(self) -> IPNetwork:
        """The single shared segment's subnet when nodes are not in racks: ``nodeSubnet``, or
        :data:`DEFAULT_NODE_SUBNET` where none is set."""
        return self.node_subnet if self.node_subnet is not None else ipaddress.ip_network(DEFAULT_NODE_SUBNET)

    def underlay_subnets(self) -> tuple[IPNetwork, ...]:
        """The node networks: one per rack, or the single shared segment."""
        if self.racks:
            return tuple(r.subnet for r in self.racks)
        return (self.node_subnet,) if self.node_subnet is not None else ()

    @property
    def families(self) -> tuple[int, ...]:
        """IP versions of the cluster, primary first (``(4,)``, ``(4, 6)`` or ``(6, 4)``)."""
        return tuple(c.version for c in self.pod_cidrs)

    @property
    def dual_stack(self) -> bool:
        return len(self.pod_cidrs) == 2

    def node_mask(self, version: int) -> int:
        """The node podCIDR prefix length for a family, as kube-controller-manager resolves the flags."""
        explicit = self.node_cidr_mask_size if version == self.families[0] else None
        if version == 6 and self.node_cidr_mask_size_ipv6 is not None:
            explicit = self.node_cidr_mask_size_ipv6
        return explicit if explicit is not None else DEFAULT_NODE_MASK[version]

    def pod_cidr(self, version: int) -> IPNetwork | None:
        return next((c for c in self.pod_cidrs if c.version == version), None)

    def service_cidr(self, version: int) -> IPNetwork | None:
        return next((c for c in self.service_cidrs if c.version == version), None)

    def rack_of(self, node: str) -> Rack | None:
        return next((r for r in self.racks if node in r.nodes), None)

    def with_rack_node(self, rack: str, node: str) -> ClusterNetwork:
        """A copy with ``node`` appended to the rack named ``rack``."""
        if not any(r.name == rack for r in self.racks):
            raise InvalidValue(f"Node {node}", "rack", rack, f"must name a rack of the underlay ({self._rack_names()})")
        racks = tuple(replace(r, nodes=r.nodes + (node,)) if r.name == rack else r for r in self.racks)
        return replace(self, racks=racks)

    def without_node(self, node: str) -> ClusterNetwork:
        racks = tuple(replace(r, nodes=tuple(n for n in r.nodes if n != node)) for r in self.racks)
        return replace(self, racks=racks)

    def _rack_names(self) -> str:
        return ", ".join(r.name for r in self.racks) or "none defined"

    # -- scenario file shape -------------------------------------------------------------

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> ClusterNetwork:
        """Read the ``kubenet-lab.io/v1alpha1 ClusterNetwork`` object of a scenario."""
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name", "lab")
        if "podCIDRs" not in spec or "serviceCIDRs" not in spec:
            missing = "podCIDRs" if "podCIDRs" not in spec else "serviceCIDRs"
            raise InvalidValue(f"ClusterNetwork {name}", f"spec.{missing}", None, "must be set")
        underlay = spec.get("underlay") or {}
        bgp = spec.get("bgp") or {}
        overlay = spec.get("overlay") or {}
        racks = underlay.get("racks") or []
        if not isinstance(racks, list):
            raise InvalidValue(f"ClusterNetwork {name}", "spec.underlay.racks", racks, "must be a list of racks")
        return cls.build(
            spec["podCIDRs"],
            spec["serviceCIDRs"],
            node_mask=spec.get("nodeCIDRMaskSize"),
            node_mask_ipv6=spec.get("nodeCIDRMaskSizeIPv6"),
            cni=spec.get("cni", "flannel-vxlan"),
            ipam=spec.get("ipam", "host-local"),
            kube_proxy_mode=(spec.get("kubeProxy") or {}).get("mode", "iptables"),
            mtu=underlay.get("mtu", DEFAULT_MTU),
            node_subnet=underlay.get("subnet"),
            racks=[Rack.from_object(r) for r in racks],
            bgp_design=bgp.get("design", "none"),
            bgp_asn=bgp.get("asn", DEFAULT_BGP_ASN),
            name=name,
            overlay_vni=overlay.get("vni"),
            overlay_port=overlay.get("port"),
            same_subnet_direct=overlay.get("directRouting", False) or overlay.get("crossSubnet", False),
            veth_mtu=overlay.get("vethMTU"),
            tunnel_mtu=overlay.get("tunnelMTU"),
            load_balancer_pools=(spec.get("loadBalancer") or {}).get("pools") or (),
        )

    def to_object(self) -> dict[str, Any]:
        """The ClusterNetwork object as a scenario file holds it (defaults left out)."""
        spec: dict[str, Any] = {
            "podCIDRs": [str(c) for c in self.pod_cidrs],
            "serviceCIDRs": [str(c) for c in self.service_cidrs],
        }
        if self.node_cidr_mask_size is not None:
            spec["nodeCIDRMaskSize"] = self.node_cidr_mask_size
        if self.node_cidr_mask_size_ipv6 is not None:
            spec["nodeCIDRMaskSizeIPv6"] = self.node_cidr_mask_size_ipv6
        spec["cni"] = self.cni
        spec["ipam"] = self.ipam
        spec["kubeProxy"] = {"mode": self.kube_proxy_mode}
        underlay: dict[str, Any] = {"mtu": self.mtu}
        if self.node_subnet is not None:
            underlay["subnet"] = str(self.node_subnet)
        if self.racks:
            underlay["racks"] = [r.to_object() for r in self.racks]
        spec["underlay"] = underlay
        if self.bgp_design != "none":
            spec["bgp"] = {"design": self.bgp_design, "asn": self.bgp_asn}
        overlay: dict[str, Any] = {}
        if self.overlay_vni is not None:
            overlay["vni"] = self.overlay_vni
        if self.overlay_port is not None:
            overlay["port"] = self.overlay_port
        if self.same_subnet_direct:
            overlay["crossSubnet" if self.cni.startswith("calico") else "directRouting"] = True
        if self.veth_mtu is not None:
            overlay["vethMTU"] = self.veth_mtu
        if self.tunnel_mtu is not None:
            overlay["tunnelMTU"] = self.tunnel_mtu
        if self.load_balancer_pools:
            spec["loadBalancer"] = {"pools": [
                {"name": p.name, "addresses": list(p.addresses),
                 **({} if p.auto_assign else {"autoAssign": False}),
                 **({"avoidBuggyIPs": True} if p.avoid_buggy_ips else {})}
                for p in self.load_balancer_pools]}
        if overlay:
            spec["overlay"] = overlay
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name}, "spec": spec}

    def describe_families(self) -> str:
        return "/".join(family_name(v) for v in self.families)
