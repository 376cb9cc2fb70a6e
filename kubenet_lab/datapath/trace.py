"""The packet walk: one packet, every hop, the table entry that decided each.

:func:`trace` simulates what the Linux kernel does with a packet in each
network namespace of the cluster's :class:`~kubenet_lab.overlay.topology.Topology`:

1. **local delivery** when the destination is one of the namespace's own
   addresses (on a node, a UDP datagram to the tunnel port is handed to the
   VXLAN/Geneve device and decapsulated);
2. otherwise a **route lookup**, longest prefix first; a node or router that
   forwards decrements the TTL, a pod never forwards; a multipath (ECMP) route
   gives each flow one next hop by Linux's default L3 hash of source and
   destination (:meth:`~kubenet_lab.overlay.entries.Route.select`), and a route
   BGP installed names the best path behind it (router, decision step);
3. the **egress device** decides what follows: a tunnel device encapsulates
   (neighbour entry → FDB entry → outer destination for VXLAN, the route's
   onlink next hop for IP-in-IP, Cilium's tunnel map for its flow-based
   devices) and the outer packet is routed in turn; an Ethernet-like device
   resolves the next hop's MAC (a PERMANENT neighbour, or ARP on the segment);
   a bridge forwards by destination MAC;
4. the **MTU** of the egress device is checked: too big with DF set, the
   packet is dropped and an ICMP "fragmentation needed" goes back from *this*
   namespace; without DF it leaves in fragments;
5. on a node, traffic from the pod network to anywhere outside it is
   **masqueraded** by the CNI's POSTROUTING rule;
   before all of this, a packet entering a node's stack (from a pod, from
   another node, decapsulated, or sent by the node itself) crosses
   **kube-proxy's rules** (:mod:`kubenet_lab.kubeproxy.netfilter`, or
   :mod:`kubenet_lab.kubeproxy.nftwalk` when ``kubeProxy.mode`` is ``nftables``): a packet
   to a Service is DNATed to one endpoint (hop ``dnat``), marked traffic is
   masqueraded at POSTROUTING (hop ``masquerade``), and a Service without
   endpoints is rejected by its filter rule (hop ``drop``);
6. **transmit**: the frame crosses the link to the interface that owns its
   destination MAC, and the walk goes on there.

Each step is a :class:`Hop`; the ones that put the packet on a link are
``on_wire`` and are what :meth:`Trace.to_pcap` writes.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> t = c.trace("web-1", "web-2", proto="tcp", dport=8080)
>>> t.outcome, [h.action for h in t.hops if h.on_wire]
('delivered', ['transmit', 'transmit', 'transmit'])

A Service's ClusterIP: node-1's kube-proxy rules pick an endpoint (forced
here; by default a seeded draw) and the walk goes on to that pod:

>>> t = trace(c, "client", "web", proto="tcp", dport=80, endpoint="web-2")
>>> dnat = next(h for h in t.hops if h.action == "dnat")
>>> dnat.namespace, dnat.detail.split(" (")[0]
('node-1', '10.109.131.193:80 -> 10.244.1.2:8080')
>>> t.outcome, t.hops[-1].namespace, [str(p) for p in t.service_choice.probabilities.values()]
('delivered', 'pod:default/web-2', ['3333333333/10000000000', '6666666667/20000000000', '6666666667/20000000000'])
"""

from __future__ import annotations

import html
import ipaddress
import weakref
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..addresses import IPAddress, parse_port
from ..errors import InvalidValue, NotFound
from ..kubeproxy.netfilter import Flow, NetfilterResult, Rule, Ruleset
from ..kubeproxy.nftwalk import NftRuleset
from ..overlay.entries import Route
from ..overlay.topology import BGP_PROTOS, CILIUM_HOST, EXTERNAL, Namespace, Topology, pod_namespace
from .packet import DEFAULT_TTL, L4_HEADER, LOCAL_PORT_RANGE, Frame, Outer, Packet, flow_source_port

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["Hop", "Trace", "ServiceChoice", "trace", "PROTOCOLS"]

PROTOCOLS = ("icmp", "tcp", "udp")
MAX_HOPS = 64
DEFAULT_SIZE = {"icmp": 84, "tcp": 40, "udp": 28}  # ping's 56 data bytes; a bare TCP segment; an empty datagram


@dataclass(frozen=True)
class Hop:
    """One step of the walk.

    ``namespace`` and ``interface`` say where, ``action`` what (route, forward,
    neighbour, bridge, encapsulate, transmit, decapsulate, dnat, masquerade,
    deliver, drop, icmp, exit), ``decided_by`` the table entry or rule that decided,
    and ``packet`` the packet at that point as scapy builds it.
    """

    index: int
    namespace: str
    interface: str | None
    action: str
    detail: str
    decided_by: str | None
    state: Packet
    on_wire: bool = False

    @cached_property
    def packet(self):
        """The scapy packet here (a list of packets when the walk fragmented it)."""
        return self.state.to_scapy()

    def __str__(self) -> str:
        where = f"{self.namespace}" + (f" {self.interface}" if self.interface else "")
        decided = f"  [{self.decided_by}]" if self.decided_by else ""
        return f"{self.index:>2}  {where:<32} {self.action:<12} {self.detail}{decided}"


@dataclass(frozen=True)
class ServiceChoice:
    """Which endpoint kube-proxy's rules on ``node`` picked for a Service, and every endpoint's odds.

    ``probabilities`` are exact (:class:`~fractions.Fraction`), from the ``--probability`` values as
    kube-proxy prints them; ``kernel_probabilities`` from the 31-bit thresholds the kernel applies.
    """

    node: str
    frontend: str
    chosen: str
    rule: str
    probabilities: dict[str, Fraction]
    kernel_probabilities: dict[str, Fraction]

    def __str__(self) -> str:
        odds = ", ".join(f"{ep} {p} (~{float(p):.10f})" for ep, p in self.probabilities.items())
        return f"{self.frontend} on {self.node}: {self.chosen} chosen; {odds}"


@dataclass(frozen=True)
class Trace:
    """The walk of one packet: its hops and how it ended (``delivered``, ``dropped`` or ``exited``).

    For a packet to a Service, ``service_choice`` tells which endpoint was chosen and with what
    probability, ``netfilter`` holds every walk through kube-proxy's rules (node, result), and
    ``notes`` say what conntrack rewrites on the way back.
    """

    src: str
    dst: IPAddress
    proto: str
    hops: tuple[Hop, ...]
    outcome: str
    reason: str
    mode: str = ""
    service_choice: ServiceChoice | None = None
    netfilter: tuple[tuple[str, NetfilterResult], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def wire_hops(self) -> tuple[Hop, ...]:
        return tuple(h for h in self.hops if h.on_wire)

    def to_pcap(self, path: str | Path) -> Path:
        """Write every on-wire packet of the walk, in order, as a pcap file (Ethernet link type)."""
        from scapy.utils import wrpcap

        packets = []
        for number, hop in enumerate(self.wire_hops):
            built = hop.packet if isinstance(hop.packet, list) else [hop.packet]
            for piece in built:
                piece = piece.copy()
                piece.time = number * 0.001  # stable timestamps: one millisecond per hop
                packets.append(piece)
        path = Path(path)
        wrpcap(str(path), packets)
        return path

    def __repr__(self) -> str:
        return f"<Trace {self.src} -> {self.dst} {self.proto} ({self.mode}): {self.outcome}, {len(self.hops)} hops>"

    def __str__(self) -> str:
        head = f"trace {self.src} -> {self.dst} {self.proto} ({self.mode}): {self.outcome}"
        if self.reason:
            head += f", {self.reason}"
        return "\n".join([head, *(str(h) for h in self.hops), *(f"note: {n}" for n in self.notes)])

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(v))}</td>" for v in (
                h.index, h.namespace, h.interface or "", h.action, h.detail, h.decided_by or "")) + "</tr>"
            for h in self.hops)
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in ("#", "where", "interface", "what", "detail", "decided by"))
        caption = html.escape(f"{self.src} → {self.dst} {self.proto} ({self.mode}): {self.outcome}"
                              + (f", {self.reason}" if self.reason else ""))
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return (f"<table><caption style='text-align:left'><b>{caption}</b></caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{notes}")


class _Drop(Exception):
    """The walk ended (dropped or exited) with a reason."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


# Each node's parsed kube-proxy rules, per topology: the cluster builds a new topology whenever it changes.
_RULESETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kube_proxy_rules(cluster: Cluster, topology: Topology, node: str) -> Ruleset | NftRuleset:
    """``node``'s kube-proxy ruleset, parsed once per cluster state: the ``iptables-restore`` input
    (:class:`Ruleset`), or in ``nftables`` mode the ``nft -f`` input of every family (:class:`NftRuleset`)."""
    per_node = _RULESETS.setdefault(topology, {})
    if node not in per_node:
        proxy = cluster.kube_proxy(node)
        if cluster.network.kube_proxy_mode == "nftables":
            per_node[node] = NftRuleset.parse("".join(proxy.nft_ruleset(f) for f in cluster.network.families))
        else:
            per_node[node] = Ruleset.parse(proxy.iptables_restore())
    return per_node[node]


# The chains whose jump asks for masquerading: iptables mode's, and nftables mode's.
MARK_FOR_MASQUERADE = ("KUBE-MARK-MASQ", "mark-for-masquerade")


@dataclass
class _Walk:
    topology: Topology
    cluster: Cluster
    hops: list[Hop] = field(default_factory=list)
    kube_proxy: bool = False
    endpoint: str | None = None
    seed: int = 0
    masquerading: dict[str, tuple[Rule, Rule | None]] = field(default_factory=dict)
    netfilter_walks: list[tuple[str, NetfilterResult]] = field(default_factory=list)
    service_choice: ServiceChoice | None = None

    def hop(self, ns: str, interface: str | None, action: str, detail: str, decided_by, packet: Packet,
            on_wire: bool = False) -> None:
        if len(self.hops) >= MAX_HOPS:
            raise _Drop("dropped", f"more than {MAX_HOPS} hops: a forwarding loop")
        self.hops.append(Hop(len(self.hops) + 1, ns, interface, action, detail,
                             None if decided_by is None else str(decided_by), packet, on_wire))

    # -- the kernel's steps ------------------------------------------------------------

    @staticmethod
    def lookup(ns: Namespace, dst: IPAddress) -> Route | None:
        best = None
        for route in ns.routes:
            if route.matches(dst) and (best is None or route.prefixlen > best.prefixlen):
                best = route
        return best

    def netfilter(self, ns: Namespace, packet: Packet, arrived_on: str | None) -> Packet:
        """kube-proxy's rules on a node for a packet entering its stack (``arrived_on`` None: sent by
        the node itself): DNAT to an endpoint, a pending masquerade, or a REJECT/DROP."""
        if not self.kube_proxy or ns.kind != "node" or packet.outer is not None:
            return packet
        inner = packet.inner
        flow = Flow(inner.src, inner.dst, inner.proto, inner.dport, inner.sport, in_interface=arrived_on,
                    locally_generated=arrived_on is None)
        result = kube_proxy_rules(self.cluster, self.topology, ns.name).walk(flow, local=ns.local_addresses(),
                                                                               seed=self.seed)
        if self.endpoint is not None and result.dnat is not None and self.service_choice is None:
            result = result.choose(self.endpoint)
        self.netfilter_walks.append((ns.name, result))
        self.masquerading.pop(ns.name, None)
        if result.dnat is not None:
            host, _, port = result.dnat.rpartition(":")
            before = f"{inner.dst}:{inner.dport}"
            packet = replace(packet, inner=replace(inner, dst=ipaddress.ip_address(host.strip("[]")), dport=int(port)))
            odds = result.probabilities
            share = odds[result.dnat]
            self.hop(ns.name, arrived_on, "dnat",
                     f"{before} -> {result.dnat} (probability {share} ~ {float(share):.10f}, "
                     f"one of {len(odds)} endpoints; {result.evaluated} rules evaluated)",
                     result.dnat_rule, packet)
            if self.service_choice is None:
                self.service_choice = ServiceChoice(ns.name, before, result.dnat, result.dnat_rule.text, odds,
                                                    result.kernel_probabilities)
        if result.verdict in ("DROP", "REJECT"):
            rule = result.verdict_rule
            # nftables' reject-chain has no comment: the map element that sent the packet there names the Service
            comment = (rule and rule.comment) or next((s.rule.comment for s in reversed(result.steps) if s.rule.comment),
                                                      None)
            why = f"{result.verdict} by kube-proxy's rule" + (f" ({comment})" if comment else "")
            self.hop(ns.name, arrived_on, "drop", why, rule, packet)
            answer = "; the sender gets ICMP port unreachable" if result.verdict == "REJECT" else ""
            raise _Drop("dropped", f"{why} on {ns.name}{answer}")
        if result.masquerade:
            marked = next((s.rule for s in result.steps if s.rule.target in MARK_FOR_MASQUERADE), None)
            self.masquerading[ns.name] = (result.masquerade_rule, marked)
        return packet

    def kube_masquerade(self, ns: Namespace, device, packet: Packet) -> tuple[Packet, bool]:
        """KUBE-POSTROUTING's MASQUERADE for a marked packet: the source becomes the egress device's
        address (Linux picks the node's primary address when the device has none)."""
        pending = self.masquerading.pop(ns.name, None)
        if pending is None or packet.outer is not None:
            return packet, False
        rule, marked = pending
        inner = packet.inner
        new_src = device.addresses[0].ip if device.addresses else self.cluster.node(ns.name).ip
        packet = replace(packet, inner=replace(inner, src=new_src))
        why = f" (marked by {marked.chain}: {marked.comment or marked.text})" if marked is not None else ""
        if new_src == inner.src:
            why += "; the address is already the egress device's, the source port may still change"
        self.hop(ns.name, device.name, "masquerade", f"source {inner.src} -> {new_src}{why}", rule, packet)
        return packet, True

    def receive(self, ns_name: str, interface: str, packet: Packet) -> None:
        """A frame arrived on ``interface``; Linux decides: local, decapsulate, or forward."""
        ns = self.topology[ns_name]
        packet = self.netfilter(ns, packet, interface)
        if packet.dst in ns.local_addresses():
            if packet.outer is not None:
                return self.decapsulate(ns, packet)
            raise _Drop("delivered", f"delivered to {ns.name} ({packet.dst})")
        if not ns.forwarding:
            raise _Drop("dropped", f"{ns.name} is not the destination and does not forward")
        self.route(ns, packet, forwarded=True, arrived_on=interface)

    def decapsulate(self, ns: Namespace, packet: Packet) -> None:
        outer = packet.outer
        if outer.encapsulation == "ipip":
            device = next((i for i in ns.interfaces.values() if i.kind == "ipip"), None)
        else:
            device = next((i for i in ns.interfaces.values() if i.kind == outer.encapsulation and i.port == outer.dport), None)
        if device is None:
            raise _Drop("dropped", f"{ns.name} has no {outer.encapsulation} device for port {outer.dport}: "
                                   "the datagram goes to an unbound UDP port")
        if device.vni is not None and not device.flow_based and device.vni != outer.vni:
            raise _Drop("dropped", f"VNI {outer.vni} does not match {device.name}'s VNI {device.vni}")
        inner = replace(packet.inner)
        ident = "" if outer.encapsulation == "ipip" else f" VNI {outer.vni}"
        listens = "IP protocol 4" if outer.encapsulation == "ipip" else (
            f"{outer.encapsulation} id {'external' if device.flow_based else device.vni} dstport {device.port}")
        self.hop(ns.name, device.name, "decapsulate", f"{outer.encapsulation}{ident} from {outer.src}",
                 f"{device.name}: {listens}", Packet(inner))
        if device.flow_based:
            return self.cilium_deliver(ns, Packet(inner), device.name)
        self.route(ns, self.netfilter(ns, Packet(inner), device.name), forwarded=True, arrived_on=device.name)

    def route(self, ns: Namespace, packet: Packet, *, forwarded: bool, arrived_on: str | None = None) -> None:
        dst = packet.dst
        if dst in ns.local_addresses():
            raise _Drop("delivered", f"delivered to {ns.name} itself ({dst})")
        if forwarded and self.topology.mode.flow_based and ns.kind == "node" and packet.outer is None:
            if self.cilium_forward(ns, packet, arrived_on):
                return
        route = self.lookup(ns, dst)
        if route is None:
            self.hop(ns.name, None, "drop", f"no route to {dst}", None, packet)
            raise _Drop("dropped", f"{ns.name} has no route to {dst} (ENETUNREACH)")
        if route.type == "blackhole":
            self.hop(ns.name, None, "drop", f"blackhole route for {dst}", route, packet)
            raise _Drop("dropped", f"{ns.name} blackholes {dst}: no pod of this node's block has it")
        if forwarded:
            if packet.ttl <= 1:
                raise _Drop("dropped", f"TTL expired at {ns.name}")
            packet = packet.with_ttl(packet.ttl - 1)
        action = "forward" if forwarded else "route"
        chosen, why = self.choose_nexthop(ns, route, packet)
        self.hop(ns.name, chosen.dev, action, f"to {dst} via {chosen.dev}" + (f" (TTL {packet.ttl})" if forwarded else "")
                 + why, route, packet)
        self.egress(ns, chosen, packet, local=not forwarded)

    def choose_nexthop(self, ns: Namespace, route: Route, packet: Packet) -> tuple[Route, str]:
        """The next hop this flow takes (an ECMP route's by the L3 flow hash, fib_multipath_hash_policy 0),
        and what to say about it: the choice, and the BGP best path that installed the route."""
        index, chosen = route.select(packet.src, packet.dst)      # the outer header's, when encapsulated
        why = ""
        if route.nexthops:
            hops = ", ".join(f"{via} dev {dev}" for via, dev in route.nexthops)
            why = (f"; ECMP: next hop {index + 1} of {len(route.nexthops)} ({chosen.via}) by the L3 hash of "
                   f"{packet.src} -> {packet.dst} (fib_multipath_hash_policy 0) among {hops}")
        if ns.bgp_speaker is not None and route.proto in BGP_PROTOS and route.dst != "default":
            why += "; " + self.topology.fabric.explain(ns.bgp_speaker, route.dst)
        return chosen, why

    def egress(self, ns: Namespace, route: Route, packet: Packet, *, local: bool) -> None:
        device = ns.interfaces[route.dev]
        next_hop = route.via if route.via is not None else packet.dst
        packet = self.check_mtu(ns, device.name, device.mtu if route.mtu is None else route.mtu, packet, local=local,
                                what=None if route.mtu is None else f"the route's mtu {route.mtu}")
        if device.name == CILIUM_HOST and self.topology.mode.flow_based:
            # The host's own traffic to pods enters Cilium's eBPF datapath at cilium_host (bpf_host).
            if self.cilium_forward(ns, packet, device.name):
                return
            raise _Drop("dropped", f"{ns.name}: Cilium has no endpoint or tunnel entry for {packet.dst}")
        packet, translated = self.kube_masquerade(ns, device, packet)  # kube-proxy's POSTROUTING jump comes first
        if device.kind in ("vxlan", "geneve") and not device.flow_based:
            return self.encapsulate_vxlan(ns, device, next_hop, packet)
        if device.kind == "ipip":
            return self.encapsulate_ipip(ns, device, next_hop, packet, local=local)
        if not translated:  # one source NAT per connection: the CNI's MASQUERADE rule is not reached
            packet = self.masquerade(ns, device, packet)
        self.transmit(ns, device.name, next_hop, packet)

    def masquerade(self, ns: Namespace, device, packet: Packet) -> Packet:
        if ns.kind != "node" or packet.outer is not None or not device.addresses or device.kind == "bridge":
            return packet
        for source, excluded, rule in ns.masquerade:
            inner = packet.inner
            if inner.src in source and not any(inner.dst in e for e in excluded) and device.segment and \
                    device.segment.startswith("underlay"):
                new_src = device.addresses[0].ip
                packet = replace(packet, inner=replace(inner, src=new_src))
                self.hop(ns.name, device.name, "masquerade", f"source {inner.src} -> {new_src}", rule, packet)
        return packet

    def check_mtu(self, ns: Namespace, dev: str, mtu: int, packet: Packet, *, local: bool,
                  what: str | None = None) -> Packet:
        """The packet as it leaves ``dev``: unchanged, fragmented (DF clear), or not at all (DF set).

        ``what`` names where the MTU comes from when it is not the device's own (a route's ``mtu``).
        """
        if packet.length <= mtu:
            return packet
        what = what or f"{dev} mtu {mtu}"
        if packet.df:
            if local:  # the sender's own stack refuses: ping -M do says "message too long"
                self.hop(ns.name, dev, "drop", f"{packet.length}-byte packet > MTU {mtu} with DF set", what, packet)
                raise _Drop("dropped", f"EMSGSIZE at the sender: {packet.length} bytes > MTU {mtu} ({what}), DF set")
            original = packet.inner
            # The error goes back to the sender, from the address Linux picks for that route.
            source = _source_address(ns, original.src, next(iter(ns.local_addresses())))
            icmp = Frame(src=source, dst=original.src, proto="icmp", icmp_type=3, icmp_code=4, next_hop_mtu=mtu,
                         quoted=original, df=False)
            self.hop(ns.name, dev, "icmp", f"fragmentation needed, next-hop MTU {mtu}, sent to {original.src}",
                     f"{what}: {packet.length}-byte packet with DF", Packet(icmp))
            raise _Drop("dropped", f"{packet.length} bytes > MTU {mtu} of {dev} at {ns.name} with DF set: "
                                   f"ICMP fragmentation needed (type 3 code 4) from {ns.name}")
        before = packet.length
        packet = packet.fragmented(mtu)
        self.hop(ns.name, dev, "fragment", f"{before} bytes > MTU {mtu}, DF clear: {packet.fragments} fragments, "
                 f"the largest {packet.length} bytes", what, packet)
        return packet

    def neighbor(self, ns: Namespace, dev: str, ip: IPAddress) -> tuple[str, str, str]:
        """(MAC, where it came from, the receiving (namespace, interface))."""
        for entry in ns.neighbors:
            if entry.dev == dev and entry.ip == ip:
                return entry.lladdr, str(entry), ""
        for peer_ns, peer_if in self.topology.segment_of(ns.name, dev):
            if (peer_ns, peer_if) == (ns.name, dev):
                continue
            iface = self.topology.port(peer_ns, peer_if)
            if iface.has_address(ip) or (iface.proxy_arp and peer_ns != ns.name):
                return iface.mac, f"{ip} dev {dev} lladdr {iface.mac} REACHABLE", f"{peer_ns}/{peer_if}"
        segment = ns.interfaces[dev].segment or ""
        if segment.startswith("underlay") and any(r.dst == "default" and r.via == ip for r in ns.routes):
            raise _Drop("exited", f"leaves the lab through the underlay's default gateway {ip}")
        raise _Drop("dropped", f"{ns.name}: no answer to ARP for {ip} on {dev} (neighbour FAILED)")

    def transmit(self, ns: Namespace, dev: str, next_hop: IPAddress, packet: Packet) -> None:
        device = ns.interfaces[dev]
        if device.kind == "bridge":
            mac, how, _ = self.neighbor(ns, dev, next_hop)
            packet = packet.with_macs(device.mac, mac)
            self.hop(ns.name, dev, "neighbour", f"{next_hop} is at {mac}", how, packet)
            port = self.bridge_port(ns, mac)
            self.hop(ns.name, port.name, "bridge", f"{dev} forwards to port {port.name}",
                     f"{mac} dev {port.name} master {dev}", packet)
            return self.wire(ns.name, port.name, port.peer, packet)
        mac, how, _ = self.neighbor(ns, dev, next_hop)
        packet = packet.with_macs(device.mac, mac)
        self.hop(ns.name, dev, "neighbour", f"{next_hop} is at {mac}", how, packet)
        target = self.owner_of_mac(ns.name, dev, mac)
        self.wire(ns.name, dev, target, packet)

    def bridge_port(self, ns: Namespace, mac: str):
        for iface in ns.interfaces.values():
            if iface.master and iface.peer and self.topology.interfaces(iface.peer[0])[iface.peer[1]].mac == mac:
                return iface
        raise _Drop("dropped", f"{ns.name}: bridge has no port for {mac}")

    def owner_of_mac(self, ns: str, dev: str, mac: str) -> tuple[str, str]:
        for peer_ns, peer_if in self.topology.segment_of(ns, dev):
            if (peer_ns, peer_if) != (ns, dev) and self.topology.port(peer_ns, peer_if).mac == mac:
                return peer_ns, peer_if
        raise _Drop("dropped", f"{ns}: nothing on the link of {dev} owns {mac}")

    def wire(self, ns: str, dev: str, target: tuple[str, str], packet: Packet) -> None:
        where = f"{target[0]} {target[1]}"
        pieces = f" in {packet.fragments} fragments, the largest" if packet.fragments > 1 else ","
        self.hop(ns, dev, "transmit", f"on the wire to {where}{pieces} {packet.length} bytes", None, packet, on_wire=True)
        peer_ns, peer_if = target
        peer = self.topology[peer_ns]
        iface = peer.interfaces[peer_if]
        if peer.kind == "node" and iface.master:  # a pod's frame arrives at its bridge port
            bridge = peer.interfaces[iface.master]
            if packet.inner.eth_dst == bridge.mac:
                return self.receive(peer_ns, bridge.name, packet)
            port = self.bridge_port(peer, packet.inner.eth_dst)
            self.hop(peer_ns, port.name, "bridge", f"{bridge.name} forwards to port {port.name}",
                     f"{packet.inner.eth_dst} dev {port.name} master {bridge.name}", packet)
            return self.wire(peer_ns, port.name, port.peer, packet)
        if peer.kind == "node" and self.topology.mode.flow_based and peer_if.startswith("lxc"):
            return self.cilium_from_container(peer, peer_if, packet)
        self.receive(peer_ns, peer_if, packet)

    # -- tunnels -----------------------------------------------------------------------

    def encapsulate_vxlan(self, ns: Namespace, device, next_hop: IPAddress, packet: Packet) -> None:
        neighbor = next((n for n in ns.neighbors if n.dev == device.name and n.ip == next_hop), None)
        if neighbor is None:
            raise _Drop("dropped", f"{ns.name}: no neighbour entry for {next_hop} on {device.name}")
        self.hop(ns.name, device.name, "neighbour", f"{next_hop} is VTEP MAC {neighbor.lladdr}", neighbor, packet)
        entry = next((f for f in ns.fdb if f.dev == device.name and f.mac == neighbor.lladdr), None)
        if entry is None:
            raise _Drop("dropped", f"{ns.name}: no FDB entry for {neighbor.lladdr} on {device.name}")
        inner = replace(packet.inner, eth_src=device.mac, eth_dst=neighbor.lladdr)
        self.tunnel(ns, device, inner, entry.dst, entry)

    def encapsulate_ipip(self, ns: Namespace, device, next_hop: IPAddress, packet: Packet, *, local: bool) -> None:
        inner = replace(packet.inner, eth_src=None, eth_dst=None)
        underlay = self.lookup(ns, next_hop)
        if underlay is not None and inner.df:
            # IP-in-IP copies DF to the outer header, so the tunnel enforces the path MTU on the inner
            # packet: the underlay's MTU less 20 (ip_tunnel's tnl_update_pmtu), an ICMP to the sender.
            self.check_mtu(ns, device.name, ns.interfaces[underlay.dev].mtu - 20, Packet(inner), local=local,
                           what=f"{underlay.dev} mtu {ns.interfaces[underlay.dev].mtu} less the 20-byte outer header")
        self.tunnel(ns, device, inner, next_hop, f"route's onlink next hop {next_hop}")

    def tunnel(self, ns: Namespace, device, inner: Frame, remote: IPAddress, decided_by) -> None:
        underlay = self.lookup(ns, remote)
        if underlay is None:
            raise _Drop("dropped", f"{ns.name} has no underlay route to VTEP {remote}")
        local = ns.interfaces[underlay.dev].addresses[0].ip
        if device.kind == "ipip":
            outer = Outer("ipip", local, remote, ttl=inner.ttl, df=inner.df)
            detail = f"IP-in-IP {local} -> {remote}"
        else:
            sport = flow_source_port(inner.src, inner.dst, inner.proto, inner.sport, inner.dport)
            vni = device.vni if not device.flow_based else self.identity(inner.src)
            outer = Outer(device.kind, local, remote, ttl=DEFAULT_TTL, df=False, sport=sport, dport=device.port, vni=vni)
            detail = f"{device.kind.upper()} VNI {vni}, UDP {sport} -> {device.port}, {local} -> {remote}"
        packet = Packet(inner, outer)
        self.hop(ns.name, device.name, "encapsulate", detail, decided_by, packet)
        self.hop(ns.name, underlay.dev, "route", f"outer {remote} via {underlay.dev}", underlay, packet)
        packet = self.check_mtu(ns, underlay.dev, ns.interfaces[underlay.dev].mtu, packet, local=True)
        self.transmit(ns, underlay.dev, underlay.via or remote, packet)

    # -- Cilium's eBPF datapath (flow-based tunnels, no host routing for pod traffic) ---

    def identity(self, ip: IPAddress) -> int:
        """Cilium puts the source's security identity in the VNI; ours is stable per label set, from 256."""
        pod = next((p for p in self.cluster.pods if ip in p.ips), None)
        labels = sorted(pod.labels.items()) if pod else []
        import zlib

        return 256 + zlib.crc32(repr((pod.namespace if pod else "", labels)).encode()) % 65280

    def cilium_from_container(self, node: Namespace, lxc: str, packet: Packet) -> None:
        """bpf_lxc on the pod's host-side veth: local endpoint, tunnel map, or the host stack."""
        self.hop(node.name, lxc, "receive", "eBPF from-container program", f"tc ingress bpf_lxc on {lxc}", packet)
        if packet.dst in node.local_addresses():
            raise _Drop("delivered", f"delivered to {node.name} itself ({packet.dst})")
        if packet.ttl <= 1:
            raise _Drop("dropped", f"TTL expired at {node.name}")
        packet = packet.with_ttl(packet.ttl - 1)
        if not self.cilium_forward(node, packet, lxc):
            self.route(node, packet, forwarded=False)

    def cilium_forward(self, node: Namespace, packet: Packet, arrived_on: str | None) -> bool:
        dst = packet.dst
        local = next((i for i in node.interfaces.values()
                      if i.peer and self.topology.interfaces(i.peer[0])[i.peer[1]].has_address(dst)), None)
        if local is not None:
            self.hop(node.name, local.name, "forward", f"local endpoint {dst} (TTL {packet.ttl})",
                     f"cilium endpoint map: {dst} -> {local.name}", packet)
            return self.redirect_to_pod(node, local, packet) or True
        entry = next((t for t in node.tunnel_map if dst in t.prefix), None)
        if entry is None:
            return False
        device = next(i for i in node.interfaces.values() if i.flow_based)
        self.hop(node.name, device.name, "forward", f"to {dst} via tunnel endpoint {entry.endpoint} (TTL {packet.ttl})",
                 entry, packet)
        route_mtu = next((r.mtu for r in node.routes if r.dev == CILIUM_HOST and r.matches(dst) and r.mtu), None)
        if route_mtu:
            packet = self.check_mtu(node, device.name, route_mtu, packet, local=arrived_on == CILIUM_HOST,
                                    what=f"the route's mtu {route_mtu}")
        inner = replace(packet.inner, eth_src=node.interfaces[CILIUM_HOST].mac, eth_dst=node.interfaces[CILIUM_HOST].mac)
        self.tunnel(node, device, inner, entry.endpoint, entry)
        return True

    def cilium_deliver(self, node: Namespace, packet: Packet, device: str) -> None:
        if packet.ttl <= 1:
            raise _Drop("dropped", f"TTL expired at {node.name}")
        packet = packet.with_ttl(packet.ttl - 1)
        if not self.cilium_forward(node, packet, device):
            self.route(node, packet, forwarded=False)

    def redirect_to_pod(self, node: Namespace, lxc, packet: Packet) -> None:
        pod_if = self.topology.interfaces(lxc.peer[0])[lxc.peer[1]]
        packet = packet.with_macs(lxc.mac, pod_if.mac)
        self.wire(node.name, lxc.name, lxc.peer, packet)


def _resolve(cluster: Cluster, name: str, role: str) -> tuple[str | None, IPAddress]:
    """(namespace, address) of a pod, a node, or a bare IP."""
    pods = [p for p in cluster.pods if p.name == name or p.key == name]
    if pods:
        pod = pods[0]
        if not pod.ips:
            raise InvalidValue("trace", role, name, "must be a pod with an IP (this one is pending)")
        if pod.host_network:
            return pod.node, pod.ips[0]
        return pod_namespace(pod.key), pod.ips[0]
    if any(n.name == name for n in cluster.nodes):
        return name, cluster.node(name).ip
    if name == EXTERNAL and cluster.topology().external_address is not None:  # a client outside the cluster
        return EXTERNAL, cluster.topology().external_address
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        raise NotFound("trace", role, name, "must name a pod, a node, an IP address, or 'external' "
                                           "(the client outside a cluster with a BGP design)") from None
    owner = next((p for p in cluster.pods if address in p.ips and not p.host_network), None)
    if owner is not None:
        return pod_namespace(owner.key), address
    node = next((n for n in cluster.nodes if address in n.ips), None)
    return (node.name if node else None), address


def _source_address(ns: Namespace, dst: IPAddress, default: IPAddress) -> IPAddress:
    """Linux's source address selection for a locally generated packet: the route's ``src``, else
    the egress device's own address (so a node reaches remote pods from its flannel.1 address)."""
    route = _Walk.lookup(ns, dst)
    if route is None or route.dev is None:
        return default
    if route.src is not None:
        return route.src
    addresses = ns.interfaces[route.dev].addresses
    return addresses[0].ip if addresses else default


def _service_frontends(cluster: Cluster, dst: IPAddress, dport: int | None) -> bool:
    """Whether kube-proxy's rules would claim a packet to ``dst``:``dport``: a ClusterIP, an externalIP or
    LoadBalancer IP, or a node's address with some Service's nodePort."""
    if any(dst in c for c in cluster.network.service_cidrs):
        return True
    for service in cluster.services:
        if dst in service.cluster_ips or dst in service.external_ips or dst in service.load_balancer_ips:
            return True
        if dport is not None and any(n.ip == dst for n in cluster.nodes) and (
                dport == service.health_check_node_port or any(p.node_port == dport for p in service.ports)):
            return True
    return False


def _undo_notes(hops: list[Hop]) -> tuple[str, ...]:
    """What conntrack rewrites in the reply: each NAT of the walk undone where it was made, last first."""
    notes = []
    for hop in reversed(hops):
        if hop.action == "dnat":
            before, after = hop.detail.split(" (", 1)[0].split(" -> ")
            notes.append(f"{hop.namespace}: conntrack rewrites the reply's source {after} back to {before} (un-DNAT)")
        elif hop.action == "masquerade":
            old, new = hop.detail.removeprefix("source ").split(" (", 1)[0].split(" -> ")
            notes.append(f"{hop.namespace}: conntrack rewrites the reply's destination {new} back to {old} (un-SNAT)")
    if notes:
        notes.insert(0, "the reply is not walked: it retraces these NAT bindings, undone in reverse order")
    return tuple(notes)


def trace(cluster: Cluster, src: str, dst: str, *, dport: int | None = None, proto: str = "icmp",
          size: int | None = None, sport: int | None = None, df: bool = True, endpoint: str | None = None,
          seed: int = 0) -> Trace:
    """Walk one packet from ``src`` to ``dst``; see the module docstring.

    ``dst`` may also name a Service (its ClusterIP). Where kube-proxy load-balances, ``endpoint``
    (a pod name, an IP or ``ip:port``) forces the endpoint; otherwise the random rules are drawn
    with ``seed``. Either way :attr:`Trace.service_choice` holds every endpoint's exact probability.
    """
    if proto not in PROTOCOLS:
        raise InvalidValue("trace", "proto", proto, f"must be one of {', '.join(PROTOCOLS)}")
    if proto != "icmp" and dport is None:
        raise InvalidValue("trace", "dport", dport, f"must be given for {proto}")
    for name, value in (("dport", dport), ("sport", sport)):
        if value is not None:
            parse_port(value, obj="trace", field=name)
    src_ns, src_ip = _resolve(cluster, src, "src")
    if src_ns is None:
        raise NotFound("trace", "src", src, "must be a pod or a node of the cluster (the packet starts there)")
    service = next((v for v in cluster.services if dst in (v.name, f"{v.namespace}/{v.name}") and v.cluster_ips), None)
    if service is not None and not any(p.name == dst or p.key == dst for p in cluster.pods) and \
            not any(n.name == dst for n in cluster.nodes):
        dst_ip = service.cluster_ips[0]
    else:
        _, dst_ip = _resolve(cluster, dst, "dst")
    if src_ip.version != 4 or dst_ip.version != 4:
        raise InvalidValue("trace", "dst", str(dst_ip), "must be IPv4: IPv6 packet walks are not modelled yet")
    if any(dst_ip in c for c in cluster.network.service_cidrs) and not any(dst_ip in v.cluster_ips
                                                                         for v in cluster.services):
        raise InvalidValue("trace", "dst", str(dst_ip),
                           "is in the Service CIDR but no Service has this ClusterIP: kube-proxy has no rule for it")
    topology = cluster.topology()
    kube_proxy = cluster.network.kube_proxy_mode in ("iptables", "nftables") and not topology.mode.flow_based
    if not kube_proxy and _service_frontends(cluster, dst_ip, dport):
        why = (f"Cilium ({cluster.network.cni}) load-balances Services in eBPF" if topology.mode.flow_based
               else f"kube-proxy's {cluster.network.kube_proxy_mode} mode")
        raise InvalidValue("trace", "dst", str(dst_ip),
                           f"is a Service frontend, and walks through {why} are not modelled yet "
                           "(iptables and nftables modes are)")
    if endpoint is not None:
        pod = next((p for p in cluster.pods if endpoint in (p.name, p.key) and p.ips), None)
        endpoint = str(pod.ips[0]) if pod is not None else str(endpoint)
    header = 20 + L4_HEADER[proto]
    size = DEFAULT_SIZE[proto] if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or not header <= size <= 65535:
        raise InvalidValue("trace", "size", size, f"must be an IP packet length from {header} to 65535 bytes")
    sport = sport if sport is not None else (
        flow_source_port(src_ip, dst_ip, proto, 0, dport or 0, *LOCAL_PORT_RANGE) if proto != "icmp" else 1)
    walk = _Walk(topology, cluster, kube_proxy=kube_proxy, endpoint=endpoint, seed=seed)
    start = walk.topology[src_ns]
    if start.kind == "node":
        src_ip = _source_address(start, dst_ip, src_ip)
    frame = Frame(src=src_ip, dst=dst_ip, proto=proto, sport=sport, dport=dport or 0, df=df, payload=size - header)
    try:
        walk.route(start, walk.netfilter(start, Packet(frame), None), forwarded=False)
        outcome, reason = "dropped", "the walk ended without a verdict"
    except _Drop as end:
        outcome, reason = end.outcome, end.reason
        if outcome == "delivered":
            last = walk.hops[-1].state if walk.hops else Packet(frame)
            where = end.reason.split(" to ", 1)[1].split(" ", 1)[0] if " to " in end.reason else src_ns
            walk.hops.append(Hop(len(walk.hops) + 1, where, None, "deliver", end.reason, None, last))
        elif walk.hops and walk.hops[-1].action not in ("drop", "icmp"):
            walk.hops.append(Hop(len(walk.hops) + 1, walk.hops[-1].namespace, walk.hops[-1].interface, "drop",
                                 end.reason, None, walk.hops[-1].state))
    return Trace(src, dst_ip, proto, tuple(walk.hops), outcome, reason, cluster.network.cni, walk.service_choice,
                 tuple(walk.netfilter_walks), _undo_notes(walk.hops))
