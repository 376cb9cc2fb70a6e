"""Path attributes: what an UPDATE says about the routes it carries (RFC 4271 §4.3, §5).

Each attribute is a type-length-value triple whose first octet holds four flags::

    bit 0 (0x80) Optional      0 = well-known: every BGP speaker must understand it
    bit 1 (0x40) Transitive    well-known attributes always set it; for an optional
                               one it says "pass me on even if you don't know me"
    bit 2 (0x20) Partial       set by a router that passed on an optional transitive
                               attribute it did not recognise
    bit 3 (0x10) Extended Length  the length field is 2 octets instead of 1

followed by the Attribute Type Code and the length. This module has one frozen
dataclass per attribute, named as the RFCs name them:

=====  ====================  =========================  ==============  ==========================
code   attribute             class                      flags           source
=====  ====================  =========================  ==============  ==========================
1      ORIGIN                :class:`Origin`            well-known      RFC 4271 §5.1.1
2      AS_PATH               :class:`ASPath`            well-known      RFC 4271 §5.1.2, RFC 6793
3      NEXT_HOP              :class:`NextHop`           well-known      RFC 4271 §5.1.3
4      MULTI_EXIT_DISC       :class:`MultiExitDisc`     optional        RFC 4271 §5.1.4
5      LOCAL_PREF            :class:`LocalPref`         well-known      RFC 4271 §5.1.5
6      ATOMIC_AGGREGATE      :class:`AtomicAggregate`   well-known      RFC 4271 §5.1.6
7      AGGREGATOR            :class:`Aggregator`        opt. transitive RFC 4271 §5.1.7, RFC 6793
8      COMMUNITIES           :class:`Communities`       opt. transitive RFC 1997
9      ORIGINATOR_ID         :class:`OriginatorID`      optional        RFC 4456 §8
10     CLUSTER_LIST          :class:`ClusterList`       optional        RFC 4456 §8
14     MP_REACH_NLRI         :class:`MPReachNLRI`       optional        RFC 4760 §3
15     MP_UNREACH_NLRI       :class:`MPUnreachNLRI`     optional        RFC 4760 §4
17/18  AS4_PATH/AS4_AGGREGATOR  (only on the wire to a  opt. transitive RFC 6793 §3
                             2-octet-AS peer, see below)
other  anything else         :class:`UnknownAttribute`  optional        kept verbatim
=====  ====================  =========================  ==============  ==========================

**4-octet AS numbers.** Between two speakers that both sent the 4-octet AS
capability, AS_PATH and AGGREGATOR carry 4-octet AS numbers. Towards an "OLD"
2-octet peer (``four_octet_as=False``) every AS above 65535 is written as
AS_TRANS (23456) and the true path travels alongside in AS4_PATH (and
AS4_AGGREGATOR) (RFC 6793 §4.2.2); decoding with ``four_octet_as=False``
merges them back (RFC 6793 §4.2.3). The dataclasses therefore always hold the
real path, whichever peer the bytes came from:

>>> path = ASPath("64512 4200000000")
>>> path.encode(four_octet_as=True).hex()        # flags 0x40, type 2, length 10, AS_SEQUENCE of 2
'40020a02020000fc00fa56ea00'
>>> encode_path_attributes((path,), four_octet_as=False).hex()
'4002060202fc005ba0c0110a02020000fc00fa56ea00'

**Errors (RFC 7606).** A broken attribute no longer resets the session by
default. :func:`~kubenet_lab.bgp.attribute_decoder.decode_path_attributes`
applies each attribute's approach:
*treat-as-withdraw* for everything that influences route selection (ORIGIN,
AS_PATH, NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID,
CLUSTER_LIST), *attribute discard* for ATOMIC_AGGREGATE, AGGREGATOR and the
AS4 attributes, and *session reset* (a raised
:class:`~kubenet_lab.bgp.errors.BGPMessageError`) for MP_REACH_NLRI and
MP_UNREACH_NLRI, because without them the NLRI cannot be found. The two
lesser outcomes come back as
:class:`~kubenet_lab.bgp.attribute_decoder.MalformedAttribute` reports.

Two rules need the session type and are left to the receiving speaker: RFC
7606 §7.5/§7.9/§7.10 discard LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST
received from an external peer, and RFC 4271 §6.3 checks that an eBGP peer's
AS is the leftmost in AS_PATH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import ClassVar

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import InvalidValue
from .errors import Approach, _Code
from .wire import AFI, AS_TRANS, MAX_AS, SAFI, encode_prefix

__all__ = [
    "OPTIONAL",
    "TRANSITIVE",
    "PARTIAL",
    "EXTENDED_LENGTH",
    "AttributeType",
    "OriginType",
    "SegmentType",
    "Origin",
    "ASPathSegment",
    "ASPath",
    "NextHop",
    "MultiExitDisc",
    "LocalPref",
    "AtomicAggregate",
    "Aggregator",
    "Community",
    "NO_EXPORT",
    "NO_ADVERTISE",
    "NO_EXPORT_SUBCONFED",
    "NOPEER",
    "GRACEFUL_SHUTDOWN",
    "BLACKHOLE",
    "Communities",
    "OriginatorID",
    "ClusterList",
    "MPReachNLRI",
    "MPUnreachNLRI",
    "UnknownAttribute",
    "PathAttribute",
    "encode_path_attributes",
]

#: Attribute Flags, RFC 4271 §4.3 ("the high-order bit (bit 0) ... Optional bit").
OPTIONAL = 0x80
TRANSITIVE = 0x40
PARTIAL = 0x20
EXTENDED_LENGTH = 0x10
# "The lower-order four bits of the Attribute Flags octet are unused. They MUST
# be zero when sent and MUST be ignored when received" (RFC 4271 §4.3).
_FLAG_BITS = OPTIONAL | TRANSITIVE | PARTIAL


class AttributeType(_Code):
    """Attribute Type Codes (IANA "BGP Path Attributes")."""

    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    AS4_PATH = 17
    AS4_AGGREGATOR = 18


class OriginType(_Code):
    """ORIGIN values (RFC 4271 §4.3 a); ``show ip bgp`` prints them as ``i``, ``e``, ``?``."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(_Code):
    """AS_PATH segment types (RFC 4271 §4.3 b; confederation segments RFC 5065 §3)."""

    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


# Per attribute: the Optional/Transitive flags it must carry and its RFC 7606 approach.
_WELL_KNOWN = TRANSITIVE          # "For well-known attributes, the Transitive bit MUST be set to 1."
_OPTIONAL_TRANSITIVE = OPTIONAL | TRANSITIVE
_TAW, _DISCARD, _RESET = Approach.TREAT_AS_WITHDRAW, Approach.ATTRIBUTE_DISCARD, Approach.SESSION_RESET
_SPEC = {
    AttributeType.ORIGIN: (_WELL_KNOWN, _TAW),                     # RFC 7606 §7.1
    AttributeType.AS_PATH: (_WELL_KNOWN, _TAW),                    # §7.2
    AttributeType.NEXT_HOP: (_WELL_KNOWN, _TAW),                   # §7.3
    AttributeType.MULTI_EXIT_DISC: (OPTIONAL, _TAW),               # §7.4
    AttributeType.LOCAL_PREF: (_WELL_KNOWN, _TAW),                 # §7.5 (from an internal peer)
    AttributeType.ATOMIC_AGGREGATE: (_WELL_KNOWN, _DISCARD),       # §7.6
    AttributeType.AGGREGATOR: (_OPTIONAL_TRANSITIVE, _DISCARD),    # §7.7
    AttributeType.COMMUNITIES: (_OPTIONAL_TRANSITIVE, _TAW),       # §7.8
    AttributeType.ORIGINATOR_ID: (OPTIONAL, _TAW),                 # §7.9 (from an internal peer)
    AttributeType.CLUSTER_LIST: (OPTIONAL, _TAW),                  # §7.10 (from an internal peer)
    AttributeType.MP_REACH_NLRI: (OPTIONAL, _RESET),               # §7.11, §5.3
    AttributeType.MP_UNREACH_NLRI: (OPTIONAL, _RESET),             # §7.11, §5.3
    AttributeType.AS4_PATH: (_OPTIONAL_TRANSITIVE, _DISCARD),      # RFC 6793 §6
    AttributeType.AS4_AGGREGATOR: (_OPTIONAL_TRANSITIVE, _DISCARD),  # RFC 6793 §6
}


def _name(type_code: int) -> str:
    return AttributeType(type_code).name if type_code in AttributeType._value2member_map_ else f"attribute {type_code}"


def _tlv(flags: int, type_code: int, value: bytes) -> bytes:
    """Attribute Flags, Type Code, Length (1 or 2 octets), Value - RFC 4271 §4.3."""
    if len(value) > 0xFFFF:
        raise InvalidValue(_name(type_code), "value", len(value), "must be at most 65535 octets long")
    if len(value) > 255:
        return bytes([flags | EXTENDED_LENGTH, type_code]) + len(value).to_bytes(2, "big") + value
    return bytes([flags, type_code, len(value)]) + value


def _sequence(value: object) -> tuple:
    """A constructor argument as a tuple; a lone value (a string, an address, a number) as a 1-tuple."""
    if isinstance(value, (str, bytes, int, IPv4Address, IPv6Address, IPv4Network, IPv6Network)):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        return (value,)


def _enum(obj: str, field: str, value: object, enum: type[_Code], expected: str):
    if isinstance(value, bool) or not isinstance(value, int) or value not in enum._value2member_map_:
        raise InvalidValue(obj, field, value, expected)
    return enum(value)


def _check_int(obj: str, field: str, value: object, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise InvalidValue(obj, field, value, f"must be an integer from 0 to {top}")
    return value


def _ipv4(obj: str, field: str, value: object) -> IPv4Address:
    address = parse_address(value, obj=obj, field=field)
    if not isinstance(address, IPv4Address):
        raise InvalidValue(obj, field, value, "must be an IPv4 address")
    return address


class _Attribute:
    """Shared encoding of the known attributes: their flags and type code are class facts."""

    type_code: ClassVar[int]
    flags: ClassVar[int]

    def encode(self, *, four_octet_as: bool = True) -> bytes:
        """The whole attribute, flags to value, as it appears in an UPDATE."""
        return _tlv(self.flags, self.type_code, self.encode_value(four_octet_as))


@dataclass(frozen=True)
class Origin(_Attribute):
    """ORIGIN: how the route entered BGP - IGP (``network`` statement), EGP, or INCOMPLETE
    (redistributed). Lower wins in the decision process (RFC 4271 §9.1.2.2 b).

    >>> Origin(OriginType.IGP).encode().hex()
    '40010100'
    """

    origin: OriginType
    type_code: ClassVar[int] = AttributeType.ORIGIN
    flags: ClassVar[int] = _WELL_KNOWN

    def __post_init__(self):
        object.__setattr__(self, "origin", _enum("Origin", "origin", self.origin, OriginType,
                                                 "must be 0 (IGP), 1 (EGP) or 2 (INCOMPLETE)"))

    def encode_value(self, four_octet_as: bool) -> bytes:
        return bytes([self.origin])


@dataclass(frozen=True)
class ASPathSegment:
    """One AS_PATH segment: an ordered AS_SEQUENCE or an unordered AS_SET of 1-255 AS numbers."""

    segment_type: SegmentType
    asns: tuple[int, ...]

    def __post_init__(self):
        kind = _enum("ASPathSegment", "segment_type", self.segment_type, SegmentType,
                     "must be 1 (AS_SET), 2 (AS_SEQUENCE), 3 (AS_CONFED_SEQUENCE) or 4 (AS_CONFED_SET)")
        asns = _sequence(self.asns)
        if not 1 <= len(asns) <= 255:
            raise InvalidValue("ASPathSegment", "asns", asns,
                               "must hold 1 to 255 AS numbers (one-octet segment length, RFC 4271 §4.3 b)")
        for asn in asns:
            _check_int("ASPathSegment", "asns", asn, MAX_AS)
        object.__setattr__(self, "segment_type", kind)
        object.__setattr__(self, "asns", asns)

    def __str__(self) -> str:
        inner = " ".join(map(str, self.asns))
        return {SegmentType.AS_SEQUENCE: inner,
                SegmentType.AS_SET: "{" + ",".join(map(str, self.asns)) + "}",
                SegmentType.AS_CONFED_SEQUENCE: f"({inner})",
                SegmentType.AS_CONFED_SET: "[" + ",".join(map(str, self.asns)) + "]"}[self.segment_type]

    @property
    def length(self) -> int:
        """This segment's share of the AS_PATH length (RFC 4271 §9.1.2.2 a, RFC 5065 §5.3)."""
        if self.segment_type == SegmentType.AS_SEQUENCE:
            return len(self.asns)
        return 1 if self.segment_type == SegmentType.AS_SET else 0

    def encode(self, four_octet_as: bool) -> bytes:
        if four_octet_as:
            numbers = b"".join(asn.to_bytes(4, "big") for asn in self.asns)
        else:
            # RFC 6793 §4.2.2: an AS that does not fit 2 octets is written as AS_TRANS.
            numbers = b"".join((asn if asn <= 0xFFFF else AS_TRANS).to_bytes(2, "big") for asn in self.asns)
        return bytes([self.segment_type, len(self.asns)]) + numbers


_TOKENS = re.compile(r"\d+|[{}()\[\],]|\S+")
_BRACKETS = {"{": ("}", SegmentType.AS_SET), "(": (")", SegmentType.AS_CONFED_SEQUENCE),
             "[": ("]", SegmentType.AS_CONFED_SET)}


def _parse_as_path(text: str) -> tuple[ASPathSegment, ...]:
    segments: list[ASPathSegment] = []
    sequence: list[int] = []
    tokens = iter(_TOKENS.findall(text))

    def flush():
        for start in range(0, len(sequence), 255):
            segments.append(ASPathSegment(SegmentType.AS_SEQUENCE, tuple(sequence[start:start + 255])))
        sequence.clear()

    for token in tokens:
        if token.isdigit():
            sequence.append(int(token))
        elif token in _BRACKETS:
            flush()
            close, kind = _BRACKETS[token]
            members = []
            for inner in tokens:
                if inner == close:
                    break
                if inner.isdigit():
                    members.append(int(inner))
                elif inner != ",":
                    raise InvalidValue("ASPath", "segments", text, f"must not contain {inner!r} inside {token}{close}")
            else:
                raise InvalidValue("ASPath", "segments", text, f"must close {token!r} with {close!r}")
            segments.append(ASPathSegment(kind, tuple(members)))
        else:
            raise InvalidValue("ASPath", "segments", text,
                               "must be AS numbers, {sets}, (confed sequences) and [confed sets], "
                               "e.g. '64512 65001 {65002,65003}'")
    flush()
    return tuple(segments)


@dataclass(frozen=True)
class ASPath(_Attribute):
    """AS_PATH: the ASes a route has crossed, nearest first (RFC 4271 §5.1.2).

    Give it as text in the notation FRR and Cisco print (``{...}`` AS_SET,
    ``(...)`` AS_CONFED_SEQUENCE, ``[...]`` AS_CONFED_SET), as a list of AS
    numbers (one AS_SEQUENCE), or as :class:`ASPathSegment` objects. A route
    originated inside the AS has an empty AS_PATH until it leaves over eBGP.

    >>> p = ASPath("65001 65002 {65010,65011}")
    >>> p, p.length, p.asns
    (ASPath('65001 65002 {65010,65011}'), 3, (65001, 65002, 65010, 65011))
    >>> ASPath([64512]).prepend(65001)
    ASPath('65001 64512')
    """

    segments: tuple[ASPathSegment, ...] = ()
    type_code: ClassVar[int] = AttributeType.AS_PATH
    flags: ClassVar[int] = _WELL_KNOWN

    def __post_init__(self):
        value = self.segments if isinstance(self.segments, str) else _sequence(self.segments)
        if isinstance(value, str):
            segments = _parse_as_path(value)
        elif all(isinstance(item, ASPathSegment) for item in value):
            segments = tuple(value)
        else:
            segments = _parse_as_path(" ".join(str(_check_int("ASPath", "segments", asn, MAX_AS)) for asn in value))
        object.__setattr__(self, "segments", segments)

    def __str__(self) -> str:
        return " ".join(map(str, self.segments))

    def __repr__(self) -> str:
        return f"ASPath({str(self)!r})"

    @property
    def length(self) -> int:
        """Length for best-path selection: "an AS_SET counts as 1 no matter how many ASes
        are in the set" (RFC 4271 §9.1.2.2 a); confederation segments count 0 (RFC 5065 §5.3)."""
        return sum(segment.length for segment in self.segments)

    @property
    def asns(self) -> tuple[int, ...]:
        """Every AS number in the path, in order: what the AS-loop check searches (RFC 4271 §9.1.2)."""
        return tuple(asn for segment in self.segments for asn in segment.asns)

    def prepend(self, asn: int) -> ASPath:
        """The path an eBGP speaker sends: its own AS in front (RFC 4271 §5.1.2 b).

        It joins the leading AS_SEQUENCE, or starts a new one when the path
        begins with an AS_SET or the sequence already holds 255 ASes.
        """
        first = self.segments[0] if self.segments else None
        if first and first.segment_type == SegmentType.AS_SEQUENCE and len(first.asns) < 255:
            head = ASPathSegment(SegmentType.AS_SEQUENCE, (asn,) + first.asns)
            return ASPath((head,) + self.segments[1:])
        return ASPath((ASPathSegment(SegmentType.AS_SEQUENCE, (asn,)),) + self.segments)

    def encode_value(self, four_octet_as: bool) -> bytes:
        return b"".join(segment.encode(four_octet_as) for segment in self.segments)


@dataclass(frozen=True)
class NextHop(_Attribute):
    """NEXT_HOP: the IPv4 address to forward to for the NLRI field's prefixes (RFC 4271 §5.1.3).

    IPv6 next hops travel inside MP_REACH_NLRI instead (RFC 4760 §3).
    """

    next_hop: IPv4Address
    type_code: ClassVar[int] = AttributeType.NEXT_HOP
    flags: ClassVar[int] = _WELL_KNOWN

    def __post_init__(self):
        object.__setattr__(self, "next_hop", _ipv4("NextHop", "next_hop", self.next_hop))

    def encode_value(self, four_octet_as: bool) -> bytes:
        return self.next_hop.packed


@dataclass(frozen=True)
class MultiExitDisc(_Attribute):
    """MULTI_EXIT_DISC (MED): a hint to a neighbouring AS about which of several links to
    prefer; lower wins, compared only between routes from the same AS (RFC 4271 §5.1.4)."""

    med: int
    type_code: ClassVar[int] = AttributeType.MULTI_EXIT_DISC
    flags: ClassVar[int] = OPTIONAL

    def __post_init__(self):
        _check_int("MultiExitDisc", "med", self.med, 2**32 - 1)

    def encode_value(self, four_octet_as: bool) -> bytes:
        return self.med.to_bytes(4, "big")


@dataclass(frozen=True)
class LocalPref(_Attribute):
    """LOCAL_PREF: the AS-wide preference, higher wins; sent only to internal peers
    (RFC 4271 §5.1.5). BIRD and FRR assume 100 when it is missing."""

    local_pref: int
    type_code: ClassVar[int] = AttributeType.LOCAL_PREF
    flags: ClassVar[int] = _WELL_KNOWN

    def __post_init__(self):
        _check_int("LocalPref", "local_pref", self.local_pref, 2**32 - 1)

    def encode_value(self, four_octet_as: bool) -> bytes:
        return self.local_pref.to_bytes(4, "big")


@dataclass(frozen=True)
class AtomicAggregate(_Attribute):
    """ATOMIC_AGGREGATE: "some more specific routes were lost in aggregation" (RFC 4271 §5.1.6); empty."""

    type_code: ClassVar[int] = AttributeType.ATOMIC_AGGREGATE
    flags: ClassVar[int] = _WELL_KNOWN

    def encode_value(self, four_octet_as: bool) -> bytes:
        return b""


@dataclass(frozen=True)
class Aggregator(_Attribute):
    """AGGREGATOR: the AS and router that formed an aggregate route (RFC 4271 §5.1.7).

    Its AS number is 4 octets between 4-octet-AS speakers, 2 otherwise
    (AS_TRANS plus an AS4_AGGREGATOR when it does not fit, RFC 6793 §4.2.2).
    """

    asn: int
    address: IPv4Address
    type_code: ClassVar[int] = AttributeType.AGGREGATOR
    flags: ClassVar[int] = _OPTIONAL_TRANSITIVE

    def __post_init__(self):
        _check_int("Aggregator", "asn", self.asn, MAX_AS)
        object.__setattr__(self, "address", _ipv4("Aggregator", "address", self.address))

    def encode_value(self, four_octet_as: bool) -> bytes:
        if four_octet_as:
            return self.asn.to_bytes(4, "big") + self.address.packed
        return (self.asn if self.asn <= 0xFFFF else AS_TRANS).to_bytes(2, "big") + self.address.packed


_WELL_KNOWN_COMMUNITIES = {
    0xFFFF0000: "GRACEFUL_SHUTDOWN",     # RFC 8326 §5
    0xFFFF029A: "BLACKHOLE",             # RFC 7999 §5
    0xFFFFFF01: "NO_EXPORT",             # RFC 1997: not outside the AS (or confederation)
    0xFFFFFF02: "NO_ADVERTISE",          # RFC 1997: to no BGP peer at all
    0xFFFFFF03: "NO_EXPORT_SUBCONFED",   # RFC 1997: not to external peers, even in a confederation
    0xFFFFFF04: "NOPEER",                # RFC 3765
}
_COMMUNITY_BY_NAME = {name: value for value, name in _WELL_KNOWN_COMMUNITIES.items()}


class Community(int):
    """A 32-bit RFC 1997 community, written ``AS:value`` (the high and low 16 bits).

    >>> Community("64512:100"), int(Community("64512:100"))
    (Community('64512:100'), 4227858532)
    >>> Community(0xFFFFFF01), Community("no-export") == NO_EXPORT
    (Community('NO_EXPORT'), True)
    """

    def __new__(cls, value: object) -> Community:
        if isinstance(value, str):
            text = value.strip()
            name = text.upper().replace("-", "_")
            if name in _COMMUNITY_BY_NAME:
                return super().__new__(cls, _COMMUNITY_BY_NAME[name])
            high, sep, low = text.partition(":")
            if sep and high.isdigit() and low.isdigit() and int(high) <= 0xFFFF and int(low) <= 0xFFFF:
                return super().__new__(cls, int(high) << 16 | int(low))
            raise InvalidValue("Community", "value", value,
                               "must be 'AS:value' with two numbers up to 65535, or a well-known name "
                               "such as 'NO_EXPORT'")
        return super().__new__(cls, _check_int("Community", "value", value, 2**32 - 1))

    def __str__(self) -> str:
        return _WELL_KNOWN_COMMUNITIES.get(int(self)) or f"{int(self) >> 16}:{int(self) & 0xFFFF}"

    def __repr__(self) -> str:
        return f"Community({str(self)!r})"


NO_EXPORT = Community(0xFFFFFF01)
NO_ADVERTISE = Community(0xFFFFFF02)
NO_EXPORT_SUBCONFED = Community(0xFFFFFF03)
NOPEER = Community(0xFFFFFF04)
GRACEFUL_SHUTDOWN = Community(0xFFFF0000)
BLACKHOLE = Community(0xFFFF029A)


@dataclass(frozen=True)
class Communities(_Attribute):
    """COMMUNITIES: tags a route carries for policy, e.g. ``64512:100`` or NO_EXPORT (RFC 1997).

    >>> Communities(["64512:100", NO_EXPORT]).encode().hex()
    'c00808fc000064ffffff01'
    """

    communities: tuple[Community, ...]
    type_code: ClassVar[int] = AttributeType.COMMUNITIES
    flags: ClassVar[int] = _OPTIONAL_TRANSITIVE

    def __post_init__(self):
        values = tuple(Community(c) for c in _sequence(self.communities))
        if not values:
            raise InvalidValue("Communities", "communities", values,
                               "must hold at least one community (RFC 7606 §7.8: an empty one is malformed)")
        object.__setattr__(self, "communities", values)

    def encode_value(self, four_octet_as: bool) -> bytes:
        return b"".join(c.to_bytes(4, "big") for c in self.communities)


@dataclass(frozen=True)
class OriginatorID(_Attribute):
    """ORIGINATOR_ID: the router ID of the route's originator in the AS, set by the first
    route reflector; a router drops routes carrying its own ID (RFC 4456 §8)."""

    originator_id: IPv4Address
    type_code: ClassVar[int] = AttributeType.ORIGINATOR_ID
    flags: ClassVar[int] = OPTIONAL

    def __post_init__(self):
        object.__setattr__(self, "originator_id", _ipv4("OriginatorID", "originator_id", self.originator_id))

    def encode_value(self, four_octet_as: bool) -> bytes:
        return self.originator_id.packed


@dataclass(frozen=True)
class ClusterList(_Attribute):
    """CLUSTER_LIST: the CLUSTER_IDs of the route reflectors a route has passed, each
    reflector prepending its own; a reflector drops routes already listing it (RFC 4456 §8)."""

    cluster_list: tuple[IPv4Address, ...]
    type_code: ClassVar[int] = AttributeType.CLUSTER_LIST
    flags: ClassVar[int] = OPTIONAL

    def __post_init__(self):
        ids = tuple(_ipv4("ClusterList", "cluster_list", c) for c in _sequence(self.cluster_list))
        if not ids:
            raise InvalidValue("ClusterList", "cluster_list", ids,
                               "must hold at least one CLUSTER_ID (RFC 7606 §7.10: an empty one is malformed)")
        object.__setattr__(self, "cluster_list", ids)

    def encode_value(self, four_octet_as: bool) -> bytes:
        return b"".join(c.packed for c in self.cluster_list)


def _family(obj: str, afi: object, safi: object) -> tuple[AFI, SAFI]:
    return (_enum(obj, "afi", afi, AFI, "must be 1 (IPv4) or 2 (IPv6)"),
            _enum(obj, "safi", safi, SAFI, "must be 1 (unicast) or 2 (multicast)"))


def _prefixes(obj: str, field: str, values: object, afi: AFI) -> tuple[IPNetwork, ...]:
    prefixes = tuple(parse_network(v, obj=obj, field=field) for v in _sequence(values))
    for prefix in prefixes:
        if prefix.version != (4 if afi == AFI.IPV4 else 6):
            raise InvalidValue(obj, field, prefix, f"must be {'IPv4' if afi == AFI.IPV4 else 'IPv6'} like the AFI")
    return prefixes


@dataclass(frozen=True)
class MPReachNLRI(_Attribute):
    """MP_REACH_NLRI: reachable prefixes of another address family, with their next hop
    (RFC 4760 §3). This is how IPv6 pod CIDRs are announced.

    An IPv6 next hop is the global address, optionally followed by the
    interface's link-local address (32 octets in all, RFC 2545 §3) - what BIRD
    sends on a shared subnet. IPv4 prefixes may also travel here (RFC 4760),
    with an IPv6 next hop when the Extended Next Hop capability allows it (RFC 8950).

    >>> MPReachNLRI(AFI.IPV6, SAFI.UNICAST, "fd00::12", ["fd00:10:244:1::/64"]).encode().hex()
    '800e1e00020110fd0000000000000000000000000000120040fd00001002440001'
    """

    afi: AFI
    safi: SAFI
    next_hop: tuple[IPAddress, ...]
    nlri: tuple[IPNetwork, ...] = ()
    type_code: ClassVar[int] = AttributeType.MP_REACH_NLRI
    flags: ClassVar[int] = OPTIONAL

    def __post_init__(self):
        afi, safi = _family("MPReachNLRI", self.afi, self.safi)
        hops = tuple(parse_address(h, obj="MPReachNLRI", field="next_hop") for h in _sequence(self.next_hop))
        versions = tuple(h.version for h in hops)
        allowed = {AFI.IPV6: ((6,), (6, 6)), AFI.IPV4: ((4,), (6,), (6, 6))}[afi]
        if versions not in allowed:
            raise InvalidValue("MPReachNLRI", "next_hop", hops,
                               "must be one IPv6 address, or a global and a link-local one (RFC 2545 §3)"
                               if afi == AFI.IPV6 else
                               "must be one IPv4 address, or IPv6 next hop(s) (RFC 8950)")
        object.__setattr__(self, "afi", afi)
        object.__setattr__(self, "safi", safi)
        object.__setattr__(self, "next_hop", hops)
        object.__setattr__(self, "nlri", _prefixes("MPReachNLRI", "nlri", self.nlri, afi))

    def encode_value(self, four_octet_as: bool) -> bytes:
        hop = b"".join(h.packed for h in self.next_hop)
        # AFI, SAFI, Length of Next Hop, Next Hop, Reserved (was SNPA count; MUST be 0), NLRI.
        return (self.afi.to_bytes(2, "big") + bytes([self.safi, len(hop)]) + hop + b"\x00"
                + b"".join(encode_prefix(p) for p in self.nlri))


@dataclass(frozen=True)
class MPUnreachNLRI(_Attribute):
    """MP_UNREACH_NLRI: withdrawn prefixes of another address family (RFC 4760 §4).

    With no prefixes at all it is the End-of-RIB marker for that family (RFC 4724 §2).
    """

    afi: AFI
    safi: SAFI
    withdrawn: tuple[IPNetwork, ...] = ()
    type_code: ClassVar[int] = AttributeType.MP_UNREACH_NLRI
    flags: ClassVar[int] = OPTIONAL

    def __post_init__(self):
        afi, safi = _family("MPUnreachNLRI", self.afi, self.safi)
        object.__setattr__(self, "afi", afi)
        object.__setattr__(self, "safi", safi)
        object.__setattr__(self, "withdrawn", _prefixes("MPUnreachNLRI", "withdrawn", self.withdrawn, afi))

    def encode_value(self, four_octet_as: bool) -> bytes:
        return self.afi.to_bytes(2, "big") + bytes([self.safi]) + b"".join(encode_prefix(p) for p in self.withdrawn)


@dataclass(frozen=True)
class UnknownAttribute:
    """An optional attribute this speaker does not implement, kept verbatim.

    RFC 4271 §5: an unrecognised optional *transitive* attribute is passed on
    with the Partial bit set; an optional *non-transitive* one is ignored. An
    unrecognised *well-known* attribute cannot exist - the decoder resets the
    session instead (RFC 4271 §6.3). Extended Communities (16) and Large
    Communities (32) land here.
    """

    flags: int
    type_code: int
    value: bytes = b""

    def __post_init__(self):
        _check_int("UnknownAttribute", "type_code", self.type_code, 255)
        if self.type_code in _SPEC:
            raise InvalidValue("UnknownAttribute", "type_code", self.type_code,
                               f"must not be {_name(self.type_code)}, which has its own class")
        flags = _check_int("UnknownAttribute", "flags", self.flags, 255)
        if flags & ~_FLAG_BITS or not flags & OPTIONAL:
            raise InvalidValue("UnknownAttribute", "flags", hex(flags),
                               "must set Optional (0x80) and use only Optional, Transitive and Partial (0xe0)")
        if not isinstance(self.value, (bytes, bytearray)):
            raise InvalidValue("UnknownAttribute", "value", self.value, "must be bytes")
        object.__setattr__(self, "value", bytes(self.value))

    def encode(self, *, four_octet_as: bool = True) -> bytes:
        """The attribute as received (the Extended Length bit is recomputed)."""
        return _tlv(self.flags, self.type_code, self.value)


PathAttribute = (Origin | ASPath | NextHop | MultiExitDisc | LocalPref | AtomicAggregate | Aggregator
                 | Communities | OriginatorID | ClusterList | MPReachNLRI | MPUnreachNLRI | UnknownAttribute)


# -- encoding a whole attribute list ---------------------------------------------------------------

def _as4_path(path: ASPath) -> ASPath | None:
    """AS4_PATH for a 2-octet peer: needed only if some AS does not fit (RFC 6793 §4.2.2),
    and never with confederation segments."""
    if all(asn <= 0xFFFF for asn in path.asns):
        return None
    return ASPath(tuple(s for s in path.segments
                        if s.segment_type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)))


def encode_path_attributes(attributes: tuple[PathAttribute, ...], *, four_octet_as: bool = True) -> bytes:
    """The Path Attributes field of an UPDATE, in the order given.

    Towards a 2-octet-AS peer, AS4_PATH (17) and AS4_AGGREGATOR (18) are added
    where RFC 6793 §4.2.2 requires them, placed after the last attribute with a
    lower type code so an ascending list stays ascending (RFC 4271 §5).
    """
    encoded = [a.encode(four_octet_as=four_octet_as) for a in attributes]
    if four_octet_as:
        return b"".join(encoded)
    extra = []
    for attribute in attributes:
        if isinstance(attribute, ASPath) and (as4 := _as4_path(attribute)):
            extra.append(_tlv(_OPTIONAL_TRANSITIVE, AttributeType.AS4_PATH, as4.encode_value(True)))
        if isinstance(attribute, Aggregator) and attribute.asn > 0xFFFF:
            extra.append(_tlv(_OPTIONAL_TRANSITIVE, AttributeType.AS4_AGGREGATOR, attribute.encode_value(True)))
    position = max((i + 1 for i, a in enumerate(attributes) if a.type_code < AttributeType.AS4_PATH), default=0)
    return b"".join(encoded[:position] + extra + encoded[position:])
