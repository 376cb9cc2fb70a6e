"""Decoding an UPDATE's path attributes with RFC 7606 error handling and RFC 6793 AS4 merging.

The decoder walks the Path Attributes field one type-length-value at a time
and, for each problem, applies the approach RFC 7606 prescribes for that
attribute (the table is in :mod:`kubenet_lab.bgp.attributes`):

* the header walk itself (RFC 7606 §4): an attribute whose length runs past
  the field, or a tail too short for an attribute header, ends the walk and
  the UPDATE is *treat-as-withdraw* - Total Path Attribute Length still
  locates the NLRI;
* a repeated attribute (§3 g): later copies are discarded, except a second
  MP_REACH_NLRI or MP_UNREACH_NLRI, which resets the session;
* wrong Optional/Transitive flags (§3 c) or a Partial bit on a well-known or
  optional non-transitive attribute (RFC 4271 §4.3): the attribute counts as
  malformed and gets its own approach;
* an unrecognised *well-known* attribute: session reset (RFC 4271 §6.3);
  unrecognised optional ones are kept as
  :class:`~kubenet_lab.bgp.attributes.UnknownAttribute`;
* AS 0 anywhere in AS_PATH or AGGREGATOR is malformed (RFC 7607 §2).

From a 2-octet-AS ("OLD") peer, AS4_PATH and AS4_AGGREGATOR are merged into
AS_PATH and AGGREGATOR (RFC 6793 §4.2.3); from a 4-octet one they are
discarded (§4.1). Session resets raise
:class:`~kubenet_lab.bgp.errors.BGPMessageError`; the rest comes back as
:class:`MalformedAttribute` reports for the UPDATE to carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..addresses import IPNetwork
from .attributes import (
    _DISCARD,
    _FLAG_BITS,
    _OPTIONAL_TRANSITIVE,
    _RESET,
    _SPEC,
    _TAW,
    EXTENDED_LENGTH,
    OPTIONAL,
    PARTIAL,
    TRANSITIVE,
    Aggregator,
    ASPath,
    ASPathSegment,
    AtomicAggregate,
    AttributeType,
    ClusterList,
    Communities,
    LocalPref,
    MPReachNLRI,
    MPUnreachNLRI,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorID,
    PathAttribute,
    SegmentType,
    UnknownAttribute,
    _name,
)
from .errors import Approach, BGPMessageError, ErrorCode, UpdateSubcode, error_name
from .wire import AFI, AS_TRANS, SAFI, _WireError, decode_prefixes

__all__ = ["MalformedAttribute", "decode_path_attributes"]


@dataclass(frozen=True)
class MalformedAttribute:
    """A path attribute the decoder found malformed or missing, and what RFC 7606 says to do.

    Only the two lesser approaches appear here: with *treat-as-withdraw* the
    UPDATE's prefixes count as withdrawn, with *attribute discard* the
    attribute is simply gone. (Session reset is raised as
    :class:`~kubenet_lab.bgp.errors.BGPMessageError`.)

    Attributes:
        type_code: the attribute's type code (the missing one, for a missing attribute).
        approach: :class:`~kubenet_lab.bgp.errors.Approach` the receiver applies.
        subcode: the UPDATE Message Error subcode RFC 4271 §6.3 assigns to this error -
            what would be sent if the error were escalated to a session reset.
        reason: a sentence naming the field, the value and the rule.
        data: the NOTIFICATION Data field RFC 4271 §6.3 prescribes (usually the whole attribute).
    """

    type_code: int
    approach: Approach
    subcode: UpdateSubcode
    reason: str
    data: bytes = b""

    def __str__(self) -> str:
        return f"{self.approach.value}: {self.reason} [{error_name(ErrorCode.UPDATE_MESSAGE_ERROR, self.subcode)}]"

    def notification(self):
        """The NOTIFICATION RFC 4271 would have sent for this error."""
        from .messages import Notification

        return Notification(int(ErrorCode.UPDATE_MESSAGE_ERROR), int(self.subcode), self.data)


class _Problem(Exception):
    """Internal: one attribute's error, raised inside a value decoder and caught by the walk."""

    def __init__(self, subcode: UpdateSubcode, reason: str):
        super().__init__(subcode, reason)
        self.subcode = subcode
        self.reason = reason


def _length(value: bytes, expected: int, what: str, rule: str) -> None:
    if len(value) != expected:
        raise _Problem(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                       f"{what} must be {expected} octets long, not {len(value)} ({rule})")


def _segments(value: bytes, width: int, what: str, subcode: UpdateSubcode, rule: str) -> tuple[ASPathSegment, ...]:
    """AS_PATH / AS4_PATH segments; malformed per RFC 7606 §7.2 / RFC 6793 §6, AS 0 per RFC 7607 §2."""
    segments = []
    offset = 0
    while offset < len(value):
        if offset + 2 > len(value):
            raise _Problem(subcode, f"{what} ends with a lone octet where a segment header should be ({rule})")
        kind, count = value[offset], value[offset + 1]
        if kind not in SegmentType._value2member_map_:
            raise _Problem(subcode, f"{what} has an unrecognized segment type {kind} ({rule})")
        if count == 0:
            raise _Problem(subcode, f"{what} has a segment of length 0 ({rule})")
        end = offset + 2 + count * width
        if end > len(value):
            raise _Problem(subcode, f"{what} segment of {count} ASes overruns the attribute ({rule})")
        asns = tuple(int.from_bytes(value[i:i + width], "big") for i in range(offset + 2, end, width))
        if 0 in asns:
            raise _Problem(subcode, f"{what} contains AS 0 (RFC 7607 §2)")
        segments.append(ASPathSegment(SegmentType(kind), asns))
        offset = end
    return tuple(segments)


def _aggregator(value: bytes, width: int, what: str) -> Aggregator:
    _length(value, width + 4, what, "RFC 7606 §7.7" if what == "AGGREGATOR" else "RFC 6793 §6")
    asn = int.from_bytes(value[:width], "big")
    if asn == 0:
        raise _Problem(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"{what} names AS 0 (RFC 7607 §2)")
    return Aggregator(asn, IPv4Address(value[width:]))


def _mp_family(value: bytes) -> tuple[AFI, SAFI] | None:
    afi, safi = int.from_bytes(value[:2], "big"), value[2]
    if afi in AFI._value2member_map_ and safi in SAFI._value2member_map_:
        return AFI(afi), SAFI(safi)
    return None


_NEXT_HOP_LENGTHS = {AFI.IPV4: (4, 16, 32), AFI.IPV6: (16, 32)}   # RFC 4760 §3, RFC 2545 §3, RFC 8950 §3


def _mp_prefixes(data: bytes, afi: AFI, what: str) -> tuple[IPNetwork, ...]:
    try:
        return decode_prefixes(data, afi)
    except _WireError as err:
        # RFC 7606 §5.3: NLRI in MP_REACH/MP_UNREACH that cannot be parsed -> session reset;
        # RFC 4760 §7 names the subcode.
        raise _Problem(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                       f"{what} NLRI {err.value} {err.expected} (RFC 7606 §5.3)") from None


def _mp_reach(value: bytes) -> MPReachNLRI | None:
    if len(value) < 5:
        raise _Problem(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                       f"MP_REACH_NLRI must be at least 5 octets long, not {len(value)} (RFC 7606 §5.3)")
    family = _mp_family(value)
    if family is None:
        return None
    afi, safi = family
    hop_length = value[3]
    if hop_length not in _NEXT_HOP_LENGTHS[afi]:
        raise _Problem(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                       f"MP_REACH_NLRI next hop length {hop_length} is not one of {_NEXT_HOP_LENGTHS[afi]} "
                       f"for AFI {afi.name} (RFC 7606 §7.11)")
    if 5 + hop_length > len(value):
        raise _Problem(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                       f"MP_REACH_NLRI next hop of {hop_length} octets overruns the attribute (RFC 7606 §7.11)")
    hop = value[4:4 + hop_length]
    hops = (IPv4Address(hop),) if hop_length == 4 else tuple(IPv6Address(hop[i:i + 16]) for i in range(0, hop_length, 16))
    return MPReachNLRI(afi, safi, hops, _mp_prefixes(value[5 + hop_length:], afi, "MP_REACH_NLRI"))


def _mp_unreach(value: bytes) -> MPUnreachNLRI | None:
    if len(value) < 3:
        raise _Problem(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                       f"MP_UNREACH_NLRI must be at least 3 octets long, not {len(value)} (RFC 7606 §5.3)")
    family = _mp_family(value)
    if family is None:
        return None
    return MPUnreachNLRI(*family, _mp_prefixes(value[3:], family[0], "MP_UNREACH_NLRI"))


def _next_hop(value: bytes) -> NextHop:
    _length(value, 4, "NEXT_HOP", "RFC 7606 §7.3")
    address = IPv4Address(value)
    first = value[0]
    # "Syntactic correctness means that the NEXT_HOP attribute represents a valid IP host
    # address" (RFC 4271 §6.3): not 0/8, 127/8, class D (multicast) or class E - FRR's
    # ipv4_unicast_valid() draws the same line.
    if first in (0, 127) or first >= 224:
        raise _Problem(UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE,
                       f"NEXT_HOP {address} is not a unicast host address (RFC 4271 §6.3)")
    return NextHop(address)


def _u32(value: bytes, what: str, rule: str) -> int:
    _length(value, 4, what, rule)
    return int.from_bytes(value, "big")


def _ipv4_list(value: bytes, what: str, rule: str) -> tuple[IPv4Address, ...]:
    if not value or len(value) % 4:
        raise _Problem(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                       f"{what} must be a non-zero multiple of 4 octets long, not {len(value)} ({rule})")
    return tuple(IPv4Address(value[i:i + 4]) for i in range(0, len(value), 4))


def _decode_value(type_code: int, value: bytes, four_octet_as: bool):
    """One known attribute's value, or :class:`_Problem`; ``None`` for an MP family not implemented."""
    width = 4 if four_octet_as else 2
    if type_code == AttributeType.ORIGIN:
        _length(value, 1, "ORIGIN", "RFC 7606 §7.1")
        if value[0] > 2:
            raise _Problem(UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {value[0]} is undefined (RFC 7606 §7.1)")
        return Origin(value[0])
    if type_code == AttributeType.AS_PATH:
        return ASPath(_segments(value, width, "AS_PATH", UpdateSubcode.MALFORMED_AS_PATH, "RFC 7606 §7.2"))
    if type_code == AttributeType.NEXT_HOP:
        return _next_hop(value)
    if type_code == AttributeType.MULTI_EXIT_DISC:
        return MultiExitDisc(_u32(value, "MULTI_EXIT_DISC", "RFC 7606 §7.4"))
    if type_code == AttributeType.LOCAL_PREF:
        return LocalPref(_u32(value, "LOCAL_PREF", "RFC 7606 §7.5"))
    if type_code == AttributeType.ATOMIC_AGGREGATE:
        _length(value, 0, "ATOMIC_AGGREGATE", "RFC 7606 §7.6")
        return AtomicAggregate()
    if type_code == AttributeType.AGGREGATOR:
        return _aggregator(value, width, "AGGREGATOR")
    if type_code == AttributeType.COMMUNITIES:
        if not value or len(value) % 4:
            raise _Problem(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                           f"COMMUNITIES must be a non-zero multiple of 4 octets long, not {len(value)} (RFC 7606 §7.8)")
        return Communities(tuple(int.from_bytes(value[i:i + 4], "big") for i in range(0, len(value), 4)))
    if type_code == AttributeType.ORIGINATOR_ID:
        _length(value, 4, "ORIGINATOR_ID", "RFC 7606 §7.9")
        return OriginatorID(IPv4Address(value))
    if type_code == AttributeType.CLUSTER_LIST:
        return ClusterList(_ipv4_list(value, "CLUSTER_LIST", "RFC 7606 §7.10"))
    if type_code == AttributeType.MP_REACH_NLRI:
        return _mp_reach(value)
    if type_code == AttributeType.MP_UNREACH_NLRI:
        return _mp_unreach(value)
    if type_code == AttributeType.AS4_PATH:
        if len(value) < 6 or len(value) % 2:
            raise _Problem(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                           f"AS4_PATH of {len(value)} octets cannot hold a 4-octet AS path (RFC 6793 §6)")
        return ASPath(_segments(value, 4, "AS4_PATH", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, "RFC 6793 §6"))
    return _aggregator(value, 4, "AS4_AGGREGATOR")


def _flags_ok(type_code: int, flags: int) -> bool:
    """Optional and Transitive as the attribute's RFC fixes them (RFC 7606 §3 c); Partial only
    on an optional transitive attribute (RFC 4271 §4.3), as FRR's bgp_attr_flag_invalid() checks."""
    wanted = _SPEC[type_code][0]
    if flags & (OPTIONAL | TRANSITIVE) != wanted:
        return False
    return not flags & PARTIAL or wanted == _OPTIONAL_TRANSITIVE


def _reconstruct(as_path: ASPath, as4_path: ASPath) -> ASPath:
    """RFC 6793 §4.2.3: take as many leading ASes from AS_PATH as AS4_PATH lacks, then AS4_PATH.

    AS numbers are counted as for best-path selection (an AS_SET counts 1,
    confederation segments 0); a confederation segment is kept when it leads
    the path or is adjacent to a prepended segment.
    """
    missing = as_path.length - as4_path.length
    head: list[ASPathSegment] = []
    for segment in as_path.segments:
        if segment.segment_type in (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET):
            head.append(segment)
            continue
        if missing <= 0:
            break
        if segment.segment_type == SegmentType.AS_SET:
            head.append(segment)
            missing -= 1
        else:
            taken = segment.asns[:missing]
            head.append(ASPathSegment(SegmentType.AS_SEQUENCE, taken))
            missing -= len(taken)
    tail = list(as4_path.segments)
    if (head and tail and head[-1].segment_type == tail[0].segment_type == SegmentType.AS_SEQUENCE
            and len(head[-1].asns) + len(tail[0].asns) <= 255):
        tail[0] = ASPathSegment(SegmentType.AS_SEQUENCE, head.pop().asns + tail[0].asns)
    return ASPath(tuple(head + tail))


def decode_path_attributes(data: bytes, *, four_octet_as: bool = True
                           ) -> tuple[tuple[PathAttribute, ...], tuple[MalformedAttribute, ...], frozenset[int]]:
    """Decode an UPDATE's Path Attributes field with RFC 7606 error handling.

    Returns the attributes (in wire order, malformed and discarded ones left
    out), the :class:`MalformedAttribute` reports, and the set of type codes
    that were present at all (the caller checks for missing well-known
    attributes, which depends on the NLRI). Raises
    :class:`~kubenet_lab.bgp.errors.BGPMessageError` where the approach is
    session reset.

    >>> attrs, reports, seen = decode_path_attributes(bytes.fromhex("40010103" "400200"))
    >>> attrs
    (ASPath(''),)
    >>> print(reports[0])
    treat-as-withdraw: ORIGIN value 3 is undefined (RFC 7606 §7.1) [UPDATE Message Error / Invalid ORIGIN Attribute]
    """
    attributes: list[PathAttribute] = []
    reports: list[MalformedAttribute] = []
    seen: set[int] = set()
    as4_path: ASPath | None = None
    as4_aggregator: Aggregator | None = None
    as4_raw: dict[int, bytes] = {}

    def problem(type_code: int, approach: Approach, subcode: UpdateSubcode, reason: str, raw: bytes) -> None:
        if approach is Approach.SESSION_RESET:
            raise BGPMessageError("UPDATE message", _name(type_code), raw.hex(), reason,
                                  code=ErrorCode.UPDATE_MESSAGE_ERROR, subcode=subcode, data=raw)
        reports.append(MalformedAttribute(type_code, approach, subcode, reason, raw))

    offset = 0
    while offset < len(data):
        flags = data[offset]
        header = 4 if flags & EXTENDED_LENGTH else 3
        if len(data) - offset < header:
            # RFC 7606 §4: too few octets left for even an attribute header.
            problem(data[offset + 1] if len(data) - offset > 1 else 0, _TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    f"{len(data) - offset} octet(s) left at the end of the path attributes, fewer than an "
                    f"attribute header (RFC 7606 §4)", data[offset:])
            break
        type_code = data[offset + 1]
        length = int.from_bytes(data[offset + 2: offset + header], "big")
        end = offset + header + length
        raw = data[offset:end]
        if end > len(data):
            # RFC 7606 §4: the last attribute overruns Total Path Attribute Length.
            problem(type_code, _TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    f"{_name(type_code)} length {length} runs past the end of the path attributes (RFC 7606 §4)",
                    raw)
            break
        value = data[offset + header:end]
        offset = end
        if type_code in seen:
            if type_code in (AttributeType.MP_REACH_NLRI, AttributeType.MP_UNREACH_NLRI):
                problem(type_code, _RESET, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                        f"{_name(type_code)} must appear only once (RFC 7606 §3 g)", raw)
            problem(type_code, _DISCARD, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    f"a second {_name(type_code)} is discarded (RFC 7606 §3 g)", raw)
            continue
        seen.add(type_code)
        if type_code not in _SPEC:
            if not flags & OPTIONAL:
                problem(type_code, _RESET, UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                        f"well-known attribute type {type_code} is not recognized (RFC 4271 §6.3)", raw)
            attributes.append(UnknownAttribute(flags & _FLAG_BITS, type_code, value))
            continue
        approach = _SPEC[type_code][1]
        if not _flags_ok(type_code, flags):
            problem(type_code, approach, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
                    f"{_name(type_code)} flags 0x{flags & 0xF0:02x} conflict with its type "
                    f"(RFC 4271 §6.3, RFC 7606 §3 c)", raw)
            continue
        try:
            attribute = _decode_value(type_code, value, four_octet_as)
        except _Problem as err:
            problem(type_code, approach, err.subcode, err.reason, raw)
            continue
        if attribute is None:
            problem(type_code, _DISCARD, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                    f"{_name(type_code)} AFI {int.from_bytes(value[:2], 'big')} SAFI {value[2]} is not an "
                    f"IPv4/IPv6 unicast or multicast family, so it is ignored", raw)
        elif type_code == AttributeType.AS4_PATH:
            as4_path, as4_raw[type_code] = _as4_segments_checked(attribute, raw, problem), raw
        elif type_code == AttributeType.AS4_AGGREGATOR:
            as4_aggregator, as4_raw[type_code] = attribute, raw
        else:
            attributes.append(attribute)

    if four_octet_as:
        for code, present in ((AttributeType.AS4_PATH, as4_path), (AttributeType.AS4_AGGREGATOR, as4_aggregator)):
            if present is not None:
                problem(code, _DISCARD, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                        f"{code.name} between two 4-octet-AS speakers is discarded (RFC 6793 §4.1)", as4_raw[code])
    else:
        attributes = _merge_as4(attributes, as4_path, as4_aggregator)
    return tuple(attributes), tuple(reports), frozenset(seen)


def _as4_segments_checked(path: ASPath, raw: bytes, problem) -> ASPath:
    """RFC 6793 §6: confederation segments in AS4_PATH are discarded, the rest kept."""
    kept = tuple(s for s in path.segments if s.segment_type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET))
    if len(kept) != len(path.segments):
        problem(AttributeType.AS4_PATH, _DISCARD, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                "AS4_PATH confederation segments are discarded (RFC 6793 §6)", raw)
    return ASPath(kept)


def _merge_as4(attributes: list, as4_path: ASPath | None, as4_aggregator: Aggregator | None) -> list:
    """What a NEW speaker makes of an UPDATE from an OLD one (RFC 6793 §4.2.3)."""
    index = {type(a): i for i, a in enumerate(attributes)}
    if as4_aggregator is not None and Aggregator in index:
        aggregator = attributes[index[Aggregator]]
        if aggregator.asn != AS_TRANS:
            # "the AS4_AGGREGATOR attribute and the AS4_PATH attribute (if present) MUST be ignored"
            return attributes
        attributes[index[Aggregator]] = as4_aggregator
    if as4_path is not None and ASPath in index:
        as_path = attributes[index[ASPath]]
        if as_path.length >= as4_path.length:
            attributes[index[ASPath]] = _reconstruct(as_path, as4_path)
    return attributes
