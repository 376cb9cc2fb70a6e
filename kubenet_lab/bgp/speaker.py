"""A BGP speaker as the fabric simulation runs it: RIBs, policy, and the iBGP/eBGP rules.

Every Calico node runs BIRD, every ToR and spine runs a routing daemon; each
is one :class:`Speaker`. A speaker holds the three RIBs of RFC 4271 §3.2 and
the forwarding table the kernel gets:

* **Adj-RIB-In**, per peer: the paths the peer sent and import policy kept;
* **Loc-RIB**: per prefix, the :class:`~kubenet_lab.bgp.decision.Decision` of
  the RFC 4271 §9.1 decision process, which remembers the step that chose;
* **Adj-RIB-Out**, per peer: what the speaker advertises, i.e. its best paths
  after the export rules below (computed from the Loc-RIB, as BIRD does: it
  keeps no copy, it re-runs the export filter);
* **FIB**: the best path and its ECMP siblings as next hops, resolved to an
  outgoing interface the way BIRD's ``gateway recursive`` does.

The rules that decide who hears what (datapath.md §2.6):

* eBGP (RFC 4271 §5.1.2, §5.1.3): the sender prepends its AS to AS_PATH and
  sets NEXT_HOP to its own address on the session (next-hop-self); LOCAL_PREF,
  ORIGINATOR_ID and CLUSTER_LIST stay inside the AS.
* iBGP (RFC 4271 §9.2): a route learnt from an iBGP peer is *not* sent to
  another iBGP peer - hence the full mesh - unless the speaker is a route
  reflector (RFC 4456 §6): from a client to every other client and non-client,
  from a non-client to clients only, adding ORIGINATOR_ID (the originator's
  router ID) and prepending its CLUSTER_ID to CLUSTER_LIST; NEXT_HOP and
  LOCAL_PREF pass unchanged.
* On receipt: a path whose AS_PATH holds the speaker's own AS (more often than
  ``allowas_in`` allows, BIRD ``allow local as``, Calico
  ``numAllowedLocalASNumbers``), whose ORIGINATOR_ID is the speaker's router ID,
  or - at a reflector - whose CLUSTER_LIST holds its CLUSTER_ID, is dropped
  (RFC 4271 §9.1.2, RFC 4456 §8).
* A route is never sent back to the peer it was learnt from (BIRD and FRR both
  skip the source), and a locally originated route beats learnt ones, as BIRD's
  static ``preference`` 200 beats BGP's 100 and FRR's weight 32768 beats 0.

The RIBs themselves live in a :class:`Tables`, filed prefix first and shared by
the speakers of one fabric (a thousand routers' entries for one prefix side by
side, so one UPDATE fanned out to all of them costs a few C-level passes);
each speaker reads its own slice, and a speaker built alone gets its own.

Messages are real :class:`~kubenet_lab.bgp.messages.Update` objects, so their
content can be shown and ``update.encode()`` gives the bytes on the wire; the
simulation itself never encodes.

Two nodes of Calico's full mesh (AS 64512), node-1 announcing its podCIDR:

>>> n1 = Speaker("node-1", "192.168.0.11", 64512, proto="bird", interfaces=[("192.168.0.0/24", "eth0")])
>>> n2 = Speaker("node-2", "192.168.0.12", 64512, proto="bird", interfaces=[("192.168.0.0/24", "eth0")])
>>> n1.add_peer(Peer("node-2", "192.168.0.12", 64512, "192.168.0.12"))
>>> n2.add_peer(Peer("node-1", "192.168.0.11", 64512, "192.168.0.11"))
>>> n1.session_up("node-2"); n2.session_up("node-1")
[]
[]
>>> n1.originate("10.244.1.0/24")
>>> n1.decide()
[IPv4Network('10.244.1.0/24')]
>>> [(out.receivers, out.update.attribute(NextHop).next_hop) for out in n1.outgoing()]
[(('node-2',), IPv4Address('192.168.0.11'))]
>>> n2.receive("node-1", n1.adj_rib_out_update("node-2", "10.244.1.0/24"))
>>> n2.decide()
[IPv4Network('10.244.1.0/24')]
>>> [str(r) for r in n2.fib()]
['10.244.1.0/24 via 192.168.0.11 dev eth0 proto bird']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections import Counter
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not
from typing import NamedTuple
from ipaddress import IPv4Address, IPv4Network

from ..addresses import parse_address, parse_network
from ..errors import AlreadyExists, InvalidValue, NotFound
from ..tables import Table
from .attributes import ASPath, ClusterList, Communities, LocalPref, MultiExitDisc, NextHop, Origin, OriginatorID
from .decision import DEFAULT_LOCAL_PREF, Decision, Path, Step, best_path
from .messages import Update
from .wire import AS_TRANS, MAX_AS

__all__ = ["Speaker", "Peer", "Outgoing", "PrefixList", "PrefixListEntry", "FibEntry", "BgpTable", "check_asn",
           "is_private_asn", "ipv4_prefix", "prefix_key", "deliver", "Tables", "LOCAL_WEIGHT"]

#: FRR's weight for locally originated routes, shown in ``show ip bgp`` (0 for learnt ones).
LOCAL_WEIGHT = 32768
#: The NEXT_HOP a router shows for its own routes (FRR ``0.0.0.0``; BIRD "unreachable"/blackhole).
_SELF = IPv4Address("0.0.0.0")
_ORIGIN_CODE = {0: "i", 1: "e", 2: "?"}

#: AS numbers that may not name a router (value: the reason).
_RESERVED_ASNS = {
    0: "AS 0 is reserved and may not be used in a session (RFC 7607 §2)",
    AS_TRANS: "AS 23456 is AS_TRANS, the placeholder 2-octet speakers see for a 4-octet AS (RFC 6793 §9)",
    65535: "AS 65535 is reserved (RFC 7300)",
    MAX_AS: "AS 4294967295 is reserved (RFC 7300)",
}


def check_asn(obj: str, field: str, asn: object) -> int:
    """``asn`` as an int, or InvalidValue for values no router may use.

    >>> check_asn("Speaker tor-1", "asn", 23456)
    Traceback (most recent call last):
    ...
    kubenet_lab.errors.InvalidValue: Speaker tor-1: 'asn' must be a usable AS number: AS 23456 is AS_TRANS, \
the placeholder 2-octet speakers see for a 4-octet AS (RFC 6793 §9) (got 23456)
    """
    if isinstance(asn, bool) or not isinstance(asn, int) or not 0 <= asn <= MAX_AS:
        raise InvalidValue(obj, field, asn, "must be an AS number from 1 to 4294967294")
    if asn in _RESERVED_ASNS:
        raise InvalidValue(obj, field, asn, "must be a usable AS number: " + _RESERVED_ASNS[asn])
    return asn


def is_private_asn(asn: int) -> bool:
    """True for the private-use ranges 64512-65534 and 4200000000-4294967294 (RFC 6996 §5).

    A cluster's own ASes should come from here: a public AS belongs to somebody
    else's network, and announcing it leaks into the Internet's view of theirs.

    >>> is_private_asn(64512), is_private_asn(65100), is_private_asn(13335)
    (True, True, False)
    """
    return 64512 <= asn <= 65534 or 4200000000 <= asn <= 4294967294


def ipv4_prefix(obj: str, field: str, value: object) -> IPv4Network:
    """``value`` as an IPv4 prefix (the simulation carries IPv4 unicast), or InvalidValue."""
    prefix = parse_network(value, obj=obj, field=field)
    if not isinstance(prefix, IPv4Network):
        raise InvalidValue(obj, field, value, "must be an IPv4 prefix: the simulation carries IPv4 unicast only")
    return prefix


def _ipv4_address(obj: str, field: str, value: object) -> IPv4Address:
    address = parse_address(value, obj=obj, field=field)
    if not isinstance(address, IPv4Address):
        raise InvalidValue(obj, field, value, "must be an IPv4 address")
    return address


# -- policy ---------------------------------------------------------------------------------

_ENTRY = re.compile(r"^(permit|deny)\s+(\S+)(?:\s+ge\s+(\d+))?(?:\s+le\s+(\d+))?$")


@dataclass(frozen=True)
class PrefixListEntry:
    """One line of an ``ip prefix-list``: ``permit 10.244.0.0/16 le 26``.

    Without ``ge``/``le`` only the prefix itself matches; with them, any prefix
    inside it whose length is in ``[ge or len, le or 32]`` (FRR and Cisco semantics).
    """

    action: str
    prefix: IPv4Network
    ge: int | None = None
    le: int | None = None

    def matches(self, prefix: IPv4Network) -> bool:
        if self.ge is None and self.le is None:
            return prefix == self.prefix
        low = self.prefix.prefixlen if self.ge is None else self.ge
        high = 32 if self.le is None else self.le
        return low <= prefix.prefixlen <= high and prefix.subnet_of(self.prefix)


@dataclass(frozen=True)
class PrefixList:
    """An ``ip prefix-list``: entries tried in order, the first match decides, no match denies.

    >>> pl = PrefixList(["permit 10.244.0.0/16 le 26", "permit 10.96.0.0/12 ge 32"])
    >>> [pl.permits(ipv4_prefix("x", "p", p)) for p in ("10.244.1.0/24", "10.244.1.7/32", "10.96.0.10/32")]
    [True, False, True]
    """

    entries: tuple[PrefixListEntry, ...]

    def __post_init__(self):
        parsed = []
        for entry in (self.entries,) if isinstance(self.entries, str) else self.entries:
            if isinstance(entry, PrefixListEntry):
                parsed.append(entry)
                continue
            match = _ENTRY.match(entry.strip()) if isinstance(entry, str) else None
            if match is None:
                raise InvalidValue("PrefixList", "entries", entry,
                                   "must be lines like 'permit 10.244.0.0/16 le 26' or 'deny 0.0.0.0/0 le 32'")
            action, prefix, ge, le = match.groups()
            prefix = ipv4_prefix("PrefixList", "entries", prefix)
            ge, le = (None if ge is None else int(ge)), (None if le is None else int(le))
            if not prefix.prefixlen <= (ge or prefix.prefixlen) <= (le or 32) <= 32:
                raise InvalidValue("PrefixList", "entries", entry, "must satisfy len <= ge <= le <= 32")
            parsed.append(PrefixListEntry(action, prefix, ge, le))
        object.__setattr__(self, "entries", tuple(parsed))

    def permits(self, prefix: IPv4Network) -> bool:
        for entry in self.entries:
            if entry.matches(prefix):
                return entry.action == "permit"
        return False


@dataclass(frozen=True, slots=True)
class Peer:
    """A neighbour as configured on one speaker (``neighbor <address> remote-as <asn>``).

    Attributes:
        name: the peer speaker's name in the fabric (``node-2``, ``tor-1``, ``spine``).
        address: the peer's address on this session; paths it sends carry it as peer address.
        asn: the peer's AS: equal to ours means iBGP, different means eBGP.
        router_id: the peer's BGP Identifier.
        local_address: our address on this session (``update-source``), the NEXT_HOP we send
            with next-hop-self; None means the speaker's router ID, as on a Calico node.
        route_reflector_client: we reflect routes to this peer (``neighbor .. route-reflector-client``).
        next_hop_self: rewrite NEXT_HOP to ``local_address`` for eBGP-learnt routes sent
            to this iBGP peer too (always done for eBGP peers).
        import_filter, export_filter: prefix lists applied to what we accept and send.
    """

    name: str
    address: IPv4Address
    asn: int
    router_id: IPv4Address
    local_address: IPv4Address | None = None
    route_reflector_client: bool = False
    next_hop_self: bool = False
    import_filter: PrefixList | None = None
    export_filter: PrefixList | None = None

    def __post_init__(self):
        obj = f"Peer {self.name}"
        object.__setattr__(self, "address", _ipv4_address(obj, "address", self.address))
        object.__setattr__(self, "router_id", _ipv4_address(obj, "router_id", self.router_id))
        if self.local_address is not None:
            object.__setattr__(self, "local_address", _ipv4_address(obj, "local_address", self.local_address))
        check_asn(obj, "asn", self.asn)


@dataclass(frozen=True)
class FibEntry:
    """One route a speaker installs in the kernel, printed the way ``ip route`` prints it.

    ``nexthops`` holds (gateway, device) pairs; several make an ECMP route.

    >>> from ipaddress import ip_address, ip_network
    >>> print(FibEntry(ip_network("10.96.0.10/32"), ((ip_address("172.31.255.1"), "tor-1"),
    ...                                              (ip_address("172.31.255.3"), "tor-2")), "bgp"))
    10.96.0.10 proto bgp nexthop via 172.31.255.1 dev tor-1 weight 1 nexthop via 172.31.255.3 dev tor-2 weight 1
    """

    prefix: IPv4Network
    nexthops: tuple[tuple[IPv4Address, str], ...]
    proto: str

    def __str__(self) -> str:
        # iproute2 prints a host route without its /32
        dst = str(self.prefix.network_address) if self.prefix.prefixlen == 32 else str(self.prefix)
        if len(self.nexthops) == 1:
            via, dev = self.nexthops[0]
            return f"{dst} via {via} dev {dev} proto {self.proto}"
        hops = " ".join(f"nexthop via {via} dev {dev} weight 1" for via, dev in self.nexthops)
        return f"{dst} proto {self.proto} {hops}"


@dataclass(frozen=True)
class BgpTable:
    """``show ip bgp`` of one speaker: FRR's text (``str()``) and a notebook table."""

    header: str
    table: Table

    def text(self) -> str:
        columns = f"   {'Network':<17}{'Next Hop':<20}{'Metric':>6} {'LocPrf':>6} {'Weight':>6} Path"
        lines = [self.header, "", columns]
        for status, network, next_hop, metric, locprf, weight, path in self.table.rows:
            lines.append(f"{status:<3}{network:<17}{next_hop:<20}{metric:>6} {locprf:>6} {weight:>6} {path}")
        prefixes = sum(1 for row in self.table.rows if row[1])
        lines += ["", f"Displayed  {prefixes} routes and {len(self.table.rows)} total paths"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return f"<pre>{self.header}</pre>" + self.table.html()


# -- the speaker ------------------------------------------------------------------------------

class _Group(NamedTuple):
    """Peers that get identical UPDATEs (FRR's update-group): same kind, same local address."""

    ebgp: bool
    client: bool
    local_address: IPv4Address
    next_hop_self: bool
    export_filter: PrefixList | None


class Outgoing(NamedTuple):
    """An UPDATE a speaker sends to some of its peers, from its address ``local_address``."""

    receivers: tuple[str, ...]
    update: Update
    local_address: IPv4Address


_EMPTY: tuple = ()
_UNDECIDED = object()      # a cache miss (None is a decision: no eligible path)


class Speaker:
    """One BGP router of the simulation.

    Args:
        name: the router's name in the fabric (a node name, ``tor-1``, ``spine``).
        router_id: BGP Identifier (Calico uses the node's IPv4 address).
        asn: local AS.
        cluster_id: CLUSTER_ID when this speaker reflects routes (RFC 4456 §7;
            default: its router ID; Calico's ``routeReflectorClusterID``).
        proto: the ``proto`` its routes get in the kernel: ``bird`` on Calico nodes, ``bgp`` for FRR.
        interfaces: connected (subnet, device) pairs, used to resolve next hops.
        gateway: (address, device) of the default route, for next hops on no connected subnet.
        multipath: install every ECMP path (BIRD ``merge paths on``, FRR ``maximum-paths``).
        multipath_relax: ECMP across different neighbour ASes (``bgp bestpath as-path multipath-relax``).
        allowas_in: how often our own AS may appear in a received AS_PATH (default 0).
        tables: the :class:`Tables` it keeps its RIBs in, shared by the speakers of one
            fabric; a speaker alone gets its own.
    """

    def __init__(self, name: str, router_id: object, asn: int, *, cluster_id: object = None, proto: str = "bgp",
                 interfaces=(), gateway: tuple[object, str] | None = None, multipath: bool = True,
                 multipath_relax: bool = False, allowas_in: int = 0, tables: Tables | None = None):
        obj = f"Speaker {name}"
        self.name = name
        self.router_id = _ipv4_address(obj, "router_id", router_id)
        self._rid = int(self.router_id)
        self.asn = check_asn(obj, "asn", asn)
        self.cluster_id = self.router_id if cluster_id is None else _ipv4_address(obj, "cluster_id", cluster_id)
        self.proto = proto
        self.interfaces = tuple((ipv4_prefix(obj, "interfaces", net), dev) for net, dev in interfaces)
        self.gateway = None if gateway is None else (_ipv4_address(obj, "gateway", gateway[0]), gateway[1])
        self.multipath = multipath
        self.multipath_relax = multipath_relax
        if isinstance(allowas_in, bool) or not isinstance(allowas_in, int) or not 0 <= allowas_in <= 10:
            raise InvalidValue(obj, "allowas_in", allowas_in, "must be an integer from 0 to 10")
        self.allowas_in = allowas_in
        self.peers: dict[str, Peer] = {}
        self.established: set[str] = set()
        self._by_address: dict[IPv4Address, str] = {}
        self._groups: dict[_Group, list[str]] | None = None
        self._group_of: dict[str, _Group] = {}
        self._import_filters: dict[IPv4Address, PrefixList] = {}
        self._reflector = False
        self._ebgp_peers = 0
        self._local: dict[int, tuple[Path]] = {}        # prefix_key -> our own path
        self._changes: list[tuple[IPv4Network, Decision | None, Decision | None]] = []
        self._tables = Tables() if tables is None else tables
        # what the decision process needs, in one value (allowas-in: the receive check already
        # counted our AS, so best_path must not drop such paths again)
        self._profile = (self.asn if not allowas_in else None, multipath_relax)
        self._tables.profiles.add(self._profile)
        self._tables.by_rid[self._rid] = self

    def __repr__(self) -> str:
        return f"Speaker({self.name!r}, {str(self.router_id)!r}, {self.asn})"

    # -- configuration --------------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        """Configure a neighbour; the session stays down until :meth:`session_up`."""
        if peer.name in self.peers:
            raise AlreadyExists(f"Speaker {self.name}", "peers", peer.name, "is already a peer")
        if peer.address in self._by_address:
            raise AlreadyExists(f"Speaker {self.name}", "peers", str(peer.address),
                                f"is already the address of peer {self._by_address[peer.address]}")
        self.peers[peer.name] = peer
        self._by_address[peer.address] = peer.name
        if peer.import_filter is not None:
            self._import_filters[peer.address] = peer.import_filter
        self._groups = None
        self._reflector = self._reflector or peer.route_reflector_client
        self._ebgp_peers += peer.asn != self.asn
        if self._reflector or self._ebgp_peers:
            self._tables.exporters.add(self)
        if self._reflector or self._import_filters:
            self._tables.careful.add(self)

    def remove_peer(self, name: str) -> None:
        """Unconfigure a neighbour, dropping its session and every path it sent."""
        self._peer(name)
        self.session_down(name)
        peer = self.peers.pop(name)
        del self._by_address[peer.address]
        self._import_filters.pop(peer.address, None)
        self._ebgp_peers -= peer.asn != self.asn
        self._groups = None
        self._reflector = any(p.route_reflector_client for p in self.peers.values())
        if not (self._reflector or self._ebgp_peers):
            self._tables.exporters.discard(self)
        if not (self._reflector or self._import_filters):
            self._tables.careful.discard(self)

    def _peer(self, name: str) -> Peer:
        try:
            return self.peers[name]
        except KeyError:
            raise NotFound(f"Speaker {self.name}", "peer", name, "must be a configured peer") from None

    def is_ebgp(self, peer: str) -> bool:
        return self._peer(peer).asn != self.asn

    # -- origination (the export side of Calico's bird_ipam.cfg, MetalLB's advertisements) ----

    def originate(self, prefix: object) -> None:
        """Announce ``prefix`` from this router (its podCIDR, a Calico block, a service IP)."""
        prefix = ipv4_prefix(f"Speaker {self.name}", "prefix", prefix)
        key = prefix_key(prefix)
        paths = (Path(prefix, _SELF, ASPath(()), 0, None, None, _SELF, self.router_id, self.asn, False),)
        self._local[key] = paths
        self._tables.local.setdefault(key, {})[self] = paths
        self._tables.touch(key, self, local=True)

    def withdraw(self, prefix: object) -> None:
        """Stop announcing a prefix this router originated."""
        prefix = ipv4_prefix(f"Speaker {self.name}", "prefix", prefix)
        key = prefix_key(prefix)
        if key not in self._local:
            raise NotFound(f"Speaker {self.name}", "prefix", prefix, "must be a prefix this router originates")
        del self._local[key]
        local = self._tables.local[key]
        del local[self]
        if not local:
            del self._tables.local[key]
        self._tables.touch(key, self, local=True)

    @property
    def table_version(self) -> int:
        """The BGP table version ``show ip bgp`` prints: as in FRR and Cisco IOS, a counter that
        starts at 0 and goes up by one each time the decision process changes a prefix's
        Loc-RIB entry (a new best path, a changed ECMP set, a prefix gone), so a router whose
        neighbours keep flapping shows a high version with few routes.

        >>> s = Speaker("tor-1", "192.168.1.1", 65001)
        >>> s.originate("192.168.1.0/24"); _ = s.decide(); s.table_version
        1
        >>> s.withdraw("192.168.1.0/24"); _ = s.decide(); s.originate("192.168.1.0/24"); _ = s.decide()
        >>> s.table_version
        3
        """
        return self._tables.version(self)

    @property
    def originated(self) -> tuple[IPv4Network, ...]:
        return tuple(paths[0].prefix for paths in self._local.values())

    # -- sessions -------------------------------------------------------------------------

    def session_up(self, peer: str) -> list[Outgoing]:
        """Establish the session; returns the UPDATEs with our whole Adj-RIB-Out for it."""
        return self.sessions_up((peer,))

    def sessions_up(self, peers) -> list[Outgoing]:
        """Establish several sessions at once (what a router does when it boots)."""
        peers = [p for p in peers if p not in self.established]
        for peer in peers:
            self._peer(peer)
        self.established.update(peers)
        if not any(self in table for table in self._tables.loc.values()):
            return []
        return [out for peer in peers for out in self._table_for(peer)]

    def session_down(self, peer: str) -> None:
        """Tear the session down: every path the peer sent leaves the Adj-RIB-In (RFC 4271 §8)."""
        self._peer(peer)
        self.established.discard(peer)
        address = self.peers[peer].address
        tables = self._tables
        for key, table in list(tables.rib.items()):
            paths = table.get(self)
            if paths is not None and any(p.peer_address == address for p in paths):
                kept = tuple(p for p in paths if p.peer_address != address)
                if kept:
                    table[self] = kept
                else:
                    del table[self]
                    if not table:
                        del tables.rib[key]
                tables.touch(key, self)

    # -- receiving --------------------------------------------------------------------------

    def arrivals(self, peer: str, update: Update) -> tuple[tuple, ...]:
        """The paths an UPDATE from ``peer`` carries, ready for :func:`deliver`."""
        p = self._peer(peer)
        ebgp = p.asn != self.asn
        return tuple(_arrival(Path.from_update(update, prefix, peer_address=p.address, peer_router_id=p.router_id,
                                               peer_as=p.asn, ebgp=ebgp))
                     for prefix in update.feasible_routes)

    def receive(self, peer: str, update: Update) -> None:
        """Process an UPDATE from an established peer into the Adj-RIB-In; run :meth:`decide` after."""
        if peer not in self.established:
            raise InvalidValue(f"Speaker {self.name}", "peer", peer, "must have an established session")
        deliver((self,), self.peers[peer].address, update.unfeasible_routes, self.arrivals(peer, update))

    def decide(self) -> list[IPv4Network]:
        """Run the decision process for every prefix touched since the last call.

        Returns the prefixes whose Loc-RIB entry changed (best path, ECMP set or
        the candidates behind them); :meth:`outgoing` turns those into UPDATEs.
        """
        return [(new or old).best.prefix
                for _, _, olds, news in self._tables.decide(only=self) for old, new in zip(olds, news)]

    # -- sending ------------------------------------------------------------------------------

    def groups(self) -> dict[_Group, list[str]]:
        """Peers by update-group, each list in router-ID order."""
        if self._groups is None:
            groups: dict[_Group, list[str]] = {}
            group_of = {}
            made: dict[tuple, _Group] = {}
            for peer in sorted(self.peers.values(), key=lambda p: (int(p.router_id), p.name)):
                local = peer.local_address
                quick = (peer.asn != self.asn, peer.route_reflector_client, None if local is None else int(local),
                         peer.next_hop_self, id(peer.export_filter))
                group = made.get(quick)
                if group is None:
                    group = made[quick] = _Group(quick[0], quick[1], local or self.router_id, peer.next_hop_self,
                                                 peer.export_filter)
                    groups[group] = []
                groups[group].append(peer.name)
                group_of[peer.name] = group
            self._groups, self._group_of = groups, group_of
        return self._groups

    def _export(self, decision: Decision | None, group: _Group) -> tuple[tuple, str | None] | None:
        """(attributes, source peer not to send to) for the best path towards one group, or None."""
        if decision is None:
            return None
        path = decision.best
        prefix = path.prefix
        if group.export_filter is not None and not group.export_filter.permits(prefix):
            return None
        # the peer it came from ("" once that peer is gone: its old routes then leave everywhere)
        source = None if path.peer_address is _SELF else self._by_address.get(path.peer_address, "")
        origin = Origin(path.origin)
        extra = (Communities(path.communities),) if path.communities else ()
        if group.ebgp:                                   # RFC 4271 §5.1.2 b, §5.1.3 (2)
            hop = group.local_address
            if source and not path.ebgp and self._same_subnet(path.next_hop, group.local_address):
                hop = path.next_hop                      # "third party" NEXT_HOP, §5.1.3 (2)
            return ((origin, path.as_path.prepend(self.asn), NextHop(hop)) + extra), source
        pref = LocalPref(DEFAULT_LOCAL_PREF if path.local_pref is None else path.local_pref)
        med = (MultiExitDisc(path.med),) if path.med is not None and source is not None else ()
        if source is None or path.ebgp:                  # our own route, or one from outside the AS
            hop = path.next_hop if source is not None and not group.next_hop_self else group.local_address
            return (origin, path.as_path, NextHop(hop)) + med + (pref,) + extra, source
        if not self._reflector:                          # RFC 4271 §9.2: iBGP-learnt stays put
            return None
        from_client = source in self.peers and self.peers[source].route_reflector_client
        if not (from_client or group.client):            # RFC 4456 §6
            return None
        reflected = (OriginatorID(path.originator_id or path.peer_router_id),
                     ClusterList((self.cluster_id,) + path.cluster_list))
        return (origin, path.as_path, NextHop(path.next_hop)) + med + (pref,) + extra + reflected, source

    def _same_subnet(self, a: IPv4Address, b: IPv4Address) -> bool:
        return any(a in subnet and b in subnet for subnet, _ in self.interfaces)

    def outgoing(self) -> list[Outgoing]:
        """The UPDATEs the Loc-RIB changes since the last call require, as (receivers, update).

        One UPDATE per update-group and attribute set, NLRI packed together as
        daemons do; withdrawals in UPDATEs of their own.
        """
        changes, self._changes = self._changes, []
        if not changes:
            return []
        # what we export depends on the best path alone: changes that kept it (new ECMP siblings,
        # another candidate arriving) send nothing
        changes = [(prefix, old, new) for prefix, old, new in changes
                   if old is None or new is None or old.best is not new.best]
        messages = []
        for group, members in self.groups().items():
            up = members if len(self.established) == len(self.peers) else [m for m in members
                                                                            if m in self.established]
            if not up:
                continue
            announce: dict[tuple, list[IPv4Network]] = {}
            withdraw: dict[tuple[bool, str | None], list[IPv4Network]] = {}
            for prefix, old, new in changes:
                before, after = self._export(old, group), self._export(new, group)
                if before == after:
                    continue
                if after is not None:
                    announce.setdefault(after, []).append(prefix)
                    if before is not None and after[1] is not None and after[1] != before[1]:
                        withdraw.setdefault((True, after[1]), []).append(prefix)   # the new source had the old route
                elif before is not None:
                    withdraw.setdefault((False, before[1]), []).append(prefix)
            for (only, peer), prefixes in withdraw.items():
                targets = tuple(m for m in up if m == peer) if only else tuple(m for m in up if m != peer)
                if targets:
                    messages.append(Outgoing(targets, Update(withdrawn=tuple(prefixes)), group.local_address))
            for (attributes, source), prefixes in announce.items():
                targets = list(up)
                if source in targets:
                    targets.remove(source)
                targets = tuple(targets)
                if targets:
                    messages.append(Outgoing(targets, Update(attributes=attributes, nlri=tuple(prefixes)),
                                             group.local_address))
        return messages

    def _table_for(self, peer: str) -> list[Outgoing]:
        self.groups()
        group = self._group_of[peer]
        batches: dict[tuple, list[IPv4Network]] = {}
        for decision in self._decisions():
            exported = self._export(decision, group)
            if exported is not None and exported[1] != peer:
                batches.setdefault(exported[0], []).append(decision.best.prefix)
        return [Outgoing((peer,), Update(attributes=a, nlri=tuple(p)), group.local_address)
                for a, p in batches.items()]

    # -- views ------------------------------------------------------------------------------

    def adj_rib_in(self, peer: str) -> dict[IPv4Network, Path]:
        """The paths ``peer`` sent that import policy accepted, by prefix."""
        address = self._peer(peer).address
        return {p.prefix: p for table in self._tables.rib.values() for p in table.get(self, ())
                if p.peer_address == address}

    @property
    def loc_rib(self) -> dict[IPv4Network, Decision]:
        """The Loc-RIB: per prefix, the decision that chose its best path (a copy)."""
        return {decision.best.prefix: decision for decision in self._decisions()}

    def _decisions(self) -> list[Decision]:
        """Our Loc-RIB entries, in the order the prefixes were first decided."""
        return [table[self] for table in self._tables.loc.values() if self in table]

    def adj_rib_out(self, peer: str) -> dict[IPv4Network, tuple]:
        """What we advertise to ``peer``: prefix -> path attributes as they leave."""
        self._peer(peer)
        self.groups()
        group = self._group_of[peer]
        out = {}
        for decision in self._decisions():
            exported = self._export(decision, group)
            if exported is not None and exported[1] != peer:
                out[decision.best.prefix] = exported[0]
        return out

    def adj_rib_out_update(self, peer: str, prefix: object) -> Update:
        """The UPDATE announcing ``prefix`` to ``peer`` (NotFound when not advertised)."""
        prefix = ipv4_prefix(f"Speaker {self.name}", "prefix", prefix)
        attributes = self.adj_rib_out(peer).get(prefix)
        if attributes is None:
            raise NotFound(f"Speaker {self.name}", "prefix", prefix, f"must be advertised to {peer}")
        return Update(attributes=attributes, nlri=(prefix,))

    def resolve(self, next_hop: IPv4Address) -> tuple[IPv4Address, str] | None:
        """(gateway, device) for a BGP next hop, as BIRD's ``gateway recursive`` finds it:
        a connected subnet, else the BGP route covering it, else the default route."""
        for subnet, dev in self.interfaces:
            if next_hop in subnet:
                return next_hop, dev
        covering = [d for d in self._decisions() if next_hop in d.best.prefix and d.best.peer_address is not _SELF]
        for decision in sorted(covering, key=lambda d: -d.best.prefix.prefixlen):
            for subnet, dev in self.interfaces:
                if decision.best.next_hop in subnet:
                    return decision.best.next_hop, dev
        return self.gateway

    def fib(self) -> tuple[FibEntry, ...]:
        """The routes BGP installs in the kernel: learnt best paths plus ECMP siblings.

        Locally originated prefixes are not listed: the kernel already has them
        (the node's cni0 route, Calico's blackhole per block).
        """
        entries = []
        for decision in self._decisions():
            prefix = decision.best.prefix
            if decision.best.peer_address is _SELF:
                continue
            paths = decision.multipath if self.multipath else (decision.best,)
            hops = []
            for path in paths:
                hop = self.resolve(path.next_hop)
                if hop is not None and hop not in hops:
                    hops.append(hop)
            if hops:
                entries.append(FibEntry(prefix, tuple(hops), self.proto))
        return tuple(sorted(entries, key=lambda e: (int(e.prefix.network_address), e.prefix.prefixlen)))

    def show_ip_bgp(self) -> BgpTable:
        """The BGP table as FRR's ``show ip bgp`` prints it: every path, ``*>`` best,
        ``*=`` ECMP sibling, ``i`` learnt over iBGP."""
        rows = []
        tables = self._tables
        for key in sorted({k for k, table in tables.rib.items() if self in table} | set(self._local)):
            decision = tables.loc.get(key, {}).get(self)
            paths = self._local.get(key, ()) + tables.rib.get(key, {}).get(self, ())
            prefix = paths[0].prefix
            first = True
            for path in paths:
                local = path.peer_address is _SELF
                best = decision is not None and path is decision.best
                multi = (decision is not None and not best and self.multipath
                         and any(path is m for m in decision.multipath))
                status = "*" + (">" if best else "=" if multi else " ") + ("i" if not local and not path.ebgp else "")
                locprf = "" if path.ebgp or local or path.local_pref is None else str(path.local_pref)
                metric = "0" if local else ("" if path.med is None else str(path.med))
                as_path = str(path.as_path)
                rows.append((status, str(prefix) if first else "", str(path.next_hop), metric, locprf,
                             str(LOCAL_WEIGHT if local else 0),
                             f"{as_path} {_ORIGIN_CODE[path.origin]}" if as_path else _ORIGIN_CODE[path.origin]))
                first = False
        header = (f"BGP table version is {self.table_version}, local router ID is {self.router_id}, vrf id 0\n"
                  f"Default local pref {DEFAULT_LOCAL_PREF}, local AS {self.asn}\n"
                  "Status codes:  * valid, > best, = multipath, i internal\n"
                  "Origin codes:  i - IGP, e - EGP, ? - incomplete")
        return BgpTable(header, Table(f"show ip bgp ({self.name})",
                                      ("", "Network", "Next Hop", "Metric", "LocPrf", "Weight", "Path"), tuple(rows)))


def prefix_key(prefix: IPv4Network) -> int:
    """The int a speaker files ``prefix`` under: network address and length in one number,
    ordered like ``show ip bgp`` (by address, then length).

    >>> from ipaddress import ip_network
    >>> hex(prefix_key(ip_network("10.244.1.0/24")))
    '0x2bd004018'
    """
    return int(prefix.network_address) << 6 | prefix.prefixlen


def _arrival(path: Path) -> tuple:
    """A path with what receivers check, computed once per UPDATE and shared by every receiver."""
    originator = -1 if path.originator_id is None else int(path.originator_id)   # -1: matches no router ID
    return (path, prefix_key(path.prefix), path.as_path.asns, originator, frozenset(path.cluster_list), (path,))


def deliver(receivers, peer_address: IPv4Address, withdrawn, arrivals) -> None:
    """Apply one UPDATE, sent from ``peer_address``, to the Adj-RIBs-In of several speakers
    that share one :class:`Tables`.

    This is the simulation's inner loop. Each receiver applies the import
    checks of RFC 4271 §9.1.2 and RFC 4456 §8 (a failed check makes the UPDATE
    withdraw what this peer sent before, as daemons do) and the prefix is
    marked for the decision process. Receivers no check can concern are
    handled together, with C-level passes over the prefix's table.
    """
    tables = receivers[0]._tables
    for prefix in withdrawn:
        key = prefix_key(prefix)
        table = tables.rib.get(key)
        if not table:
            continue
        for speaker in receivers:
            paths = table.get(speaker)
            if paths is not None:
                kept = _replace(paths, peer_address, None, tables.transitions)
                if kept:
                    table[speaker] = kept
                else:
                    del table[speaker]
                tables.touch(key, speaker)
        if not table:
            del tables.rib[key]
    if not arrivals:
        return
    # Receivers that may reject a path: reflectors (CLUSTER_LIST), those with import filters;
    # on eBGP everyone (AS_PATH loop); the originator is found by router ID.
    count = len(receivers)
    careful = set()
    careful_plain = receivers
    # one pass finds the careful receivers and those that originated a path (RFC 4456 §8)
    originators = {tables.by_rid[o] for o in {a[3] for a in arrivals} if o in tables.by_rid}
    lookout = tables.careful | originators if originators else tables.careful
    hits = lookout.intersection(receivers) if lookout else None
    position = {}
    if hits:
        if len(hits) <= _FEW:       # a few among many receivers: find them, copy the rest
            position = dict(zip(hits, map(receivers.index, hits)))
            careful.update(sorted(i for s, i in position.items() if s in tables.careful))
            careful_plain = list(receivers)
            for i in sorted(careful, reverse=True):
                del careful_plain[i]
        else:
            position = {s: i for i, s in enumerate(receivers) if s in hits}
            careful.update(compress(range(count), map(tables.careful.__contains__, receivers)))
            careful_plain = [s for s in receivers if s not in tables.careful]
    transitions = tables.transitions
    for path, key, asns, originator, clusters, alone in arrivals:
        prefix = path.prefix
        plain = careful_plain
        extra = position.get(tables.by_rid.get(originator)) if position else None
        if path.ebgp:
            watch = range(count)
            plain = ()
        elif extra is not None and extra not in careful:     # the originator, among plain receivers
            watch = careful | {extra}
            plain = [s for i, s in enumerate(receivers) if i not in watch]
        else:
            watch = careful
        table = tables.rib.setdefault(key, {})
        dirty = tables.dirty.get(key)
        if dirty is None:
            dirty = tables.dirty[key] = {}
        for i in watch:
            speaker = receivers[i]
            if ((path.ebgp and speaker.asn in asns and asns.count(speaker.asn) > speaker.allowas_in)
                    or originator == speaker._rid
                    or (clusters and speaker._reflector and speaker.cluster_id in clusters)
                    or (speaker._import_filters and peer_address in speaker._import_filters
                        and not speaker._import_filters[peer_address].permits(prefix))):
                paths = table.get(speaker)
                if paths is None:
                    continue
                kept = _replace(paths, peer_address, None, transitions)
                if kept:
                    table[speaker] = kept
                else:
                    del table[speaker]
            else:
                paths = table.get(speaker)
                table[speaker] = alone if paths is None else _replace(paths, peer_address, path, transitions)
            dirty[speaker] = None
        if plain:
            if table.keys().isdisjoint(plain):    # nobody had it: stops at the first who did
                table.update(zip(plain, repeat(alone)))
            else:
                olds = list(map(table.get, plain))
                first = olds[0]
                if first is not None and all(map(is_, olds, repeat(first))):    # all hold the same tuple
                    table.update(zip(plain, repeat(_replace(first, peer_address, path, transitions))))
                else:
                    ids = list(map(id, olds))
                    made = dict(zip(ids, olds))       # the distinct tuples receivers hold now
                    for ident, old in made.items():
                        made[ident] = alone if old is None else _replace(old, peer_address, path, transitions)
                    table.update(zip(plain, map(made.__getitem__, ids)))
            if dirty:
                dirty.update(zip(plain, repeat(None)))
            else:
                dirty = tables.dirty[key] = dict.fromkeys(plain)
        if not table:
            del tables.rib[key]
        if not dirty:
            del tables.dirty[key]


_PROFILE = attrgetter("_profile")
#: Up to this many careful receivers among an UPDATE's are looked up one by one.
_FEW = 8


class Tables:
    """The Adj-RIBs-In and Loc-RIBs of the speakers of one fabric, filed prefix first.

    ``rib[key][speaker]`` is the tuple of paths ``speaker`` holds for the prefix
    (all its Adj-RIBs-In at once), ``loc[key][speaker]`` its Loc-RIB decision;
    ``key`` is :func:`prefix_key`. Filing by prefix keeps one prefix's entries
    for a thousand routers in one small table, so an UPDATE fanned out to all
    of them is applied in a few C-level passes instead of a thousand scattered
    ones. Equal candidate tuples are shared (``transitions``) and decided once
    (``decisions``, by ``id``; ``alive`` holds the tuples so no id is reused
    while cached). Each speaker reads its own slice. ``versions`` counts each speaker's
    Loc-RIB changes, its BGP table version (:meth:`version`).
    """

    def __init__(self):
        self.rib: dict[int, dict[Speaker, tuple[Path, ...]]] = {}
        self.loc: dict[int, dict[Speaker, Decision]] = {}
        self.local: dict[int, dict[Speaker, tuple[Path]]] = {}
        self.dirty: dict[int, dict[Speaker, None]] = {}        # ordered sets
        self.touched: dict[int, set[Speaker]] = {}             # own routes (re)originated or withdrawn
        self.exporters: set[Speaker] = set()                   # reflectors and speakers with eBGP peers
        self.decisions: dict[tuple, dict[int, Decision | None]] = {}   # settings -> id(candidates) ->
        self.alive: dict[int, tuple[Path, ...]] = {}                   # the candidates behind those ids
        self.transitions: dict[tuple, tuple] = {}
        self.exporting: dict[Speaker, None] = {}               # speakers with changes to send
        self.profiles: set[tuple] = set()                      # the speakers' decision settings
        self.careful: set[Speaker] = set()                     # reflectors and import-filtering speakers
        self.by_rid: dict[int, Speaker] = {}
        self.versions: Counter[Speaker] = Counter()            # Loc-RIB changes per speaker, and those
        self.unversioned: list[tuple[Speaker, ...]] = []       # not counted yet (see table_version)

    def touch(self, key: int, speaker: Speaker, *, local: bool = False) -> None:
        self.dirty.setdefault(key, {})[speaker] = None
        if local:
            self.touched.setdefault(key, set()).add(speaker)

    def forget(self, speaker: Speaker) -> None:
        """Drop every entry of a speaker that left the fabric."""
        for index in (self.rib, self.loc, self.local, self.dirty):
            for key, table in list(index.items()):
                table.pop(speaker, None)
                if not table:
                    del index[key]
        for table in self.touched.values():
            table.discard(speaker)
        self.exporters.discard(speaker)
        self.careful.discard(speaker)
        self.exporting.pop(speaker, None)
        self.version(speaker)               # count what is pending, then forget its count too
        del self.versions[speaker]
        if self.by_rid.get(speaker._rid) is speaker:
            del self.by_rid[speaker._rid]

    def decide(self, only: Speaker | None = None) -> list[tuple[int, tuple, tuple, tuple]]:
        """Run the decision process wherever a prefix was touched (for one speaker, or all).

        Returns (key, speakers, old decisions, new decisions) for the Loc-RIB
        entries that changed, and queues the changes that may need an UPDATE on
        the speakers concerned (see :attr:`exporting`).
        """
        if only is None:
            work = list(self.dirty.items())
            self.dirty = {}
        else:
            work = []
            for key, receivers in list(self.dirty.items()):
                if only in receivers:
                    del receivers[only]
                    work.append((key, {only: None}))
                    if not receivers:
                        del self.dirty[key]
        records = []
        for key, receivers in work:
            speakers = list(receivers)
            count = len(speakers)
            table = self.rib.get(key, {})
            candidates = list(map(table.get, speakers, repeat(_EMPTY)))
            local = self.local.get(key)
            if local:   # our own route beats learnt ones (BIRD preference 200, FRR weight 32768)
                for speaker, paths in local.items():
                    if speaker in receivers:
                        candidates[speakers.index(speaker)] = paths
            profile = speakers[0]._profile
            if len(self.profiles) == 1 or all(s._profile == profile for s in speakers):
                # one decision per distinct candidate tuple, then a C-level lookup for everyone
                cache = self.decisions.setdefault(profile, {})
                # a fan-out's receivers mostly share one tuple (the watched few, first or last, may not)
                common = candidates[count // 2]
                same = list(map(is_, candidates, repeat(common)))
                odd = same.count(False)
                if odd * 4 <= count:
                    news = [self._decided(cache, common, profile)] * count
                    i = -1
                    for _ in range(odd):
                        i = same.index(False, i + 1)
                        news[i] = self._decided(cache, candidates[i], profile)
                else:
                    ids = list(map(id, candidates))
                    missing = set(ids).difference(cache)
                    if missing:
                        by_id = dict(zip(ids, candidates))
                        for ident in missing:
                            self._decided(cache, by_id[ident], profile)
                    news = list(map(cache.__getitem__, ids))
            else:
                news = [self._decided(self.decisions.setdefault(profile, {}), paths, profile)
                        for paths, profile in zip(candidates, map(_PROFILE, speakers))]
            loc = self.loc.get(key)
            if loc is None:                                    # nobody had a route: all that have one changed
                everyone = all(news)
                if everyone:
                    changed, news = tuple(speakers), tuple(news)
                else:
                    changed = tuple(compress(speakers, news))
                    if not changed:
                        continue
                    news = tuple(filter(None, news))
                olds = (None,) * len(changed)
            else:
                olds = list(map(loc.get, speakers))
                flags = list(map(is_not, olds, news))
                everyone = False not in flags
                if everyone:
                    changed, olds, news = tuple(speakers), tuple(olds), tuple(news)
                else:
                    changed = tuple(compress(speakers, flags))
                    if not changed:
                        continue
                    olds, news = tuple(compress(olds, flags)), tuple(compress(news, flags))
            if not all(news):                                  # some lost their last route
                for speaker, new in zip(changed, news):
                    if new is None:
                        del loc[speaker]
                loc.update((s, n) for s, n in zip(changed, news) if n is not None)
                if not loc:
                    del self.loc[key]
            elif loc is None:
                self.loc[key] = dict(zip(changed, news))
            else:
                loc.update(zip(changed, news))
            records.append((key, changed, olds, news))
            self.unversioned.append(changed)
            # RFC 4271 §9.2: a speaker that neither reflects nor has eBGP peers only sends its
            # own routes, so only exporters and originators need to look at the change
            if everyone and len(self.exporters) < len(changed):
                concerned = {s for s in self.exporters if s in receivers}
            else:
                concerned = self.exporters.intersection(changed)
            touched = self.touched.pop(key, None) if only is None else self.touched.get(key)
            if touched:
                concerned |= touched.intersection(changed)
                if only is not None:
                    touched.discard(only)
            if concerned:
                at = {speaker: changed.index(speaker) for speaker in concerned}
                for speaker in sorted(concerned, key=at.__getitem__):
                    i = at[speaker]
                    speaker._changes.append(((news[i] or olds[i]).best.prefix, olds[i], news[i]))
                    self.exporting[speaker] = None
        return records

    def version(self, speaker: Speaker) -> int:
        """How many Loc-RIB changes ``speaker`` has had (its BGP table version).

        Counted when asked: a convergence records which speakers each prefix's decision
        changed for, and adding them up as it goes would cost a pass per prefix."""
        if self.unversioned:
            self.versions.update(chain.from_iterable(self.unversioned))
            self.unversioned = []
        return self.versions[speaker]

    def _decided(self, cache: dict, paths: tuple, profile: tuple) -> Decision | None:
        """The decision for one candidate tuple, from the cache or made (and cached) now."""
        decision = cache.get(id(paths), _UNDECIDED)
        if decision is _UNDECIDED:
            decision = cache[id(paths)] = _decision(paths, *profile)
            self.alive[id(paths)] = paths          # keeps the id from being reused while cached
        return decision


def _decision(paths: tuple[Path, ...], local_as: int | None, relax: bool) -> Decision | None:
    """best_path, with its answer for a lone eligible path written out (most prefixes have one)."""
    if len(paths) == 1:
        path = paths[0]
        if path.igp_cost is not None and (local_as is None or local_as not in path.as_path.asns):
            return Decision(path, Step.ONLY_PATH, paths, ())
    return best_path(paths, local_as=local_as, multipath_relax=relax) if paths else None


def _replace(paths: tuple, peer_address: IPv4Address, path: Path | None, transitions: dict) -> tuple:
    key = (id(paths), id(path) if path is not None else peer_address)
    hit = transitions.get(key)
    if hit is not None:
        return hit[0]
    kept = [p for p in paths if p.peer_address != peer_address]
    if path is not None:
        kept.append(path)
    result = tuple(sorted(kept, key=lambda p: int(p.peer_address)))
    transitions[key] = (result, paths, path)          # keep the key's objects alive
    return result
