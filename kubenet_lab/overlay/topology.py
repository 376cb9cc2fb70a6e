"""The cluster's network as Linux would hold it: namespaces, interfaces, routes, neighbours, FDB.

:func:`build_topology` turns a :class:`~kubenet_lab.cluster.Cluster` into the
state every network namespace would have once the CNI and its agent have done
their work: one namespace per pod, per node and per underlay router (ToRs and
a spine when the scenario has racks). It is pure data, the single source for

* the tables a notebook shows (``cluster.host("node-1").routes``, like ``ip route``),
* the packet walk (:mod:`kubenet_lab.datapath`), which simulates the kernel over it,
* the kernel lab, which creates the same namespaces and devices for real.

Naming scheme (what the real components call things):

=============  ======================================================================
namespace      interfaces
=============  ======================================================================
pod            ``eth0``, one end of a veth pair
node           ``eth0`` on the underlay; the host end of each pod's veth
               (``veth<8 hex>`` on flannel's bridge ``cni0``, ``cali<11 hex>`` for
               Calico, ``lxc<12 hex>`` for Cilium); the tunnel device of the CNI
ToR           ``rack`` port (the rack subnet's gateway, .1) and ``uplink`` to the spine
spine          ``<tor>`` port per ToR, on point-to-point /31 links from ``FABRIC_SUBNET``,
               and ``external`` towards the client outside the cluster
external       ``eth0``: a client outside the cluster (see below)
=============  ======================================================================

Per CNI, what the agent programs on each node for every *remote* node
(datapath.md §1, §5 anchor 3):

* flannel VXLAN: ``<podCIDR> via <podCIDR .0> dev flannel.1 onlink``, a
  PERMANENT neighbour ``<podCIDR .0> → <remote VtepMAC>`` and an FDB entry
  ``<VtepMAC> dst <remote node IP>``; with ``DirectRouting`` and a shared
  subnet, ``<podCIDR> via <node IP> dev eth0`` instead.
* Calico VXLAN: the same three entries per remote *block*, through the remote
  ``vxlan.calico`` address; IP-in-IP: ``<block> via <node IP> dev tunl0 proto
  bird onlink``; BGP only: ``<block> via <node IP> dev eth0 proto bird``.
* Cilium: ``<podCIDR> via <cilium_host> dev cilium_host mtu <route MTU>`` and
  an eBPF tunnel map entry ``<podCIDR> → <node IP>``, no FDB.
* native routing: ``<podCIDR> via <node IP> dev eth0``.

**Clusters with a BGP design.** When the scenario names a BGP design
(``spec.bgp.design``), the routes BGP installs come from the converged
:class:`~kubenet_lab.bgp.fabric.Fabric` of that design, built once per
topology on first use (:attr:`Topology.fabric`): each ToR's and the spine's
(``proto bgp``, as FRR labels them), and on nodes whose pods are routed
natively (``calico-bgp``, ``native-routing``) the node's own (``proto bird``,
as Calico's BIRD labels them). A prefix BGP reaches over several next hops
becomes one multipath route, and a LoadBalancer VIP announced by several
nodes (:func:`~kubenet_lab.bgp.fabric.load_balancer_announcements`) an ECMP
/32. A BGP route for a prefix the namespace has as a connected subnet is left
out, as BIRD's ``direct`` protocol (preference 240) beats BGP (100).

On an overlay whose CNI runs no BGP daemon of its own (flannel or Calico
VXLAN, Cilium in tunnel mode) the nodes announce no pod prefix (the fabric's
``announce_pods`` default, see :mod:`kubenet_lab.bgp.fabric`): the routers
learn only the LoadBalancer /32s (MetalLB, or Cilium's BGP control plane
advertising Service IPs). Calico IP-in-IP's BIRD does announce its blocks, so
there the routers learn them too. Either way the nodes keep the tunnel routes
their agent programs; a MetalLB speaker installs nothing it hears.

Without ToR speakers (no BGP design, or a full mesh or node reflectors in
racks) the ToRs and spine get the routes the pod prefixes imply, as the
underlay's own routing would, but only where pods are routed natively: with
VXLAN CrossSubnet or flannel's DirectRouting, pods of one subnet talk directly
over it and across subnets the packets are encapsulated between node
addresses, so the underlay knows the node subnets and nothing else (Calico
VXLAN runs no BIRD to tell it more).

**The external client** (namespace :data:`EXTERNAL`, ``"external"``, in
clusters with a BGP design) stands for a user outside the cluster, to trace
from (``cluster.trace("external", ...)``).
With racks it hangs off the spine on the last /31 of ``FABRIC_SUBNET``
(172.31.255.255, the spine .254), its default route pointing at the spine,
like the Internet behind a border leaf. On a single segment it is the
router MetalLB users peer their nodes with (not the nodes' default gateway):
it holds the highest free address of the node subnet, peers eBGP (AS
:data:`EXTERNAL_ASN`) with every node and installs what they announce.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/two-rack-bgp.yaml")
>>> t = c.topology()
>>> t.external_address, str(t["external"].routes[0])
(IPv4Address('172.31.255.255'), 'default via 172.31.255.254 dev eth0')
>>> [str(r) for r in t["tor-1"].routes if r.proto == "bgp"][:2]
['10.244.56.192/26 via 172.31.255.0 dev uplink proto bgp', '10.244.148.0/26 via 172.31.255.0 dev uplink proto bgp']
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..addresses import IPAddress, IPNetwork
from ..network import DEFAULT_NODE_SUBNET
from ..network import FABRIC_SUBNET as _FABRIC
from .entries import FdbEntry, Link, Neighbor, Route, TunnelMapEntry, derived_mac
from .modes import DatapathMode

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["Interface", "Namespace", "Topology", "build_topology", "FABRIC_SUBNET", "CALICO_GATEWAY",
           "CALICO_HOST_MAC", "UNDERLAY_DEV", "BRIDGE", "CILIUM_HOST", "EXTERNAL", "EXTERNAL_ASN", "EXTERNAL_LINK",
           "pod_namespace", "veth_name"]

FABRIC_SUBNET = ipaddress.ip_network(_FABRIC)
#: The client outside the cluster, and the AS it peers from on a single segment (a private AS, RFC 6996).
EXTERNAL = "external"
EXTERNAL_ASN = 65000
#: With racks, the client's link to the spine: the last /31 of FABRIC_SUBNET (spine .254, client .255).
EXTERNAL_LINK = list(FABRIC_SUBNET.subnets(new_prefix=31))[-1]
#: Route protocols a BGP daemon labels its kernel routes with: Calico's BIRD, and FRR.
BGP_PROTOS = ("bird", "bgp")
# Calico pods route everything via this link-local next hop, answered by proxy ARP on the host's
# cali veth, whose MAC Calico fixes to ee:ee:ee:ee:ee:ee (cni-plugin: dataplane/linux).
CALICO_GATEWAY = ipaddress.ip_address("169.254.1.1")
CALICO_HOST_MAC = "ee:ee:ee:ee:ee:ee"
UNDERLAY_DEV = "eth0"
BRIDGE = "cni0"
CILIUM_HOST = "cilium_host"
MTU_JUMBO_LIMIT = 65535


@dataclass(frozen=True)
class Interface:
    """A network device in one namespace, with what ``ip -d link`` and ``ip addr`` would show."""

    name: str
    kind: str
    mac: str | None
    mtu: int
    addresses: tuple = ()
    segment: str | None = None
    master: str | None = None
    peer: tuple[str, str] | None = None
    proxy_arp: bool = False
    vni: int | None = None
    port: int | None = None
    local: IPAddress | None = None
    flow_based: bool = False

    def link(self) -> Link:
        details = []
        if self.kind in ("vxlan", "geneve"):
            details.append(f"id {'external' if self.flow_based else self.vni} dstport {self.port}")
            if self.local is not None:
                details.append(f"local {self.local} dev {UNDERLAY_DEV} nolearning")
        if self.master:
            details.append(f"master {self.master}")
        if self.peer:
            details.append(f"peer {self.peer[1]} in {self.peer[0]}")
        if self.proxy_arp:
            details.append("proxy_arp")
        return Link(self.name, self.kind, self.mac, self.mtu, tuple(str(a) for a in self.addresses), ", ".join(details))

    def has_address(self, ip: IPAddress) -> bool:
        return any(a.ip == ip for a in self.addresses)


@dataclass(frozen=True)
class Namespace:
    """One network namespace: a pod, a node's root namespace, or an underlay router."""

    name: str
    kind: str
    interfaces: dict[str, Interface]
    routes: tuple[Route, ...]
    neighbors: tuple[Neighbor, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    tunnel_map: tuple[TunnelMapEntry, ...] = ()
    masquerade: tuple[tuple[IPNetwork, tuple[IPNetwork, ...], str], ...] = ()
    node: str | None = None
    bgp_speaker: str | None = None     # the Fabric router whose FIB gave this namespace its BGP routes

    @property
    def forwarding(self) -> bool:
        """Nodes and routers forward (net.ipv4.ip_forward=1); pods do not."""
        return self.kind != "pod"

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(i.link() for i in self.interfaces.values())

    def local_addresses(self) -> set[IPAddress]:
        return {a.ip for i in self.interfaces.values() for a in i.addresses}

    def __str__(self) -> str:
        sections = [("ip -br link / addr", self.links), ("ip route", self.routes), ("ip neigh (permanent)", self.neighbors),
                    ("bridge fdb", self.fdb), ("cilium bpf tunnel list", self.tunnel_map)]
        lines = [f"# {self.kind} {self.name}"]
        for title, rows in sections:
            if rows:
                lines.append(f"$ {title}")
                lines.extend(str(r) for r in rows)
        return "\n".join(lines)


class Topology:
    """Every namespace of the cluster (built on first use), and which interfaces share an L2 segment."""

    def __init__(self, builder: _Builder):
        self._builder = builder
        self._cache: dict[str, Namespace] = {}
        self._interfaces: dict[str, dict[str, Interface]] = {}
        self._ports: dict[str, Interface] = {}
        self.mode: DatapathMode = builder.mode
        self.segments: dict[str, tuple[tuple[str, str], ...]] = {k: tuple(v) for k, v in builder.segments.items()}
        self.kinds: dict[str, str] = dict(builder.kinds)

    @property
    def fabric(self):
        """The converged :class:`~kubenet_lab.bgp.fabric.Fabric` the BGP routes come from (None
        when the cluster has no BGP design); built on first use, once per topology."""
        return self._builder.fabric()

    @property
    def external_address(self) -> IPAddress | None:
        """The address of the :data:`EXTERNAL` client (None without a BGP design, or when a node
        is called ``external``)."""
        return self._builder.external_address if self.kinds.get(EXTERNAL) == "router" else None

    def __getitem__(self, name: str) -> Namespace:
        namespace = self._cache.get(name)
        if namespace is None:
            namespace = self._cache[name] = self._builder.build(name)
        return namespace

    def __contains__(self, name: str) -> bool:
        return name in self.kinds

    def __iter__(self):
        return iter(self.kinds)

    def interfaces(self, name: str) -> dict[str, Interface]:
        """A namespace's interfaces, without building its tables (cheap, for lookups across the cluster)."""
        namespace = self._cache.get(name)
        if namespace is not None:
            return namespace.interfaces
        interfaces = self._interfaces.get(name)
        if interfaces is None:
            interfaces = self._interfaces[name] = self._builder.interfaces(name)
        return interfaces

    def port(self, namespace: str, interface: str) -> Interface:
        """One interface; a node's eth0 is had without building the node's other devices."""
        if self.kinds.get(namespace) == "node" and interface == "eth0" and namespace not in self._cache:
            port = self._ports.get(namespace)
            if port is None:
                port = self._ports[namespace] = self._builder.underlay_port(namespace)
            return port
        return self.interfaces(namespace)[interface]

    def segment_of(self, namespace: str, interface: str) -> tuple[tuple[str, str], ...]:
        name = self.port(namespace, interface).segment
        return self.segments.get(name, ()) if name else ()


class _RemoteEntries(NamedTuple):
    """What the agents program for one node on every other node."""

    name: str
    rack: str | None
    prefixes: tuple
    direct_routes: tuple[Route, ...]
    tunnel_routes: tuple[Route, ...]
    neighbor: Neighbor | None
    fdb: FdbEntry | None
    tunnel_map: tuple[TunnelMapEntry, ...]


def pod_namespace(key: str) -> str:
    """Namespace name of a pod: ``pod:<namespace>/<name>``."""
    return f"pod:{key}"


def veth_name(cni_family: str, pod_key: str) -> str:
    """The host end of a pod's veth, named as each CNI names it.

    Calico: ``cali`` + the first 11 hex digits of SHA-1 of ``<namespace>.<pod>``
    (libcalico-go ``VethNameForWorkload``), so it is exact. The bridge plugin
    and Cilium use random names; here they are derived from the pod's key.

    >>> veth_name("calico", "default/web-1")
    'cali0761ccbeace'
    """
    namespace, name = pod_key.split("/", 1)
    if cni_family == "calico":
        return "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]
    digest = hashlib.sha256(pod_key.encode()).hexdigest()
    return ("lxc" + digest[:12]) if cni_family == "cilium" else ("veth" + digest[:8])


def _iface(ip: IPAddress, prefixlen: int):
    return (ipaddress.IPv4Interface if ip.version == 4 else ipaddress.IPv6Interface)((ip, prefixlen))


class _Builder:
    """Computes the namespaces of one cluster, each on first use.

    Shared facts (every node's address, prefixes, VTEP address and MAC, the L2
    segments) are gathered once, in O(nodes + pods); a node's own tables, which
    hold one entry per *other* node, are built only when that node is asked
    for, so a trace across a 1,000-node cluster builds the few namespaces it
    crosses, not a million table rows.
    """

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.net = cluster.network
        self.mode = self.net.datapath
        self.family = ("calico" if self.net.cni.startswith("calico") else
                       "cilium" if self.net.cni.startswith("cilium") else "bridge")
        self.pod_mtu = self.net.pod_mtu
        self.tunnel_mtu = self.net.tunnel_device_mtu
        self.nodes = {n.name: n for n in cluster.nodes}
        self.prefixes = {n.name: list(n.pod_cidrs) or cluster.blocks(n.name) for n in cluster.nodes}
        self.pods_by_node: dict[str, list] = {name: [] for name in self.nodes}
        for pod in cluster.pods:
            if pod.node is not None and not pod.host_network and pod.ips:
                self.pods_by_node[pod.node].append(pod)
        self.links = list(FABRIC_SUBNET.subnets(new_prefix=31))[: len(self.net.racks)]
        self.segments: dict[str, list[tuple[str, str]]] = {}
        self.kinds: dict[str, str] = {}
        self._macs: dict[tuple[str, ...], str] = {}
        self._remote_entries: list[_RemoteEntries] | None = None
        self._fabric = None
        for name in self.nodes:
            self._register(name, "node", [(UNDERLAY_DEV, self.underlay_segment(name))])
            if self.family == "bridge" and self.nodes[name].pod_cidrs:
                self._register(name, "node", [(BRIDGE, f"bridge:{name}")])
            for pod in self.pods_by_node[name]:
                host_if = veth_name(self.family, pod.key)
                segment = self.pod_segment(pod, host_if)
                self._register(pod_namespace(pod.key), "pod", [("eth0", segment)])
                if self.family != "bridge":
                    self._register(name, "node", [(host_if, segment)])
        for i, rack in enumerate(self.net.racks):
            self._register(rack.tor, "router", [("rack", f"underlay:{rack.name}"), ("uplink", f"fabric:{rack.tor}")])
            self._register("spine", "router", [(rack.tor, f"fabric:{rack.tor}")])
        self.external_address = None
        if self.net.bgp_design != "none" and EXTERNAL not in self.kinds:
            if self.net.racks:
                self.external_address = EXTERNAL_LINK.network_address + 1
                self._register("spine", "router", [(EXTERNAL, f"fabric:{EXTERNAL}")])
                self._register(EXTERNAL, "router", [(UNDERLAY_DEV, f"fabric:{EXTERNAL}")])
            else:
                self.external_address = self.external_router_address()
                self._register(EXTERNAL, "router", [(UNDERLAY_DEV, "underlay")])

    def _register(self, ns: str, kind: str, ports: list[tuple[str, str]]) -> None:
        self.kinds[ns] = kind
        for ifname, segment in ports:
            self.segments.setdefault(segment, []).append((ns, ifname))

    # -- shared facts ------------------------------------------------------------------

    def mac(self, *parts: str) -> str:
        mac = self._macs.get(parts)
        if mac is None:
            mac = self._macs[parts] = derived_mac(self.net.name, *parts)
        return mac

    def underlay_segment(self, node: str) -> str:
        rack = self.nodes[node].rack
        return f"underlay:{rack}" if rack else "underlay"

    def pod_segment(self, pod, host_if: str) -> str:
        return f"bridge:{pod.node}" if self.family == "bridge" else f"veth:{pod.node}:{host_if}"

    def tunnel_address(self, node: str) -> IPAddress | None:
        """The address of the node's tunnel device (and Cilium's cilium_host), as each agent picks it."""
        assigned = self.cluster.tunnel_addresses.get(node)
        if assigned is not None:
            return assigned
        prefixes = self.prefixes[node]
        if not prefixes:
            return None
        if self.net.cni == "flannel-vxlan":
            return prefixes[0].network_address  # flannel.1 holds the podCIDR's network address as /32
        return prefixes[0].network_address + 1  # the podCIDR's .1, which host-local never hands to a pod

    @property
    def calico_proto(self) -> str | None:
        """Who installs Calico's routes: BIRD (``proto bird``) with IP-in-IP or plain BGP, Felix
        (protocol number 80) in VXLAN mode, which runs without BIRD; None for other CNIs."""
        if self.family != "calico":
            return None
        return "80" if self.net.cni == "calico-vxlan" else "bird"

    def remote_entries(self) -> list[_RemoteEntries]:
        """Per node, once: what every *other* node's agent programs for it (routes, neighbour, FDB)."""
        if self._remote_entries is None:
            mode, device = self.mode, self.mode.device
            proto = self.calico_proto
            vxlan_proto = "80" if self.family == "calico" else None  # Felix's route protocol number
            entries = []
            for name, node in self.nodes.items():
                prefixes, vtep = tuple(self.prefixes[name]), self.tunnel_address(name)
                direct = tuple(Route(prefix, node.ip, UNDERLAY_DEV, proto) for prefix in prefixes)
                neighbor = fdb = None
                tunnel_map: tuple[TunnelMapEntry, ...] = ()
                if mode.flow_based:
                    tunnel, tunnel_map = (), tuple(TunnelMapEntry(prefix, node.ip) for prefix in prefixes)
                elif mode.encapsulation == "ipip":
                    tunnel = tuple(Route(prefix, node.ip, device, "bird", onlink=True) for prefix in prefixes)
                elif mode.encapsulation is not None:
                    mac = self.mac(name, device)
                    tunnel = tuple(Route(prefix, vtep, device, vxlan_proto, None, None, True) for prefix in prefixes)
                    neighbor, fdb = Neighbor(vtep, device, mac), FdbEntry(mac, device, node.ip)
                else:
                    tunnel = ()
                entries.append(_RemoteEntries(name, node.rack, prefixes, direct, tunnel, neighbor, fdb, tunnel_map))
            self._remote_entries = entries
            self._node_index = {e.name: i for i, e in enumerate(entries)}
            self._all_tunnel_routes = [r for e in entries for r in e.tunnel_routes]
            offsets = [0]
            for e in entries:
                offsets.append(offsets[-1] + len(e.tunnel_routes))
            self._route_offsets = offsets
            self._all_neighbors = [e.neighbor for e in entries]
            self._all_fdb = [e.fdb for e in entries]
        return self._remote_entries

    def external_router_address(self) -> IPAddress:
        """On a single segment: its highest host address that is neither a node's nor the gateway's."""
        first = next(iter(self.nodes.values()), None)
        subnet = self.segment_subnet(first.ip) if first else ipaddress.ip_network(DEFAULT_NODE_SUBNET)
        taken = {ip for n in self.nodes.values() for ip in n.ips}
        if first is not None:
            taken.add(self.gateway(first.name))
        ip = subnet.broadcast_address - 1
        while ip in taken:      # at most len(taken) steps down
            ip -= 1
        return ip

    # -- BGP ------------------------------------------------------------------------------

    @property
    def routed_by_bgp(self) -> bool:
        """A BGP design carries the pod prefixes across the underlay (no encapsulation at all)."""
        return self.net.bgp_design != "none" and self.natively_routed_fabric()

    def fabric(self):
        """The design's fabric, converged (computed once, on first use); None without a BGP design."""
        if self._fabric is None and self.net.bgp_design != "none":
            from ..bgp.fabric import Fabric

            peers = []
            if not self.net.racks and self.external_address is not None:
                peers = [(self.external_address, EXTERNAL_ASN, EXTERNAL)]
            fabric = Fabric.from_cluster(self.cluster, external_peers=peers)
            fabric.converge()
            self._fabric = fabric
        return self._fabric

    def bgp_routes(self, router: str, connected) -> tuple[list[Route], str | None]:
        """(routes, speaker) for what ``router``'s BGP daemon installs, from the fabric's FIB; ([],
        None) when the fabric has no such router. Prefixes of connected subnets stay connected."""
        fabric = self.fabric()
        if fabric is None or router not in fabric.speakers:
            return [], None
        skip = set(connected)
        return [Route.multipath(entry.prefix, entry.nexthops, entry.proto)
                for entry in fabric.fib(router) if entry.prefix not in skip], router

    def same_subnet(self, a: str, b: str) -> bool:
        return self.nodes[a].rack == self.nodes[b].rack

    def segment_subnet(self, ip: IPAddress) -> IPNetwork:
        if self.net.node_subnet is not None and ip in self.net.node_subnet:
            return self.net.node_subnet
        default = ipaddress.ip_network(DEFAULT_NODE_SUBNET)
        return default if ip in default else ipaddress.ip_network(f"{ip}/24", strict=False)

    def masquerade_rule(self, cidr: IPNetwork) -> str:
        if self.net.cni == "flannel-vxlan":
            return (f'-A FLANNEL-POSTRTG -s {cidr} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" '
                    "-j MASQUERADE --random-fully")
        if self.family == "calico":
            return (f"-A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src -m set ! --match-set "
                    f"cali40all-ipam-pools dst -j MASQUERADE --random-fully   (IPPool {cidr} natOutgoing)")
        if self.family == "cilium":
            return f"-A CILIUM_POST_nat -s {cidr} ! -d {cidr} ! -o cilium_+ -j MASQUERADE   (enable-ipv4-masquerade)"
        return f"-A POSTROUTING -s {cidr} ! -d {cidr} -j MASQUERADE"

    # -- one namespace each ------------------------------------------------------------

    def build(self, name: str) -> Namespace:
        kind = self.kinds[name]
        if kind == "pod":
            return self.pod(self.cluster.pod(name[len("pod:"):]))
        if kind == "node":
            return self.node(name)
        if name == EXTERNAL:
            return self.external()
        return self.spine() if name == "spine" else self.tor(next(r for r in self.net.racks if r.tor == name))

    def pod(self, pod) -> Namespace:
        host_if = veth_name(self.family, pod.key)
        segment = self.pod_segment(pod, host_if)
        ip, ns = pod.ips[0], pod_namespace(pod.key)
        mac = self.mac(pod.key, "eth0")
        if self.family == "bridge":
            cidr = next(c for c in self.nodes[pod.node].pod_cidrs if ip in c)
            eth0 = Interface("eth0", "veth", mac, self.pod_mtu, (_iface(ip, cidr.prefixlen),), segment=segment,
                             peer=(pod.node, host_if))
            routes = (Route("default", via=cidr.network_address + 1, dev="eth0"),
                      Route(cidr, dev="eth0", proto="kernel", scope="link", src=ip))
        elif self.family == "calico":
            eth0 = Interface("eth0", "veth", mac, self.pod_mtu, (_iface(ip, 32),), segment=segment,
                             peer=(pod.node, host_if))
            routes = (Route("default", via=CALICO_GATEWAY, dev="eth0"),
                      Route(ipaddress.ip_network(f"{CALICO_GATEWAY}/32"), dev="eth0", scope="link"))
        else:  # Cilium keeps the veth at the host MTU and puts the tunnel's MTU on the pod's routes
            router = self.tunnel_address(pod.node)
            eth0 = Interface("eth0", "veth", mac, self.net.mtu, (_iface(ip, 32),), segment=segment,
                             peer=(pod.node, host_if))
            routes = (Route("default", via=router, dev="eth0", mtu=self.pod_mtu if self.mode.encapsulation else None),
                      Route(ipaddress.ip_network(f"{router}/32"), dev="eth0", scope="link"))
        return Namespace(ns, "pod", {"eth0": eth0}, routes, node=pod.node)

    def gateway(self, node: str) -> IPAddress:
        """A node's default gateway: its ToR (the rack subnet's .1), or on a flat segment the segment's
        router, outside the lab, at .1 (or the last host address when a node holds .1)."""
        rack = self.net.rack_of(node)
        if rack:
            return rack.subnet.network_address + 1
        subnet = self.segment_subnet(self.nodes[node].ip)
        first = subnet.network_address + 1
        return first if all(n.ip != first for n in self.nodes.values()) else subnet.broadcast_address - 1

    def underlay_port(self, node: str) -> Interface:
        """A node's eth0 alone (what ARP on the underlay needs), without its other devices."""
        ip = self.nodes[node].ip
        rack = self.net.rack_of(node)
        subnet = rack.subnet if rack else self.segment_subnet(ip)
        return Interface(UNDERLAY_DEV, "ethernet", self.mac(node, UNDERLAY_DEV), self.net.mtu,
                         (_iface(ip, subnet.prefixlen),), segment=self.underlay_segment(node))

    def interfaces(self, name: str) -> dict[str, Interface]:
        """A namespace's interfaces alone: cheap, for ARP and bridge lookups across the cluster."""
        kind = self.kinds[name]
        if kind == "pod":
            return self.pod(self.cluster.pod(name[len("pod:"):])).interfaces
        if kind == "router":
            return self.build(name).interfaces
        return self.node_interfaces(name)[0]

    def node_interfaces(self, name: str) -> tuple[dict[str, Interface], list[Route]]:
        """A node's devices, and the routes that come with them (connected, pods, default)."""
        node, mode = self.nodes[name], self.mode
        rack = self.net.rack_of(name)
        subnet = rack.subnet if rack else self.segment_subnet(node.ip)
        interfaces = {UNDERLAY_DEV: self.underlay_port(name)}
        routes = [Route("default", via=self.gateway(name), dev=UNDERLAY_DEV),
                  Route(subnet, dev=UNDERLAY_DEV, proto="kernel", scope="link", src=node.ip)]
        router = self.tunnel_address(name)
        # the pods' side: bridge cni0, or one veth (and /32 route) per pod
        if self.family == "bridge":
            for cidr in node.pod_cidrs[:1]:
                gateway = cidr.network_address + 1
                interfaces[BRIDGE] = Interface(BRIDGE, "bridge", self.mac(name, BRIDGE), self.pod_mtu,
                                               (_iface(gateway, cidr.prefixlen),), segment=f"bridge:{name}")
                routes.append(Route(cidr, dev=BRIDGE, proto="kernel", scope="link", src=gateway))
        elif self.family == "calico":
            routes.extend(Route(block, proto=self.calico_proto, type="blackhole") for block in self.prefixes[name])
        elif router is not None:
            interfaces[CILIUM_HOST] = Interface(CILIUM_HOST, "veth", self.mac(name, CILIUM_HOST), self.net.mtu,
                                                (_iface(router, 32),))
            routes.extend(Route(cidr, via=router, dev=CILIUM_HOST, proto="kernel", src=router)
                          for cidr in self.prefixes[name])
        for pod in self.pods_by_node[name]:
            host_if = veth_name(self.family, pod.key)
            if self.family == "bridge":
                interfaces[host_if] = Interface(host_if, "veth", self.mac(pod.key, host_if), self.pod_mtu,
                                                master=BRIDGE, peer=(pod_namespace(pod.key), "eth0"))
                continue
            calico = self.family == "calico"
            interfaces[host_if] = Interface(host_if, "veth", CALICO_HOST_MAC if calico else self.mac(pod.key, host_if),
                                            self.pod_mtu if calico else self.net.mtu,
                                            segment=self.pod_segment(pod, host_if),
                                            peer=(pod_namespace(pod.key), "eth0"), proxy_arp=True)
            routes.append(Route(ipaddress.ip_network(f"{pod.ips[0]}/32"), dev=host_if, scope="link"))
        # the tunnel device
        if mode.encapsulation == "ipip":
            interfaces[mode.device] = Interface(mode.device, "ipip", None, self.tunnel_mtu,
                                                (_iface(router, 32),) if router else ())
        elif mode.encapsulation is not None:
            interfaces[mode.device] = Interface(
                mode.device, mode.encapsulation, None if mode.flow_based else self.mac(name, mode.device),
                self.net.mtu if mode.flow_based else self.tunnel_mtu,
                () if mode.flow_based or router is None else (_iface(router, 32),),
                vni=mode.vni, port=mode.udp_port, local=None if mode.flow_based else node.ip,
                flow_based=mode.flow_based)
        return interfaces, routes

    def node(self, name: str) -> Namespace:
        mode = self.mode
        interfaces, routes = self.node_interfaces(name)
        router = self.tunnel_address(name)
        # what the agent programs for every other node: the same entries on every node but the one
        # describing itself, so they are built once per cluster and shared (they are immutable)
        neighbors: list[Neighbor] = []
        fdb: list[FdbEntry] = []
        tunnel_map: list[TunnelMapEntry] = []
        entries = self.remote_entries()
        rack = self.nodes[name].rack
        speaker = None
        if self.routed_by_bgp:
            subnet = self.net.rack_of(name).subnet if self.net.rack_of(name) else self.segment_subnet(self.nodes[name].ip)
            learnt, speaker = self.bgp_routes(name, [subnet])
            routes.extend(learnt)
        elif mode.flow_based:
            for other in entries:
                if other.name != name:
                    routes.extend(Route(prefix, router, CILIUM_HOST, "kernel", None, router, False, self.pod_mtu)
                                  for prefix in other.prefixes)
                    tunnel_map.extend(other.tunnel_map)
        elif mode.encapsulation is not None and not mode.same_subnet_direct:
            index = self._node_index[name]
            start, end = self._route_offsets[index], self._route_offsets[index + 1]
            routes.extend(self._all_tunnel_routes[:start])
            routes.extend(self._all_tunnel_routes[end:])
            if entries[index].neighbor is not None:
                neighbors = self._all_neighbors[:index] + self._all_neighbors[index + 1:]
                fdb = self._all_fdb[:index] + self._all_fdb[index + 1:]
        else:
            for other in entries:
                if other.name == name:
                    continue
                if other.rack == rack and (mode.encapsulation is None or mode.same_subnet_direct):
                    routes.extend(other.direct_routes)
                elif mode.encapsulation is not None:  # across racks natively routed: the ToR carries it
                    routes.extend(other.tunnel_routes)
                    if other.neighbor is not None:
                        neighbors.append(other.neighbor)
                        fdb.append(other.fdb)
        masquerade = tuple((cidr, (cidr, ipaddress.ip_network("224.0.0.0/4")), self.masquerade_rule(cidr))
                           for cidr in self.net.pod_cidrs[:1])
        return Namespace(name, "node", interfaces, tuple(routes), tuple(neighbors), tuple(fdb), tuple(tunnel_map),
                         masquerade, node=name, bgp_speaker=speaker)

    def natively_routed_fabric(self) -> bool:
        """Pod packets cross the underlay unencapsulated, so its routers need the pod prefixes."""
        return self.mode.encapsulation is None

    def tor(self, rack) -> Namespace:
        i = self.net.racks.index(rack)
        link = self.links[i]
        spine_ip, tor_ip = link.network_address, link.network_address + 1
        gateway = rack.subnet.network_address + 1
        interfaces = {
            "rack": Interface("rack", "ethernet", self.mac(rack.tor, "rack"), self.net.mtu,
                              (_iface(gateway, rack.subnet.prefixlen),), segment=f"underlay:{rack.name}"),
            "uplink": Interface("uplink", "ethernet", self.mac(rack.tor, "uplink"), self.net.mtu,
                                (_iface(tor_ip, 31),), segment=f"fabric:{rack.tor}"),
        }
        routes = [Route("default", via=spine_ip, dev="uplink"),
                  Route(rack.subnet, dev="rack", proto="kernel", scope="link", src=gateway),
                  Route(link, dev="uplink", proto="kernel", scope="link", src=tor_ip)]
        learnt, speaker = self.bgp_routes(rack.tor, [rack.subnet, link])
        if speaker is not None:
            routes.extend(learnt)
        elif self.natively_routed_fabric():
            routes.extend(Route(prefix, via=self.nodes[n].ip, dev="rack", proto="bgp")
                          for n in rack.nodes if n in self.nodes for prefix in self.prefixes[n])
        return Namespace(rack.tor, "router", interfaces, tuple(routes), bgp_speaker=speaker)

    def spine(self) -> Namespace:
        interfaces, routes = {}, []
        learnt, speaker = self.bgp_routes("spine", self.links)
        for rack, link in zip(self.net.racks, self.links):
            spine_ip, tor_ip = link.network_address, link.network_address + 1
            interfaces[rack.tor] = Interface(rack.tor, "ethernet", self.mac("spine", rack.tor), self.net.mtu,
                                             (_iface(spine_ip, 31),), segment=f"fabric:{rack.tor}")
            routes.append(Route(link, dev=rack.tor, proto="kernel", scope="link", src=spine_ip))
            if speaker is None:
                routes.append(Route(rack.subnet, via=tor_ip, dev=rack.tor, proto="bgp"))
            if speaker is None and self.natively_routed_fabric():
                routes.extend(Route(prefix, via=tor_ip, dev=rack.tor, proto="bgp")
                              for n in rack.nodes if n in self.nodes for prefix in self.prefixes[n])
        if self.external_address is not None:
            spine_ip = EXTERNAL_LINK.network_address
            interfaces[EXTERNAL] = Interface(EXTERNAL, "ethernet", self.mac("spine", EXTERNAL), self.net.mtu,
                                             (_iface(spine_ip, 31),), segment=f"fabric:{EXTERNAL}")
            routes.append(Route(EXTERNAL_LINK, dev=EXTERNAL, proto="kernel", scope="link", src=spine_ip))
        routes.extend(learnt)
        return Namespace("spine", "router", interfaces, tuple(routes), bgp_speaker=speaker)

    def external(self) -> Namespace:
        """The client outside the cluster: behind the spine, or the router on the nodes' segment."""
        ip = self.external_address
        if self.net.racks:
            eth0 = Interface(UNDERLAY_DEV, "ethernet", self.mac(EXTERNAL, UNDERLAY_DEV), self.net.mtu,
                             (_iface(ip, 31),), segment=f"fabric:{EXTERNAL}")
            routes = [Route("default", via=EXTERNAL_LINK.network_address, dev=UNDERLAY_DEV),
                      Route(EXTERNAL_LINK, dev=UNDERLAY_DEV, proto="kernel", scope="link", src=ip)]
            return Namespace(EXTERNAL, "router", {UNDERLAY_DEV: eth0}, tuple(routes))
        subnet = self.segment_subnet(ip)
        eth0 = Interface(UNDERLAY_DEV, "ethernet", self.mac(EXTERNAL, UNDERLAY_DEV), self.net.mtu,
                         (_iface(ip, subnet.prefixlen),), segment="underlay")
        routes = [Route(subnet, dev=UNDERLAY_DEV, proto="kernel", scope="link", src=ip)]
        learnt, speaker = self.bgp_routes(EXTERNAL, [subnet])
        return Namespace(EXTERNAL, "router", {UNDERLAY_DEV: eth0}, tuple(routes + learnt), bgp_speaker=speaker)


def build_topology(cluster: Cluster) -> Topology:
    """Every namespace, interface and table entry of the cluster's network."""
    return Topology(_Builder(cluster))
