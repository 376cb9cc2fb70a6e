"""ProxierSettings: one node's kube-proxy configuration, with kube-proxy's own defaults.

Every field stands for a kube-proxy flag or a fact kube-proxy reads from its
node, and defaults to what a real kube-proxy (v1.33/v1.34, iptables mode)
uses when nothing is set:

=============================  ================================================  ==============
field                          real setting                                      default
=============================  ================================================  ==============
``node_name``                  the Node name (``--hostname-override``)           required
``node_ips``                   the node's primary IP per family                  none
``cluster_cidrs``              ``--cluster-cidr`` (one per family)               none
``detect_local_mode``          ``--detect-local-mode``                           ``ClusterCIDR``
``pod_cidrs``                  the Node's ``spec.podCIDRs`` (NodeCIDR mode)      none
``pod_bridge_interface``       ``--pod-bridge-interface``                        ``""``
``pod_interface_name_prefix``  ``--pod-interface-name-prefix``                   ``""``
``masquerade_all``             ``--masquerade-all``                              False
``masquerade_bit``             ``--iptables-masquerade-bit``                     14
``masquerade_mark``            how the mark is printed (see below)               from the bit
``localhost_nodeports``        ``--iptables-localhost-nodeports``                True
``nodeport_addresses``         ``--nodeport-addresses`` (CIDRs or ``primary``)   all addresses
``interface_addresses``        every address on the node's interfaces            127.0.0.1, ::1
                                                                                 and ``node_ips``
``nfacct``                     the kernel's nfacct counters could be created     False
``random_fully``               iptables supports ``MASQUERADE --random-fully``   True (>= 1.6.2)
``conntrack_tcp_be_liberal``   sysctl ``net.netfilter.nf_conntrack_tcp_be_liberal``  False
=============================  ================================================  ==============

The masquerade mark is ``1 << masquerade_bit``, printed by kube-proxy with Go's
``%#08x``: ``0x00004000`` for bit 14 (``iptables-save`` later shows it as
``0x4000``). kube-proxy's unit-test harness hard-codes the string ``0x4000``;
``masquerade_mark`` lets the reference cases say the same.

>>> s = ProxierSettings("node-1", node_ips=["192.168.0.11"], cluster_cidrs=["10.244.0.0/16"])
>>> s.mark, s.local_detector(4).if_not_local, s.local_detector(6).implemented
('0x00004000', ('!', '-s', '10.244.0.0/16'), False)
>>> ProxierSettings("node-1", masquerade_bit=32)
Traceback (most recent call last):
...
kubenet_lab.errors.InvalidValue: ProxierSettings: 'masquerade_bit' must be within the range [0, 31] (got 32)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import InvalidValue
from .localdetect import DETECT_LOCAL_MODES, NO_LOCAL_DETECTOR, LocalTrafficDetector
from .nodeportaddresses import NODEPORT_ADDRESSES_PRIMARY, NodePortAddresses

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["ProxierSettings", "DEFAULT_MASQUERADE_BIT", "IP_FAMILIES"]

# kube-proxy's --iptables-masquerade-bit default (pkg/proxy/apis/config/v1alpha1/defaults.go).
DEFAULT_MASQUERADE_BIT = 14
IP_FAMILIES = (4, 6)
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# Linux interface names: at most IFNAMSIZ - 1 = 15 bytes, no '/', no whitespace.
_INTERFACE_NAME = re.compile(r"^[^/\s:]{1,15}$")
_OBJ = "ProxierSettings"


def _one_per_family(field: str, values: tuple) -> None:
    versions = [v.version for v in values]
    if len(set(versions)) != len(versions):
        raise InvalidValue(_OBJ, field, [str(v) for v in values], "must hold at most one value per IP family")


def _as_tuple(value: object) -> tuple:
    """A comma-separated string (as the flags take it), a list or tuple, or one value, as a tuple."""
    if isinstance(value, str):
        return tuple(v for v in value.split(",") if v.strip())
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(_OBJ, field, value, "must be True or False")
    return value


def check_family(obj: str, family: object) -> int:
    """Return ``family`` if it is 4 or 6, else raise InvalidValue naming ``obj``."""
    if isinstance(family, bool) or family not in IP_FAMILIES:
        raise InvalidValue(obj, "family", family, "must be 4 (iptables) or 6 (ip6tables)")
    return family  # type: ignore[return-value]


@dataclass(frozen=True)
class ProxierSettings:
    """The configuration of one node's kube-proxy (see the module docstring for each field).

    Strings are accepted wherever addresses or CIDRs are expected, and a
    comma-separated string wherever a list is, as the flags take them.
    """

    node_name: str
    node_ips: tuple[IPAddress, ...] = ()
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    detect_local_mode: str = "ClusterCIDR"
    pod_cidrs: tuple[IPNetwork, ...] = ()
    pod_bridge_interface: str = ""
    pod_interface_name_prefix: str = ""
    masquerade_all: bool = False
    masquerade_bit: int = DEFAULT_MASQUERADE_BIT
    masquerade_mark: str | None = None
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str | IPNetwork, ...] = ()
    interface_addresses: tuple[IPAddress, ...] | None = None
    nfacct: bool = False
    random_fully: bool = True
    conntrack_tcp_be_liberal: bool = False

    def __post_init__(self) -> None:
        # Normalise first (strings to addresses and tuples), then check; all or nothing.
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.node_name, str) or not self.node_name:
            raise InvalidValue(_OBJ, "node_name", self.node_name, "must be the Node's name")
        put("node_ips", tuple(parse_address(v, obj=_OBJ, field="node_ips") for v in _as_tuple(self.node_ips)))
        _one_per_family("node_ips", self.node_ips)
        # kube-proxy parses --cluster-cidr sloppily: host bits are dropped.
        put("cluster_cidrs", tuple(parse_network(v, obj=_OBJ, field="cluster_cidrs", strict=False)
                                   for v in _as_tuple(self.cluster_cidrs)))
        _one_per_family("cluster_cidrs", self.cluster_cidrs)
        put("pod_cidrs", tuple(parse_network(v, obj=_OBJ, field="pod_cidrs") for v in _as_tuple(self.pod_cidrs)))
        _one_per_family("pod_cidrs", self.pod_cidrs)
        if self.detect_local_mode not in DETECT_LOCAL_MODES:
            raise InvalidValue(_OBJ, "detect_local_mode", self.detect_local_mode,
                               f"must be one of {', '.join(DETECT_LOCAL_MODES)}")
        for name, mode in (("pod_bridge_interface", "BridgeInterface"), ("pod_interface_name_prefix", "InterfaceNamePrefix")):
            value = getattr(self, name)
            if not isinstance(value, str) or (value and not _INTERFACE_NAME.match(value)):
                raise InvalidValue(_OBJ, name, value, "must be a Linux interface name (at most 15 characters)")
            if self.detect_local_mode == mode and not value:
                raise InvalidValue(_OBJ, name, value, f"must be set when detect_local_mode is {mode}")
        for name in ("masquerade_all", "localhost_nodeports", "nfacct", "random_fully", "conntrack_tcp_be_liberal"):
            _flag(name, getattr(self, name))
        bit = self.masquerade_bit
        if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 31:
            raise InvalidValue(_OBJ, "masquerade_bit", bit, "must be within the range [0, 31]")
        if self.masquerade_mark is not None:
            mark = self.masquerade_mark
            if not isinstance(mark, str) or not re.fullmatch(r"0x[0-9a-f]+", mark) or int(mark, 16) != 1 << bit:
                raise InvalidValue(_OBJ, "masquerade_mark", mark, f"must be 1 << masquerade_bit in hex, e.g. {1 << bit:#x}")
        addresses = _as_tuple(self.nodeport_addresses)
        if NODEPORT_ADDRESSES_PRIMARY in addresses:
            if len(addresses) != 1:
                raise InvalidValue(_OBJ, "nodeport_addresses", list(addresses),
                                   f"must be CIDRs, or '{NODEPORT_ADDRESSES_PRIMARY}' alone")
        else:
            for value in addresses:
                parse_network(value, obj=_OBJ, field="nodeport_addresses", strict=False)
        put("nodeport_addresses", addresses)
        if self.interface_addresses is not None:
            put("interface_addresses", tuple(parse_address(v, obj=_OBJ, field="interface_addresses")
                                             for v in _as_tuple(self.interface_addresses)))

    # -- derived values ------------------------------------------------------------------

    @property
    def mark(self) -> str:
        """The masquerade mark as kube-proxy writes it (Go ``%#08x`` of ``1 << masquerade_bit``)."""
        if self.masquerade_mark is not None:
            return self.masquerade_mark
        return f"0x{1 << self.masquerade_bit:08x}"

    def node_ip(self, family: int) -> IPAddress | None:
        """The node's primary IP of ``family`` (kube-proxy's ``nodeIP``), if it has one."""
        return next((ip for ip in self.node_ips if ip.version == family), None)

    def local_detector(self, family: int) -> LocalTrafficDetector:
        """The local-traffic detector kube-proxy builds for ``family`` from ``--detect-local-mode``."""
        if self.detect_local_mode == "BridgeInterface":
            return LocalTrafficDetector.by_bridge_interface(self.pod_bridge_interface)
        if self.detect_local_mode == "InterfaceNamePrefix":
            return LocalTrafficDetector.by_interface_prefix(self.pod_interface_name_prefix)
        cidrs = self.cluster_cidrs if self.detect_local_mode == "ClusterCIDR" else self.pod_cidrs
        cidr = next((c for c in cidrs if c.version == family), None)
        return NO_LOCAL_DETECTOR if cidr is None else LocalTrafficDetector.by_cidr(str(cidr))

    def nodeport_addresses_for(self, family: int) -> NodePortAddresses:
        """``--nodeport-addresses`` for ``family``; ``primary`` becomes the node IP as a /32 or /128."""
        if self.nodeport_addresses == (NODEPORT_ADDRESSES_PRIMARY,):
            cidrs = [ipaddress.ip_network(ip) for ip in self.node_ips if not ip.is_loopback]
            return NodePortAddresses.for_family(family, cidrs)
        return NodePortAddresses.for_family(family, self.nodeport_addresses)

    def localhost_nodeports_for(self, family: int) -> bool:
        """Whether NodePorts answer on 127.0.0.1: IPv4 only, and only if ``nodeport_addresses`` include it."""
        return family == 4 and self.localhost_nodeports and self.nodeport_addresses_for(4).contains_ipv4_loopback

    def all_interface_addresses(self) -> tuple[IPAddress, ...]:
        """``interface_addresses``, or by default the loopback addresses and ``node_ips``."""
        if self.interface_addresses is not None:
            return self.interface_addresses
        return _LOOPBACK + self.node_ips

    # -- construction from a cluster -------------------------------------------------------

    @classmethod
    def for_node(cls, cluster: Cluster, node: str, **flags: object) -> ProxierSettings:
        """The settings of ``node``'s kube-proxy in ``cluster``: its name and IPs, ``--cluster-cidr``
        set to the cluster's pod CIDRs (as kubeadm does), its podCIDRs; ``flags`` override any field.
        """
        obj = cluster.node(node)
        known = {f.name for f in fields(cls)} - {"node_name"}
        for name, value in flags.items():
            if name not in known:
                raise InvalidValue(f"kube-proxy on {node}", name, value,
                                   "must name a ProxierSettings field: " + ", ".join(sorted(known)))
        values: dict[str, object] = {
            "node_ips": obj.ips,
            "cluster_cidrs": cluster.network.pod_cidrs,
            "pod_cidrs": obj.pod_cidrs,
        }
        values.update(flags)
        return cls(node_name=obj.name, **values)
