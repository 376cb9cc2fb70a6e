"""The BGP decision process: which of several paths to a prefix a router uses, and why.

A router that hears the same prefix from several peers keeps every path in
its Adj-RIBs-In and installs one - the *best path* - in its Loc-RIB and FIB
(RFC 4271 §9.1). The choice is a fixed sequence of tie-breakers; each step
drops the paths that are worse on one criterion and the first step that
leaves a single path decides. :func:`best_path` runs them in RFC 4271
§9.1.2.2 order, as BIRD 2 (``bgp_rte_better``) and FRR (``bgp_path_info_cmp``)
do for the steps they share (datapath.md §2.5):

====  ==========================================  =============================================
step  prefer                                      source
====  ==========================================  =============================================
0     a resolvable NEXT_HOP, no own AS in AS_PATH  RFC 4271 §9.1.2 (eligibility, before any step)
1     highest LOCAL_PREF (missing = 100)          §9.1.1; BIRD/FRR ``default bgp_local_pref 100``
2     shortest AS_PATH (AS_SET counts 1)          §9.1.2.2 a; confed segments count 0 (RFC 5065 §5.3)
3     lowest ORIGIN (IGP < EGP < INCOMPLETE)      §9.1.2.2 b
4     lowest MED, only among routes from the      §9.1.2.2 c; missing MED = 0; ``always_compare_med``
      same neighbouring AS                        compares all (FRR ``bgp always-compare-med``)
5     eBGP-learnt over iBGP-learnt                §9.1.2.2 d
6     lowest IGP cost to the NEXT_HOP             §9.1.2.2 e
7     lowest BGP Identifier - the ORIGINATOR_ID   §9.1.2.2 f; RFC 4456 §9
      when the route carries one
8     shortest CLUSTER_LIST                       RFC 4456 §9 ("between (f) and (g)")
9     lowest peer address                         §9.1.2.2 g (FRR's code agrees; its doc says "higher")
====  ==========================================  =============================================

Not modelled: vendor steps that come first in real daemons - BIRD's protocol
``preference``, FRR's ``weight`` and "locally originated" - and FRR's
"prefer the older eBGP path" before the router ID, which FRR skips with
``bgp bestpath compare-routerid``.

**ECMP.** With ``maximum-paths`` (FRR) or ``merge paths`` (BIRD, which Calico
turns on), every path that ties with the best one *through the IGP-cost
step* is installed too, so the kernel spreads flows over several next hops.
FRR adds one condition, tested in datapath.md §2.7: eBGP paths must come from
the same neighbouring AS and iBGP paths must have identical AS_PATHs, unless
``bgp bestpath as-path multipath-relax``, after which equal length is enough.

Two Calico nodes in AS 64512 announce the same service /32 to their ToR (eBGP):

>>> a = Path("10.96.0.10/32", "192.168.1.11", "64512", OriginType.IGP, None, None,
...          "192.168.1.11", "192.168.1.11", 64512, True)
>>> b = Path("10.96.0.10/32", "192.168.1.12", "64512", OriginType.IGP, None, None,
...          "192.168.1.12", "192.168.1.12", 64512, True)
>>> decision = best_path([b, a])
>>> decision.best.peer_address, decision.step, len(decision.multipath)
(IPv4Address('192.168.1.11'), Step.ROUTER_ID, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import InvalidValue
from .attributes import (
    ASPath,
    ClusterList,
    Communities,
    Community,
    LocalPref,
    MPReachNLRI,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorID,
    OriginType,
    SegmentType,
    _check_int,
    _enum,
    _ipv4,
    _sequence,
)
from .messages import Update
from .wire import MAX_AS

__all__ = ["DEFAULT_LOCAL_PREF", "Path", "Step", "Decision", "best_path", "neighbor_as"]

#: What BIRD (``default bgp_local_pref``) and FRR (``bgp default local-preference``) assume
#: for a path without LOCAL_PREF, e.g. one learnt over eBGP.
DEFAULT_LOCAL_PREF = 100


class Step(Enum):
    """The step of the decision process that settled a choice."""

    ONLY_PATH = "only path"
    NEXT_HOP_UNRESOLVABLE = "NEXT_HOP unresolvable"
    AS_LOOP = "own AS in AS_PATH"
    LOCAL_PREF = "highest LOCAL_PREF"
    AS_PATH_LENGTH = "shortest AS_PATH"
    ORIGIN = "lowest ORIGIN"
    MED = "lowest MULTI_EXIT_DISC"
    EBGP_OVER_IBGP = "eBGP over iBGP"
    IGP_COST = "lowest IGP cost to NEXT_HOP"
    ROUTER_ID = "lowest BGP Identifier"
    CLUSTER_LIST_LENGTH = "shortest CLUSTER_LIST"
    PEER_ADDRESS = "lowest peer address"

    def __repr__(self) -> str:
        return f"Step.{self.name}"


def _optional_u32(field: str, value: object) -> int | None:
    return None if value is None else _check_int("Path", field, value, 2**32 - 1)


@dataclass(frozen=True)
class Path:
    """One path to a prefix, as held in an Adj-RIB-In: the route's attributes plus what
    the receiving router knows about the peer it came from.

    ``med`` and ``local_pref`` are None when the UPDATE did not carry them;
    ``igp_cost`` is the IGP metric to the NEXT_HOP, or None if the NEXT_HOP
    cannot be resolved (such a path is not eligible, RFC 4271 §9.1.2).
    """

    prefix: IPNetwork
    next_hop: IPAddress
    as_path: ASPath
    origin: OriginType
    med: int | None
    local_pref: int | None
    peer_address: IPAddress
    peer_router_id: IPv4Address
    peer_as: int
    ebgp: bool
    igp_cost: int | None = 0
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()
    communities: tuple[Community, ...] = ()

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "prefix", parse_network(self.prefix, obj="Path", field="prefix"))
        set_(self, "next_hop", parse_address(self.next_hop, obj="Path", field="next_hop"))
        set_(self, "as_path", self.as_path if isinstance(self.as_path, ASPath) else ASPath(self.as_path))
        set_(self, "origin", _enum("Path", "origin", self.origin, OriginType,
                                   "must be 0 (IGP), 1 (EGP) or 2 (INCOMPLETE)"))
        set_(self, "med", _optional_u32("med", self.med))
        set_(self, "local_pref", _optional_u32("local_pref", self.local_pref))
        set_(self, "peer_address", parse_address(self.peer_address, obj="Path", field="peer_address"))
        set_(self, "peer_router_id", _ipv4("Path", "peer_router_id", self.peer_router_id))
        if _check_int("Path", "peer_as", self.peer_as, MAX_AS) == 0:
            raise InvalidValue("Path", "peer_as", 0, "must not be AS 0 (RFC 7607 §2)")
        if not isinstance(self.ebgp, bool):
            raise InvalidValue("Path", "ebgp", self.ebgp, "must be True (eBGP) or False (iBGP)")
        if self.igp_cost is not None:
            _check_int("Path", "igp_cost", self.igp_cost, 2**32 - 1)
        if self.originator_id is not None:
            set_(self, "originator_id", _ipv4("Path", "originator_id", self.originator_id))
        set_(self, "cluster_list", tuple(_ipv4("Path", "cluster_list", c) for c in _sequence(self.cluster_list)))
        set_(self, "communities", tuple(Community(c) for c in _sequence(self.communities)))

    @classmethod
    def from_update(cls, update: Update, prefix: object, *, peer_address: object, peer_router_id: object,
                    peer_as: int, ebgp: bool, igp_cost: int | None = 0) -> Path:
        """The path an UPDATE gives to one of its prefixes (NLRI or MP_REACH_NLRI).

        The NEXT_HOP is the NEXT_HOP attribute for the NLRI field and the first
        (global) MP_REACH_NLRI next hop for other families (RFC 4760 §3).
        """
        prefix = parse_network(prefix, obj="Path.from_update", field="prefix")
        if prefix in update.nlri:
            hop = update.attribute(NextHop)
            next_hop = hop.next_hop if hop else None
        else:
            reach = next((a for a in update.attributes if isinstance(a, MPReachNLRI) and prefix in a.nlri), None)
            next_hop = reach.next_hop[0] if reach else None
        origin = update.attribute(Origin)
        if prefix not in update.feasible_routes or next_hop is None or origin is None:
            raise InvalidValue("Path.from_update", "prefix", prefix,
                               "must be a feasible route of the UPDATE, with ORIGIN and a next hop")
        med, pref = update.attribute(MultiExitDisc), update.attribute(LocalPref)
        originator, cluster, communities = (update.attribute(OriginatorID), update.attribute(ClusterList),
                                            update.attribute(Communities))
        return cls(prefix, next_hop, update.attribute(ASPath) or ASPath(()), origin.origin,
                   med.med if med else None, pref.local_pref if pref else None,
                   peer_address, peer_router_id, peer_as, ebgp, igp_cost,
                   originator.originator_id if originator else None,
                   cluster.cluster_list if cluster else (), communities.communities if communities else ())


def neighbor_as(path: Path, local_as: int | None = None) -> int | None:
    """The neighbouring AS whose MEDs this path may be compared with (RFC 4271 §9.1.2.2 c).

    It is the first AS of the AS_PATH (after any confederation segments); for
    a path originated inside the AS - an empty AS_PATH, or one that starts with
    an AS_SET - it is the local AS (None when not given).
    """
    for segment in path.as_path.segments:
        if segment.segment_type in (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET):
            continue
        return segment.asns[0] if segment.segment_type == SegmentType.AS_SEQUENCE else local_as
    return local_as


def _address_key(address: IPAddress) -> tuple[int, int]:
    return address.version, int(address)


@dataclass(frozen=True)
class Decision:
    """The outcome for one prefix.

    Attributes:
        best: the path installed in the Loc-RIB.
        step: the step that removed its last competitor (``ONLY_PATH`` if it had none).
        multipath: the ECMP set - ``best`` first, then the other paths tied with it
            through the IGP-cost step, in decision-process order.
        eliminated: every other candidate with the step that removed it, in step order
            (by peer address within a step).
    """

    best: Path
    step: Step
    multipath: tuple[Path, ...]
    eliminated: tuple[tuple[Path, Step], ...]

    def __str__(self) -> str:
        return (f"{self.best.prefix}: best via {self.best.next_hop} from {self.best.peer_address} "
                f"({self.step.value}), {len(self.multipath)} path(s) for ECMP")


def _multipath_compatible(best: Path, other: Path, relax: bool) -> bool:
    if relax:
        return True
    if best.ebgp:
        return other.peer_as == best.peer_as
    return other.as_path == best.as_path


def best_path(candidates, *, local_as: int | None = None, always_compare_med: bool = False,
              multipath_relax: bool = False) -> Decision | None:
    """Run the decision process over the paths to one prefix; None if none is eligible.

    Args:
        candidates: :class:`Path` objects for the same prefix, from different peers.
        local_as: this router's AS: paths whose AS_PATH contains it are not
            eligible (RFC 4271 §9.1.2), and it is the neighbouring AS of
            internally originated paths for the MED step.
        always_compare_med: compare MED between paths from different ASes too.
        multipath_relax: ECMP needs only equal AS_PATH length, not the same AS.

    The result does not depend on the order of ``candidates``.
    """
    paths = list(_sequence(candidates))
    if not paths:
        return None
    for path in paths:
        if not isinstance(path, Path):
            raise InvalidValue("best_path", "candidates", path, "must be Path objects")
    if len({p.prefix for p in paths}) > 1:
        raise InvalidValue("best_path", "candidates", sorted({str(p.prefix) for p in paths}),
                           "must all be paths to the same prefix")
    if len({p.peer_address for p in paths}) < len(paths):
        raise InvalidValue("best_path", "candidates", [str(p.peer_address) for p in paths],
                           "must come from different peers: a peer sends one path per prefix")

    eliminated: list[tuple[Path, Step]] = []
    last_step = Step.ONLY_PATH

    def keep(step: Step, survivors: list[Path]) -> None:
        nonlocal paths, last_step
        if len(survivors) == len(paths):     # nobody dropped at this step
            paths = survivors
            return
        kept = {id(p) for p in survivors}
        dropped = sorted((p for p in paths if id(p) not in kept), key=lambda p: _address_key(p.peer_address))
        eliminated.extend((p, step) for p in dropped)
        if dropped:
            last_step = step
        paths = survivors

    def keep_lowest(step: Step, key) -> None:
        keys = list(map(key, paths))
        lowest = min(keys)
        keep(step, [p for p, k in zip(paths, keys) if k == lowest])

    keep(Step.NEXT_HOP_UNRESOLVABLE, [p for p in paths if p.igp_cost is not None])
    if local_as is not None:
        keep(Step.AS_LOOP, [p for p in paths if local_as not in p.as_path.asns])
    if not paths:
        return None
    keep_lowest(Step.LOCAL_PREF, lambda p: -(DEFAULT_LOCAL_PREF if p.local_pref is None else p.local_pref))
    keep_lowest(Step.AS_PATH_LENGTH, lambda p: p.as_path.length)
    keep_lowest(Step.ORIGIN, lambda p: p.origin)

    def med(p: Path) -> int:
        return p.med or 0        # "the lowest possible MULTI_EXIT_DISC value MUST be assigned"

    if always_compare_med:
        keep_lowest(Step.MED, med)
    else:
        # RFC 4271 §9.1.2.2 c: remove m if some n from the same neighbouring AS has a lower MED.
        groups: dict[int | None, int] = {}
        for p in paths:
            key = neighbor_as(p, local_as)
            groups[key] = min(groups.get(key, med(p)), med(p))
        keep(Step.MED, [p for p in paths if med(p) == groups[neighbor_as(p, local_as)]])
    if any(p.ebgp for p in paths):
        keep(Step.EBGP_OVER_IBGP, [p for p in paths if p.ebgp])
    keep_lowest(Step.IGP_COST, lambda p: p.igp_cost)
    tied = list(paths)
    keep_lowest(Step.ROUTER_ID, _router_id)
    keep_lowest(Step.CLUSTER_LIST_LENGTH, lambda p: len(p.cluster_list))
    keep_lowest(Step.PEER_ADDRESS, lambda p: _address_key(p.peer_address))
    best = paths[0]
    others = sorted((p for p in tied if p is not best and _multipath_compatible(best, p, multipath_relax)),
                    key=lambda p: (_router_id(p), len(p.cluster_list), _address_key(p.peer_address)))
    return Decision(best, last_step, (best, *others), tuple(eliminated))


def _router_id(path: Path) -> int:
    """RFC 4456 §9: "the ORIGINATOR_ID SHOULD be treated as the BGP Identifier of the BGP
    speaker that has advertised the route"."""
    return int(path.originator_id or path.peer_router_id)
