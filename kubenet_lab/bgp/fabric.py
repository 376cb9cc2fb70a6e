"""A routed cluster's BGP, simulated: the designs of chapter 03 and how they converge.

:meth:`Fabric.from_cluster` builds every speaker and session of one design
from a :class:`~kubenet_lab.cluster.Cluster` (datapath.md §2.1, §2.7):

``full-mesh``
    Calico's default ``nodeToNodeMeshEnabled: true``: every node peers iBGP
    with every other node in AS 64512, n(n-1)/2 sessions. Each node announces
    its podCIDR (or Calico blocks; see "What a node announces" below) with
    itself as NEXT_HOP; nobody re-advertises
    what they learnt (RFC 4271 §9.2), so the mesh must be complete.
``route-reflectors``
    ``nodeToNodeMeshEnabled: false`` plus BGPPeers to chosen nodes with a
    ``routeReflectorClusterID`` (``route_reflectors=["node-1", "node-2"]``), or the
    ToRs as reflectors (``route_reflectors="tors"``) with the nodes of a rack as
    their clients, the ToRs meshed over the spine and the spine a client of
    every ToR. r reflectors and n nodes: r(n-r) + r(r-1)/2 sessions.
``per-rack-ebgp``
    "AS per rack" (Calico "Calico over IP fabrics", RFC 7938): each node
    peers eBGP with its ToR (``rack.tor_asn``, else 65000 + rack number), each
    ToR eBGP with the spine (AS 65100). Nodes take AS ``bgp_asn`` + rack number
    (``node_asn="per-rack"``, default) or all share ``bgp_asn``
    (``node_asn="cluster"``, which needs ``allowas_in=1``: otherwise a node
    drops every route from another rack, its own AS being in the AS_PATH).

Addresses follow :mod:`kubenet_lab.overlay.topology`: a node speaks from its
InternalIP, a ToR from its rack subnet's .1 to the nodes and from the .1 of
its /31 uplink (link i of 172.31.255.0/24) to the spine, which holds the .0.
**What a node announces.** A node's speaker announces its pod prefixes (podCIDR
or Calico blocks) only where BGP is what carries pod traffic across the
underlay; ``announce_pods=`` says so explicitly, and defaults from the
cluster's ``cni`` (:data:`ANNOUNCES_POD_PREFIXES`):

* Calico with BIRD (``calico-bgp``, ``calico-ipip``): yes. confd's
  ``bird_ipam.cfg`` template, ``calico_export_to_bgp_peers``, accepts every
  route inside an IPPool's CIDR unless the pool sets ``disableBGPExport``.
* Calico VXLAN (``calico-vxlan``): no. The VXLAN install runs with
  ``calico_backend: vxlan``, i.e. without BIRD: Felix programs the routes to
  the other nodes' blocks itself (the same template's
  ``calico_kernel_programming`` even refuses VXLAN pools' routes when BIRD
  runs), so the BGP sessions a design adds are MetalLB's. A Calico cluster that
  keeps ``calico_backend: bird`` beside VXLAN pools does export its blocks:
  pass ``announce_pods=True``.
* flannel: no. flanneld speaks no BGP; on bare metal the BGP is MetalLB's,
  whose speaker announces Services only (``IPAddressPool`` addresses selected
  by a ``BGPAdvertisement``), never a podCIDR.
* Cilium (``cilium-vxlan``, ``cilium-geneve``): no. Its BGP control plane
  advertises a node's PodCIDR only when asked (a ``CiliumBGPAdvertisement`` of
  ``advertisementType: PodCIDR``; ``exportPodCIDR: true`` in the older
  ``CiliumBGPPeeringPolicy``, whose default is false).
* ``native-routing``: yes, BGP is how the other routers learn the pod prefixes.

The LoadBalancer /32s below are announced either way: on an overlay cluster
they are the *only* BGP routes, and a client outside reaches a VIP through the
ToRs' ECMP route to a node, whose kube-proxy hands the packet to a pod over the
overlay.

``external_peers=[(address, asn), ...]`` adds data-centre routers
(``external-1``, ...; a third item names one) that every node peers with, like
Calico's global BGPPeer or MetalLB's ``BGPPeer``.

**LoadBalancer VIPs** (MetalLB in BGP mode, chapter 06): each node's speaker
announces every ``status.loadBalancer.ingress`` IP of a ``type: LoadBalancer``
Service as a /32: without a ``BGPAdvertisement`` that sets ``aggregationLength``
the routers "receive one /32 route for each service IP"
(metallb.universe.tf/configuration/_advanced_bgp_configuration/). Who announces
follows MetalLB's speaker
(``speaker/bgp_controller.go``, ``ShouldAnnounce``): with
``externalTrafficPolicy: Cluster`` every node, as long as the Service has a
ready endpoint somewhere ("Cluster && any healthy endpoint exists"); with
``Local`` only the nodes that host a ready endpoint ("Local && there's a ready
local endpoint"), so the routers never send a flow to a node that would drop
it. Several nodes announcing one /32 is what gives the ToR an ECMP route. A
fabric built from a cluster does this unless ``services=`` says otherwise
(:func:`load_balancer_announcements`); :meth:`Fabric.sync` follows the
endpoints as pods come and go. (On a Calico cluster the node's BIRD would make
the same announcements, BGPConfiguration ``serviceLoadBalancerIPs``; MetalLB's
docs advise that rather than two BGP daemons on one node.)

The simulation is a deterministic event loop: each step delivers the UPDATEs
sent in the step before, in router-ID order of sender and receiver; each
router then runs its decision process and sends what changed (one UPDATE per
update-group and attribute set, like a daemon's MRAI batching). It stops at a
fixed point. Every event - the sessions coming up, a session or link going
down, a node joining or leaving, a prefix withdrawn - returns a
:class:`Convergence` with the messages, the timeline and every router's Loc-RIB.

Three nodes on one segment, Calico's full mesh:

>>> from kubenet_lab import Cluster
>>> c = Cluster(cni="calico-bgp", bgp_design="full-mesh")
>>> for i in (1, 2, 3):
...     _ = c.add_node(f"node-{i}")
>>> fabric = Fabric.from_cluster(c)
>>> result = fabric.converge()
>>> fabric.session_count, result.messages, result.steps
(3, 6, 1)
>>> print("\\n".join(fabric.routes("node-1")))
10.244.1.0/24 via 192.168.0.12 dev eth0 proto bird
10.244.2.0/24 via 192.168.0.13 dev eth0 proto bird
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import TYPE_CHECKING

from ..errors import AlreadyExists, InvalidValue, NotFound
from ..network import FABRIC_SUBNET
from .attributes import ASPath, ClusterList, Communities, LocalPref, MultiExitDisc, NextHop, Origin, OriginatorID
from .decision import Decision, Path
from .messages import Update
from .speaker import (BgpTable, FibEntry, Peer, Speaker, Tables, _arrival, _ipv4_address, check_asn, deliver,
                      ipv4_prefix, is_private_asn)

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["Fabric", "Convergence", "Message", "Sent", "TimelineEntry", "Session", "DESIGNS",
           "SPINE", "DEFAULT_SPINE_ASN", "DEFAULT_TOR_ASN_BASE", "ANNOUNCES_POD_PREFIXES",
           "load_balancer_announcements", "announcing_nodes"]

DESIGNS = ("full-mesh", "route-reflectors", "per-rack-ebgp")
#: The spine router's name, as in overlay/topology.py.
SPINE = "spine"
#: The spine's AS in the per-rack design (a private AS, RFC 6996).
DEFAULT_SPINE_ASN = 65100
#: ToR AS when the rack gives none: 65000 + rack number (rack-1 -> 65001).
DEFAULT_TOR_ASN_BASE = 65000
_FABRIC = ip_network(FABRIC_SUBNET)
#: Per ClusterNetwork ``cni``: does the node's BGP speaker announce its pod prefixes? The default of
#: :meth:`Fabric.from_cluster`'s ``announce_pods=``; the module docstring gives each source.
ANNOUNCES_POD_PREFIXES = {
    "calico-bgp": True,         # BIRD exports the IPPool's blocks (bird_ipam.cfg)
    "calico-ipip": True,        # BIRD too: IP-in-IP mode distributes the blocks over BGP
    "calico-vxlan": False,      # calico_backend: vxlan, no BIRD; Felix programs the routes
    "flannel-vxlan": False,     # flanneld speaks no BGP; MetalLB announces Services only
    "cilium-vxlan": False,      # Cilium BGP: PodCIDR only with a CiliumBGPAdvertisement asking for it
    "cilium-geneve": False,
    "native-routing": True,     # BGP is how the underlay learns the pod prefixes
}


@dataclass(frozen=True)
class Sent:
    """One UPDATE sent by ``sender`` to several peers of one update-group in ``step``."""

    step: int
    sender: str
    receivers: tuple[str, ...]
    update: Update


@dataclass(frozen=True)
class Message:
    """One UPDATE on one session."""

    step: int
    sender: str
    receiver: str
    update: Update

    def __str__(self) -> str:
        return f"step {self.step}: {self.sender} -> {self.receiver}: {_describe(self.update)}"


@dataclass(frozen=True)
class TimelineEntry:
    """What happened at one router in one step: a message sent, or a best path changed."""

    step: int
    router: str
    what: str

    def __str__(self) -> str:
        return f"{self.step:>3}  {self.router:<12} {self.what}"


@dataclass(frozen=True)
class Session:
    """A BGP session: ``a`` and ``b`` in router-ID order; ``reflector`` names the side that
    treats the other as its route-reflector client, if any."""

    a: str
    b: str
    kind: str
    reflector: str | None
    established: bool


@dataclass(frozen=True)
class Convergence:
    """The outcome of one event.

    Attributes:
        event: what happened, e.g. ``"session node-1 - node-2 down"``.
        steps: message steps until the fixed point (0 if nothing had to be sent).
        messages: UPDATEs exchanged (one per session they crossed).
        sent: the UPDATEs, as sent (one record per sender and update-group).
        decided: per step and prefix (:func:`~kubenet_lab.bgp.speaker.prefix_key`), the
            speakers whose Loc-RIB entry changed, with old and new decisions (None: no
            route); :attr:`changes` lists them one by one.
        snapshot: the Loc-RIBs after convergence, prefix key -> speaker -> decision, and
        routers: the speakers by name then; :meth:`rib` gives one router's Loc-RIB.
    """

    event: str
    steps: int
    messages: int
    sent: tuple[Sent, ...] = field(repr=False)
    decided: tuple[tuple[int, int, tuple[Speaker, ...], tuple, tuple], ...] = field(repr=False)
    snapshot: Mapping[int, Mapping[Speaker, Decision]] = field(repr=False)
    routers: Mapping[str, Speaker] = field(repr=False)

    @property
    def changes(self) -> list[tuple[int, str, IPv4Network, Decision | None]]:
        """(step, router, prefix, decision or None) for every Loc-RIB change, by step."""
        return [(step, speaker.name, (new or old).best.prefix, new)
                for step, _, speakers, olds, news in self.decided
                for speaker, old, new in zip(speakers, olds, news)]

    def rib(self, router: str) -> dict[IPv4Network, Decision]:
        """The router's Loc-RIB as it stood after this event (prefix -> decision)."""
        if router not in self.routers:
            raise NotFound(f"Convergence {self.event!r}", "router", router, "must be a router of the fabric then")
        speaker = self.routers[router]
        return {table[speaker].best.prefix: table[speaker] for table in self.snapshot.values() if speaker in table}

    def message_list(self) -> list[Message]:
        """Every UPDATE on every session, in the order they were delivered."""
        return [Message(s.step, s.sender, r, s.update) for s in self.sent for r in s.receivers]

    def timeline(self, router: str | None = None) -> list[TimelineEntry]:
        """Loc-RIB changes and the UPDATEs they caused, by step (for one router, or all).

        A router decides in the step its UPDATEs arrived and sends in the same step;
        the receivers process them in the next."""
        entries = []
        for s in self.sent:
            if router is None or s.sender == router:
                entries.append((s.step - 1, 1, s.sender, f"sends {_describe(s.update)} to {', '.join(s.receivers)}"))
        for step, name, prefix, decision in self.changes:
            if router is None or name == router:
                what = (f"{prefix} unreachable" if decision is None else
                        f"best {prefix} via {decision.best.next_hop} ({decision.step.value}"
                        f"{f', {len(decision.multipath)} ECMP paths' if len(decision.multipath) > 1 else ''})")
                entries.append((step, 0, name, what))
        entries.sort(key=lambda e: (e[0], e[1]))
        return [TimelineEntry(step, name, what) for step, _, name, what in entries]

    def __str__(self) -> str:
        changes = sum(len(news) for _, _, _, _, news in self.decided)
        return f"{self.event}: {self.messages} UPDATEs in {self.steps} steps, {changes} Loc-RIB changes"


def load_balancer_announcements(cluster: Cluster) -> dict[str, list[IPv4Network]]:
    """Node -> the LoadBalancer /32s its MetalLB speaker announces (see the module docstring).

    Ready endpoints are read from the Service's EndpointSlices (``conditions.ready``
    and ``nodeName``), as the speaker reads them; IPv6 ingress IPs are left out,
    the simulation carrying IPv4 unicast only.

    >>> from kubenet_lab import Cluster
    >>> c = Cluster(cni="calico-bgp", bgp_design="full-mesh", load_balancer_pools=[
    ...     {"name": "edge", "addresses": ["192.168.100.0/28"]}])
    >>> for i in (1, 2, 3):
    ...     _ = c.add_node(f"node-{i}")
    >>> _ = c.add_pod("web-1", node="node-2", labels={"app": "web"})
    >>> _ = c.add_service("web", selector={"app": "web"}, port=80, type="LoadBalancer",
    ...                   external_traffic_policy="Local")
    >>> load_balancer_announcements(c)
    {'node-1': [], 'node-2': [IPv4Network('192.168.100.0/32')], 'node-3': []}
    """
    announced: dict[str, list[IPv4Network]] = {node.name: [] for node in cluster.nodes}
    for service in cluster.services:
        prefixes = [ip_network(f"{ip}/32") for ip in service.load_balancer_ips if ip.version == 4]
        if service.type != "LoadBalancer" or not prefixes:
            continue
        ready = {endpoint.node_name for s in cluster.endpoint_slices(service) for endpoint in s.endpoints
                 if endpoint.ready}
        if not ready:
            continue                                  # MetalLB: "noEndpoints"
        speakers = ready if service.external_traffic_policy == "Local" else announced
        for node in announced:
            if node in speakers:
                announced[node].extend(p for p in prefixes if p not in announced[node])
    return announced


def announcing_nodes(cluster: Cluster, vip: object) -> list[str]:
    """The nodes whose speakers announce ``vip``'s /32 (an address or the /32 itself): the legs of
    the ECMP route it gets."""
    prefix = ip_network(vip)
    return [node for node, prefixes in load_balancer_announcements(cluster).items() if prefix in prefixes]


def _arrivals(update: Update, sender: Speaker, peer_address: IPv4Address, ebgp: bool) -> tuple:
    """The paths of one UPDATE a speaker of the fabric sent, ready for :func:`deliver`.

    What :meth:`Path.from_update` does per prefix, with the attributes looked up once per
    UPDATE: the fabric's speakers send IPv4 NLRI with NEXT_HOP (never MP_REACH_NLRI, never
    malformed), so ``nlri`` and ``withdrawn`` are all the feasible and unfeasible routes.
    """
    if not update.nlri:
        return ()
    found = {type(a): a for a in update.attributes}
    med, pref = found.get(MultiExitDisc), found.get(LocalPref)
    originator, clusters, communities = found.get(OriginatorID), found.get(ClusterList), found.get(Communities)
    as_path, next_hop, origin = found.get(ASPath) or ASPath(()), found[NextHop].next_hop, found[Origin].origin
    med = None if med is None else med.med
    pref = None if pref is None else pref.local_pref
    originator = None if originator is None else originator.originator_id
    clusters = () if clusters is None else clusters.cluster_list
    communities = () if communities is None else communities.communities
    return tuple(_arrival(Path(prefix, next_hop, as_path, origin, med, pref, peer_address, sender.router_id,
                               sender.asn, ebgp, 0, originator, clusters, communities))
                 for prefix in update.nlri)


def _describe(update: Update) -> str:
    """One line per UPDATE, attributes named as in RFC 4271/4456."""
    parts = []
    if update.withdrawn:
        parts.append("withdraw " + ", ".join(map(str, update.withdrawn)))
    if update.nlri:
        attributes = ", ".join(_attribute_text(a) for a in update.attributes)
        parts.append(f"{', '.join(map(str, update.nlri))} [{attributes}]")
    return "UPDATE " + "; ".join(parts)


def _attribute_text(attribute) -> str:
    if isinstance(attribute, Origin):
        return f"ORIGIN {attribute.origin.name}"
    if isinstance(attribute, ASPath):
        return f"AS_PATH {attribute}" if attribute.segments else "AS_PATH (empty)"
    if isinstance(attribute, NextHop):
        return f"NEXT_HOP {attribute.next_hop}"
    if isinstance(attribute, MultiExitDisc):
        return f"MULTI_EXIT_DISC {attribute.med}"
    if isinstance(attribute, LocalPref):
        return f"LOCAL_PREF {attribute.local_pref}"
    if isinstance(attribute, OriginatorID):
        return f"ORIGINATOR_ID {attribute.originator_id}"
    if isinstance(attribute, ClusterList):
        return "CLUSTER_LIST " + " ".join(map(str, attribute.cluster_list))
    if isinstance(attribute, Communities):
        return "COMMUNITIES " + " ".join(map(str, attribute.communities))
    return type(attribute).__name__


class Fabric:
    """The BGP speakers of a cluster and its underlay, and the simulation that runs them.

    Build one with :meth:`from_cluster`, or by hand with :meth:`add_speaker`
    and :meth:`connect`. Nothing is exchanged until :meth:`converge`.
    """

    def __init__(self):
        self.speakers: dict[str, Speaker] = {}
        self.history: list[Convergence] = []
        self._router_ids: dict[IPv4Address, str] = {}
        self._tables = Tables()
        self._order: dict[str, int] = {}
        self._plan: _Plan | None = None
        self._uplinks: dict[str, IPv4Address] = {}
        self._down: set[frozenset[str]] = set()
        self._peers: dict[tuple, Peer] = {}

    # -- building by hand -----------------------------------------------------------------

    def add_speaker(self, name: str, router_id: object, asn: int, **options) -> Speaker:
        """Create a :class:`Speaker` (same keyword options) that shares this fabric's caches."""
        if name in self.speakers:
            raise AlreadyExists("Fabric", "speaker", name, "is already a router of the fabric")
        router_id = _ipv4_address(f"Speaker {name}", "router_id", router_id)
        if router_id in self._router_ids:
            raise AlreadyExists("Fabric", "router_id", router_id,
                                f"is already the BGP Identifier of {self._router_ids[router_id]} "
                                "(RFC 6286 §2.1: unique within the AS; peers reject an OPEN with their own)")
        speaker = Speaker(name, router_id, asn, tables=self._tables, **options)
        self.speakers[name] = speaker
        self._router_ids[router_id] = name
        self._order[name] = int(router_id)
        return speaker

    def connect(self, a: str, b: str, a_address: object = None, b_address: object = None, *,
                reflector: str | None = None, next_hop_self: bool = False) -> None:
        """Configure a session between ``a`` and ``b``, each speaking from the given address
        (default: its router ID); ``reflector`` = ``a`` or ``b`` makes the other its client."""
        sa, sb = self.speaker(a), self.speaker(b)
        if reflector not in (None, a, b):
            raise InvalidValue(f"Session {a} - {b}", "reflector", reflector, f"must be None, {a!r} or {b!r}")
        if reflector is not None and sa.asn != sb.asn:
            raise InvalidValue(f"Session {a} - {b}", "reflector", reflector,
                               "must be unset on an eBGP session: route reflection is an iBGP mechanism (RFC 4456 §1)")
        if b in sa.peers or a in sb.peers:
            raise AlreadyExists("Fabric", "session", f"{a} - {b}", "is already configured")
        a_address = sa.router_id if a_address is None else _ipv4_address(f"Session {a} - {b}", "a_address", a_address)
        b_address = sb.router_id if b_address is None else _ipv4_address(f"Session {a} - {b}", "b_address", b_address)
        sa.add_peer(self._peer(sb, b_address, None if a_address == sa.router_id else a_address, reflector == a,
                               next_hop_self))
        sb.add_peer(self._peer(sa, a_address, None if b_address == sb.router_id else b_address, reflector == b,
                               next_hop_self))

    def _peer(self, other: Speaker, address: IPv4Address, local: IPv4Address | None, client: bool,
              next_hop_self: bool) -> Peer:
        """The Peer entry for ``other``; equal entries are shared (a full mesh of 1,000 nodes
        would otherwise hold a million copies of 1,000 values)."""
        if local is not None:
            return Peer(other.name, address, other.asn, other.router_id, local, client, next_hop_self)
        key = (other.name, int(address), client, next_hop_self)
        peer = self._peers.get(key)
        if peer is None or peer.asn != other.asn or peer.router_id != other.router_id:
            peer = self._peers[key] = Peer(other.name, address, other.asn, other.router_id, None, client,
                                           next_hop_self)
        return peer

    def speaker(self, name: str) -> Speaker:
        try:
            return self.speakers[name]
        except KeyError:
            raise NotFound("Fabric", "router", name, "must be a router of the fabric: "
                           + ", ".join(sorted(self.speakers)[:10])) from None

    # -- views ------------------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        return sum(len(s.peers) for s in self.speakers.values()) // 2

    def sessions(self) -> list[Session]:
        """Every configured session, once."""
        out = []
        for name, speaker in self.speakers.items():
            for peer in speaker.peers.values():
                other = self.speakers[peer.name]
                if (self._order[name], name) < (self._order[peer.name], peer.name):
                    reflector = (name if peer.route_reflector_client else
                                 peer.name if other.peers[name].route_reflector_client else None)
                    out.append(Session(name, peer.name, "eBGP" if peer.asn != speaker.asn else "iBGP", reflector,
                                       peer.name in speaker.established))
        return out

    def routes(self, router: str) -> list[str]:
        """The router's BGP routes as ``ip route`` prints them (``proto bird`` on nodes)."""
        return [str(entry) for entry in self.speaker(router).fib()]

    def fib(self, router: str) -> tuple[FibEntry, ...]:
        """The router's BGP routes as values: prefix, (gateway, device) next hops, proto.

        Names and devices are those of :mod:`kubenet_lab.overlay.topology`: a node's
        ``eth0``, a ToR's ``rack`` and ``uplink``, the spine's port named after each ToR;
        so each next hop becomes one ``Route(prefix, via, dev, proto)`` there.
        """
        return self.speaker(router).fib()

    def explain(self, router: str, prefix: object) -> str:
        """One line on the router's best path to ``prefix``: where it came from and which
        decision step chose it, with the ECMP paths installed beside it.

        >>> from kubenet_lab import Cluster
        >>> c = Cluster(cni="calico-bgp", bgp_design="full-mesh")
        >>> for i in (1, 2):
        ...     _ = c.add_node(f"node-{i}")
        >>> fabric = Fabric.from_cluster(c)
        >>> _ = fabric.converge()
        >>> fabric.explain("node-1", "10.244.1.0/24")
        'BGP best path of node-1 for 10.244.1.0/24: from node-2 (192.168.0.12), NEXT_HOP 192.168.0.12, AS_PATH (empty), only path'
        """
        prefix = ipv4_prefix(f"Fabric {router}", "prefix", prefix)
        decision = self.speaker(router).loc_rib.get(prefix)
        if decision is None:
            raise NotFound(f"Fabric {router}", "prefix", prefix, "must be in the router's Loc-RIB")
        best = decision.best
        speaker = self.speakers[router]
        peer = speaker._by_address.get(best.peer_address, "itself")
        as_path = f"AS_PATH {best.as_path}" if best.as_path.segments else "AS_PATH (empty)"
        text = (f"BGP best path of {router} for {prefix}: from {peer} ({best.peer_address}), "
                f"NEXT_HOP {best.next_hop}, {as_path}, {decision.step.value}")
        if speaker.multipath and len(decision.multipath) > 1:
            others = ", ".join(speaker._by_address.get(p.peer_address, str(p.peer_address))
                               for p in decision.multipath[1:])
            text += f"; multipath with {others} ({len(decision.multipath)} ECMP paths)"
        return text

    def show_ip_bgp(self, router: str) -> BgpTable:
        """The router's BGP table as FRR prints it (text with ``str()``, a table in a notebook)."""
        return self.speaker(router).show_ip_bgp()

    # -- the simulation ---------------------------------------------------------------------

    def converge(self, event: str = "sessions established") -> Convergence:
        """Bring up every configured session that is not down on purpose, then exchange
        UPDATEs to a fixed point. Returns the record, also appended to :attr:`history`."""
        self._tables.transitions.clear()
        pending = []
        for name in sorted(self.speakers, key=self._order.__getitem__):
            speaker = self.speakers[name]
            if len(speaker.established) == len(speaker.peers):
                continue
            down = [p for p in speaker.peers if frozenset((name, p)) in self._down] if self._down else ()
            peers = [p for p in speaker.peers if p not in down] if down else speaker.peers
            pending.extend((name, out) for out in speaker.sessions_up(peers))
        return self._run(event, pending)

    def _run(self, event: str, pending: list) -> Convergence:
        # The exchange allocates millions of small tuples and dicts, none of them in a reference cycle:
        # the cyclic garbage collector, run every few hundred allocations, would only re-scan them
        # (a tenth of a 1,000-node convergence). It is paused for the run and restored after.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._exchange(event, pending)
        finally:
            if paused:
                gc.enable()

    def _exchange(self, event: str, pending: list) -> Convergence:
        speakers, order, tables = self.speakers, self._order, self._tables
        sent: list[Sent] = []
        changes: list = []
        count = 0
        step = 0
        while True:
            changes.extend((step, *record) for record in tables.decide())
            exporting = sorted(tables.exporting, key=lambda s: order[s.name])
            tables.exporting.clear()
            for speaker in exporting:
                pending.extend((speaker.name, out) for out in speaker.outgoing())
            if not pending:
                break
            step += 1
            for name, out in pending:
                sender = speakers[name]
                names = out.receivers       # itemgetter looks a thousand names up at half map()'s cost
                receivers = itemgetter(*names)(speakers) if len(names) > 1 else (speakers[names[0]],)
                first = receivers[0]
                ebgp = first.asn != sender.asn
                update = out.update
                deliver(receivers, out.local_address, update.withdrawn, _arrivals(update, sender, out.local_address,
                                                                                   ebgp))
                sent.append(Sent(step, name, out.receivers, update))
                count += len(out.receivers)
            pending = []
        result = Convergence(event, step, count, tuple(sent), tuple(changes),
                             {key: dict(table) for key, table in tables.loc.items()}, dict(speakers))
        self.history.append(result)
        return result

    # -- events -------------------------------------------------------------------------------

    def session_down(self, a: str, b: str) -> Convergence:
        """The session between ``a`` and ``b`` fails (hold timer expiry, NOTIFICATION)."""
        self._session(a, b)
        self._down.add(frozenset((a, b)))
        self.speakers[a].session_down(b)
        self.speakers[b].session_down(a)
        return self._run(f"session {a} - {b} down", [])

    def session_up(self, a: str, b: str) -> Convergence:
        """The session comes (back) up: each side sends its Adj-RIB-Out (RFC 4271 §9.4)."""
        self._session(a, b)
        self._down.discard(frozenset((a, b)))
        pending = [(a, out) for out in self.speakers[a].session_up(b)]
        pending += [(b, out) for out in self.speakers[b].session_up(a)]
        return self._run(f"session {a} - {b} up", pending)

    def _session(self, a: str, b: str) -> None:
        if b not in self.speaker(a).peers:
            raise NotFound("Fabric", "session", f"{a} - {b}", "must be a configured session")

    def link_down(self, tor: str) -> Convergence:
        """The ToR's uplink to the spine fails: every session that rides it goes down."""
        return self._link(tor, down=True)

    def link_up(self, tor: str) -> Convergence:
        """The ToR's uplink is repaired: its sessions come back and exchange tables."""
        return self._link(tor, down=False)

    def _link(self, tor: str, *, down: bool) -> Convergence:
        if tor not in self._uplinks:
            raise NotFound("Fabric", "tor", tor, "must be a ToR with an uplink: " + ", ".join(sorted(self._uplinks)))
        uplink, speaker = self._uplinks[tor], self.speakers[tor]
        riding = [p.name for p in speaker.peers.values() if p.local_address == uplink]
        pending = []
        for peer in riding:
            key = frozenset((tor, peer))
            if down:
                self._down.add(key)
                speaker.session_down(peer)
                self.speakers[peer].session_down(tor)
            else:
                self._down.discard(key)
                pending += [(tor, out) for out in speaker.session_up(peer)]
                pending += [(peer, out) for out in self.speakers[peer].session_up(tor)]
        return self._run(f"link {tor} - {SPINE} {'down' if down else 'up'}", pending)

    def announce(self, router: str, prefix: object) -> Convergence:
        """``router`` starts originating ``prefix`` (a service /32, say)."""
        self.speaker(router).originate(prefix)
        return self._run(f"{router} announces {ipv4_prefix('Fabric', 'prefix', prefix)}", [])

    def withdraw(self, router: str, prefix: object) -> Convergence:
        """``router`` stops originating ``prefix``."""
        self.speaker(router).withdraw(prefix)
        return self._run(f"{router} withdraws {ipv4_prefix('Fabric', 'prefix', prefix)}", [])

    def leave(self, node: str) -> Convergence:
        """A node leaves the cluster: its speaker and sessions go, its peers flush its routes."""
        speaker = self.speaker(node)
        if self._plan is None or node not in self._plan.nodes:
            raise NotFound("Fabric", "node", node, "must be a cluster node of the fabric")
        for peer in list(speaker.peers):
            self.speakers[peer].remove_peer(node)
        del self.speakers[node], self._order[node], self._router_ids[speaker.router_id]
        self._tables.forget(speaker)
        self._plan.nodes.remove(node)
        return self._run(f"{node} leaves", [])

    def join(self, cluster: Cluster, node: str) -> Convergence:
        """A node joins: its speaker is configured as the design says and its sessions come up."""
        if self._plan is None:
            raise InvalidValue("Fabric", "join", node, "needs a fabric built by Fabric.from_cluster")
        self._plan.add_node(self, cluster, cluster.node(node))
        return self.converge(f"{node} joins")

    def sync(self, cluster: Cluster) -> list[Convergence]:
        """Make the speakers follow the cluster: a leave per removed node, a join per new one, and
        (unless ``services=`` was given) an announce or withdraw per LoadBalancer /32 whose
        announcing nodes changed, e.g. when the last ready endpoint on a node goes away."""
        if self._plan is None:
            raise InvalidValue("Fabric", "sync", cluster, "needs a fabric built by Fabric.from_cluster")
        plan = self._plan
        names = {n.name for n in cluster.nodes}
        results = [self.leave(n) for n in sorted(set(plan.nodes) - names)]
        if plan.follow_load_balancers:
            wanted = load_balancer_announcements(cluster)
            for node in plan.nodes:
                old, new = plan.services.get(node, []), wanted.get(node, [])
                results += [self.withdraw(node, p) for p in old if p not in new]
                results += [self.announce(node, p) for p in new if p not in old]
            plan.services = wanted
        results += [self.join(cluster, n) for n in sorted(names - set(plan.nodes))]
        return results

    # -- designs ------------------------------------------------------------------------------

    @classmethod
    def from_cluster(cls, cluster: Cluster, design: str | None = None, *,
                     route_reflectors: Iterable[str] | str | None = None, cluster_id: object = None,
                     node_asn: str | Mapping[str, int] = "per-rack", spine_asn: int = DEFAULT_SPINE_ASN,
                     allowas_in: int = 0, external_peers: Iterable[tuple[object, int]] = (),
                     services: Mapping[str, Iterable[object]] | None = None, announce_pods: bool | None = None,
                     multipath_relax: bool = True, allow_public_asn: bool = False) -> Fabric:
        """The speakers and sessions of one design (default: the cluster's ``bgp.design``).

        Args:
            route_reflectors: node names, or ``"tors"`` (default: the two nodes with the lowest IPs).
            cluster_id: one CLUSTER_ID for all reflectors (Calico ``routeReflectorClusterID``);
                default: each uses its router ID (RFC 4456 §7).
            node_asn: ``"per-rack"``, ``"cluster"`` or {rack name: AS} (per-rack-ebgp only).
            spine_asn: the spine's AS (per-rack-ebgp).
            allowas_in: copies of its own AS a node accepts in an AS_PATH.
            external_peers: (address, AS) or (address, AS, name) of data-centre routers every
                node peers with (default names ``external-1``, ...).
            services: {node: [prefix, ...]}: extra prefixes a node announces (service IPs);
                default: the LoadBalancer /32s MetalLB would announce
                (:func:`load_balancer_announcements`), which :meth:`sync` keeps up to date.
            announce_pods: whether each node announces its podCIDR (or Calico blocks); default:
                what the cluster's CNI does (:data:`ANNOUNCES_POD_PREFIXES`, see the module
                docstring): yes where BGP routes the pods, no on an overlay.
            multipath_relax: ToRs and spine use ECMP across neighbour ASes
                (``bgp bestpath as-path multipath-relax``, what RFC 7938 fabrics set).
            allow_public_asn: accept public AS numbers for the cluster's own routers.
        """
        design = cluster.network.bgp_design if design is None else design
        if design not in DESIGNS:
            raise InvalidValue("Fabric", "design", design, "must be one of " + ", ".join(DESIGNS)
                               + " (ClusterNetwork spec.bgp.design)")
        if announce_pods is None:
            announce_pods = ANNOUNCES_POD_PREFIXES[cluster.network.cni]
        elif not isinstance(announce_pods, bool):
            raise InvalidValue("Fabric", "announce_pods", announce_pods, "must be True, False or None (the CNI's "
                               "default)")
        plan = _Plan(cluster, design, route_reflectors, cluster_id, node_asn, spine_asn, allowas_in,
                     external_peers, services, announce_pods, multipath_relax, allow_public_asn)
        fabric = cls()
        fabric._plan = plan
        plan.build(fabric, cluster)
        return fabric


class _Plan:
    """How one design turns cluster nodes into speakers and sessions (also used by :meth:`Fabric.join`)."""

    def __init__(self, cluster, design, route_reflectors, cluster_id, node_asn, spine_asn, allowas_in,
                 external_peers, services, announce_pods, multipath_relax, allow_public_asn):
        net = cluster.network
        self.design = design
        self.announce_pods = announce_pods
        self.asn = check_asn("ClusterNetwork", "spec.bgp.asn", net.bgp_asn)
        self.allow_public = allow_public_asn
        self._private("ClusterNetwork", "spec.bgp.asn", self.asn)
        self.racks = net.racks
        self.links = dict(zip((r.name for r in net.racks), _FABRIC.subnets(new_prefix=31)))
        self.allowas_in = allowas_in
        self.multipath_relax = multipath_relax
        self.cluster_id = None if cluster_id is None else _ipv4_address("Fabric", "cluster_id", cluster_id)
        # without services=, the LoadBalancer /32s, kept up to date by Fabric.sync
        self.follow_load_balancers = services is None
        if services is None:
            services = load_balancer_announcements(cluster)
        self.services = {node: [ipv4_prefix(f"Node {node}", "services", p) for p in prefixes]
                         for node, prefixes in services.items()}
        for node in self.services:
            cluster.node(node)
        self.nodes: list[str] = []
        if design in ("per-rack-ebgp",) or route_reflectors == "tors":
            if not net.racks:
                raise InvalidValue("Fabric", "design", design if route_reflectors != "tors" else "tors",
                                   "needs racks (ClusterNetwork spec.underlay.racks): ToRs and a spine to peer with")
        self.tor_asns = {}
        for i, rack in enumerate(net.racks):
            asn = rack.tor_asn if rack.tor_asn is not None else DEFAULT_TOR_ASN_BASE + i + 1
            self.tor_asns[rack.name] = self._private(f"Rack {rack.name}", "tor.asn", check_asn(
                f"Rack {rack.name}", "tor.asn", asn))
        self.spine_asn = self._private("Fabric", "spine_asn", check_asn("Fabric", "spine_asn", spine_asn))
        self.node_asns = self._node_asns(node_asn) if design == "per-rack-ebgp" else {}
        if design == "per-rack-ebgp":
            self._check_per_rack()
        self.reflectors: list[str] | str = []
        if design == "route-reflectors":
            self.reflectors = self._reflectors(cluster, route_reflectors)
        self.external = []
        for i, peer in enumerate(external_peers):
            if not isinstance(peer, (tuple, list)) or len(peer) not in (2, 3):
                raise InvalidValue("Fabric", "external_peers", peer, "must be (address, AS) or (address, AS, name)")
            address = _ipv4_address("Fabric", "external_peers", peer[0])
            name = peer[2] if len(peer) == 3 else f"external-{i + 1}"
            if not isinstance(name, str) or not name:
                raise InvalidValue("Fabric", "external_peers", peer, "must name the router with a non-empty string")
            self.external.append((name, address, check_asn("Fabric", "external_peers", peer[1])))

    def _private(self, obj: str, field: str, asn: int) -> int:
        if not self.allow_public and not is_private_asn(asn):
            raise InvalidValue(obj, field, asn,
                               "must be a private AS (64512-65534 or 4200000000-4294967294, RFC 6996) for a "
                               "router of the cluster: a public AS belongs to someone's network "
                               "(pass allow_public_asn=True if it is yours)")
        return asn

    def _node_asns(self, node_asn) -> dict[str, int]:
        if node_asn == "cluster":
            return {r.name: self.asn for r in self.racks}
        if node_asn == "per-rack":
            return {r.name: self._private(f"Rack {r.name}", "node AS", check_asn(f"Rack {r.name}", "node AS",
                                                                                 self.asn + i + 1))
                    for i, r in enumerate(self.racks)}
        if isinstance(node_asn, Mapping):
            missing = [r.name for r in self.racks if r.name not in node_asn]
            if missing:
                raise InvalidValue("Fabric", "node_asn", dict(node_asn), "must give an AS for every rack: " +
                                   ", ".join(missing))
            return {r.name: self._private(f"Rack {r.name}", "node AS", check_asn(f"Rack {r.name}", "node AS",
                                                                                 node_asn[r.name]))
                    for r in self.racks}
        raise InvalidValue("Fabric", "node_asn", node_asn, "must be 'per-rack', 'cluster' or {rack: AS}")

    def _check_per_rack(self) -> None:
        seen_nodes: dict[int, str] = {}
        seen_tors: dict[int, str] = {}
        for rack in self.racks:
            node_as, tor_as = self.node_asns[rack.name], self.tor_asns[rack.name]
            if node_as == tor_as:
                raise InvalidValue(f"Rack {rack.name}", "tor.asn", tor_as,
                                   f"must differ from its nodes' AS {node_as}: per-rack-ebgp peers them over eBGP")
            if tor_as == self.spine_asn:
                raise InvalidValue(f"Rack {rack.name}", "tor.asn", tor_as,
                                   f"must differ from the spine's AS {self.spine_asn}: ToR and spine peer over eBGP")
            if tor_as in seen_tors:
                raise InvalidValue(f"Rack {rack.name}", "tor.asn", tor_as,
                                   f"must differ from {seen_tors[tor_as]}'s: each ToR would drop the other's routes "
                                   "(own AS in AS_PATH, RFC 4271 §9.1.2)")
            if node_as in seen_nodes and self.allowas_in == 0:
                raise InvalidValue(f"Rack {rack.name}", "node AS", node_as,
                                   f"is also the AS of the nodes in {seen_nodes[node_as]}: they would drop each "
                                   "other's routes (own AS in AS_PATH, RFC 4271 §9.1.2) - set allowas_in=1 "
                                   "(Calico BGPPeer numAllowedLocalASNumbers, BIRD 'allow local as')")
            seen_nodes.setdefault(node_as, rack.name)
            seen_tors[tor_as] = rack.name
        for rack in self.racks:
            if self.node_asns[rack.name] in seen_tors or self.node_asns[rack.name] == self.spine_asn:
                raise InvalidValue(f"Rack {rack.name}", "node AS", self.node_asns[rack.name],
                                   "must not be the AS of a ToR or the spine")

    def _reflectors(self, cluster, route_reflectors):
        if route_reflectors == "tors":
            if not self.racks:
                raise InvalidValue("Fabric", "route_reflectors", "tors", "needs racks with ToRs")
            return "tors"
        if route_reflectors is None:
            nodes = sorted(cluster.nodes, key=lambda n: (n.ip.version, int(n.ip)) if n.ip else (9, 0))
            return [n.name for n in nodes[:2]]
        names = [route_reflectors] if isinstance(route_reflectors, str) else list(route_reflectors)
        for name in names:
            cluster.node(name)
        if not names:
            raise InvalidValue("Fabric", "route_reflectors", names, "must name at least one node")
        return names

    # -- building -----------------------------------------------------------------------------

    def build(self, fabric: Fabric, cluster) -> None:
        if self.design == "per-rack-ebgp" or self.reflectors == "tors":
            self._build_fabric_routers(fabric)
        for node in sorted(cluster.nodes, key=lambda n: int(n.ip) if n.ip and n.ip.version == 4 else -1):
            self.add_node(fabric, cluster, node)

    def _build_fabric_routers(self, fabric: Fabric) -> None:
        ibgp = self.reflectors == "tors"
        spine_id = next(iter(self.links.values())).network_address
        fabric.add_speaker(SPINE, spine_id, self.asn if ibgp else self.spine_asn,
                                   interfaces=[(link, rack) for rack, link in
                                               ((r.tor, self.links[r.name]) for r in self.racks)],
                                   multipath_relax=self.multipath_relax)
        tors = []
        for rack in self.racks:
            link = self.links[rack.name]
            tor = fabric.add_speaker(rack.tor, rack.subnet.network_address + 1,
                                     self.asn if ibgp else self.tor_asns[rack.name],
                                     interfaces=[(rack.subnet, "rack"), (link, "uplink")],
                                     gateway=(link.network_address, "uplink"),
                                     cluster_id=self.cluster_id if ibgp else None,
                                     multipath_relax=self.multipath_relax)
            fabric._uplinks[rack.tor] = link.network_address + 1
            tor.originate(rack.subnet)
            fabric.connect(rack.tor, SPINE, link.network_address + 1, link.network_address,
                           reflector=rack.tor if ibgp else None)
            tors.append(tor)
        if ibgp:       # the reflectors meshed over the spine (multihop iBGP between uplink addresses)
            for i, a in enumerate(tors):
                for b in tors[i + 1:]:
                    fabric.connect(a.name, b.name, fabric._uplinks[a.name], fabric._uplinks[b.name])

    def add_node(self, fabric: Fabric, cluster, node) -> None:
        obj = f"Node {node.name}"
        if node.ip is None or node.ip.version != 4:
            raise InvalidValue(obj, "status.addresses", node.ip, "must include an IPv4 InternalIP to peer from")
        rack = cluster.network.rack_of(node.name)
        if rack is not None:
            subnet, gateway = rack.subnet, (rack.subnet.network_address + 1, "eth0")
        else:
            subnet = cluster.network.segment_subnet
            subnet, gateway = (subnet if node.ip in subnet else ip_network(f"{node.ip}/24", strict=False)), None
        asn = self.node_asns[rack.name] if self.design == "per-rack-ebgp" else self.asn
        cluster_id = self.cluster_id if self.design == "route-reflectors" and node.name in self.reflectors else None
        speaker = fabric.add_speaker(node.name, node.ip, asn, proto="bird", interfaces=[(subnet, "eth0")],
                                     gateway=gateway, allowas_in=self.allowas_in, cluster_id=cluster_id)
        if self.announce_pods:
            for prefix in list(node.pod_cidrs) or cluster.blocks(node.name):
                if prefix.version == 4:
                    speaker.originate(prefix)
        for prefix in self.services.get(node.name, ()):
            speaker.originate(prefix)
        existing = list(self.nodes)
        self.nodes.append(node.name)
        if self.design == "full-mesh":
            for other in existing:
                fabric.connect(node.name, other)
        elif self.design == "route-reflectors" and self.reflectors == "tors":
            if rack is None:
                raise InvalidValue(obj, "rack", None, "must be in a rack: its ToR is its route reflector")
            fabric.connect(node.name, rack.tor, node.ip, rack.subnet.network_address + 1, reflector=rack.tor)
        elif self.design == "route-reflectors":
            for other in existing:
                if node.name in self.reflectors and other in self.reflectors:
                    fabric.connect(node.name, other)
                elif node.name in self.reflectors or other in self.reflectors:
                    fabric.connect(node.name, other, reflector=node.name if node.name in self.reflectors else other)
        else:
            if rack is None:
                raise InvalidValue(obj, "rack", None, "must be in a rack: per-rack-ebgp peers it with its ToR")
            fabric.connect(node.name, rack.tor, node.ip, rack.subnet.network_address + 1)
        for name, address, asn in self.external:
            if name not in fabric.speakers:
                on = next((r.subnet for r in self.racks if address in r.subnet), None)
                if on is None:
                    on = subnet if address in subnet else None
                if on is None:
                    raise InvalidValue("Fabric", "external_peers", str(address),
                                       "must be on a node subnet: eBGP peers are directly connected (TTL 1)")
                rack_of = next((r for r in self.racks if address in r.subnet), None)
                fabric.add_speaker(name, address, asn, interfaces=[(on, "eth0")],
                                   gateway=None if rack_of is None else (rack_of.subnet.network_address + 1, "eth0"),
                                   multipath_relax=self.multipath_relax)
            fabric.connect(node.name, name)
