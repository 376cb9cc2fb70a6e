"""BGP-4 messages: OPEN, UPDATE, NOTIFICATION, KEEPALIVE and ROUTE-REFRESH, to and from bytes.

A BGP session is a TCP connection to port 179 carrying five kinds of message
(RFC 4271 §4, RFC 2918):

* **OPEN** - the first message each side sends: version 4, its AS, the Hold
  Time it proposes, its BGP Identifier (router ID) and its capabilities.
* **KEEPALIVE** - a bare header, sent to confirm the OPEN and then every third
  of the hold time so the peer knows the session is alive.
* **UPDATE** - withdraws prefixes and/or announces prefixes that share one set
  of path attributes. An UPDATE with nothing in it is the IPv4 End-of-RIB
  marker (RFC 4724 §2).
* **NOTIFICATION** - an error code; the sender closes the connection right after.
* **ROUTE-REFRESH** - "please send me your routes for this AFI/SAFI again".

Each message is a frozen dataclass whose fields are the RFC's fields;
``encode()`` gives the bytes and :func:`decode` reads them back. A KEEPALIVE
is 19 octets: the 16-octet all-ones marker, length 19, type 4.

>>> Keepalive().encode().hex()
'ffffffffffffffffffffffffffffffff001304'
>>> from kubenet_lab.bgp.attributes import ASPath, NextHop, Origin, OriginType
>>> u = Update(attributes=(Origin(OriginType.IGP), ASPath([64512]), NextHop("192.168.0.12")),
...            nlri=["10.244.1.0/24"])
>>> decode(u.encode()) == u
True
>>> decode(u.encode()).feasible_routes
(IPv4Network('10.244.1.0/24'),)

TCP hands over bytes, not messages; :func:`split_messages` cuts a receive
buffer at the Length fields and keeps an incomplete tail for the next read.
Anything the peer got wrong raises
:class:`~kubenet_lab.bgp.errors.BGPMessageError`, which names the
NOTIFICATION to send back; nothing else ever escapes :func:`decode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import ClassVar

from ..addresses import parse_network
from ..errors import InvalidValue
from .attribute_decoder import MalformedAttribute, decode_path_attributes
from .attributes import (
    AttributeType,
    MPReachNLRI,
    MPUnreachNLRI,
    PathAttribute,
    _check_int,
    _ipv4,
    _name,
    _sequence,
    encode_path_attributes,
)
from .capabilities import (
    Capability,
    FourOctetAS,
    MultiprotocolExtensions,
    RouteRefreshCapability,
    decode_optional_parameters,
    encode_optional_parameters,
)
from .errors import (
    Approach,
    BGPMessageError,
    ErrorCode,
    HeaderSubcode,
    OpenSubcode,
    RouteRefreshSubcode,
    UpdateSubcode,
    error_name,
)
from .wire import (
    AFI,
    AS_TRANS,
    BGP_VERSION,
    HEADER_LENGTH,
    MARKER,
    MAX_MESSAGE_LENGTH,
    MIN_LENGTH,
    SAFI,
    MessageType,
    _WireError,
    decode_prefixes,
    encode_prefix,
)

__all__ = [
    "DEFAULT_HOLD_TIME",
    "MIN_HOLD_TIME",
    "Open",
    "Update",
    "Notification",
    "Keepalive",
    "RouteRefresh",
    "Message",
    "decode",
    "split_messages",
    "end_of_rib",
]

#: "the suggested default value for the HoldTime is 90 seconds" (RFC 4271 §10); BIRD, GoBGP
#: and MetalLB use it, FRR's datacenter profile offers 9.
DEFAULT_HOLD_TIME = 90
#: "Hold Time MUST be either zero or at least three seconds" (RFC 4271 §4.2).
MIN_HOLD_TIME = 3


def _frame(message_type: MessageType, body: bytes) -> bytes:
    length = HEADER_LENGTH + len(body)
    if length > MAX_MESSAGE_LENGTH:
        raise InvalidValue(f"{message_type.name} message", "Length", length,
                           f"must be at most {MAX_MESSAGE_LENGTH} octets (RFC 4271 §4.1); split the routes "
                           f"over several UPDATEs")
    return MARKER + length.to_bytes(2, "big") + bytes([message_type]) + body


@dataclass(frozen=True)
class Open:
    """OPEN (RFC 4271 §4.2): who I am and what I can do.

    ``my_as`` is the wire field *My Autonomous System*, 2 octets: a speaker
    whose AS is above 65535 puts AS_TRANS (23456) there and its real AS in the
    4-octet AS capability (RFC 6793 §4.2.1). :meth:`for_speaker` builds it that
    way; :attr:`asn` reads it back. The constructor accepts any value that fits
    the fields, including ones a peer will refuse (version 3, hold time 2), so
    the NOTIFICATION they earn can be shown; :func:`decode` enforces RFC 4271 §6.2.

    >>> o = Open.for_speaker(4200000000, "192.168.0.11")
    >>> o.my_as, o.asn, o.hold_time, o.four_octet_as
    (23456, 4200000000, 90, True)
    """

    version: int
    my_as: int
    hold_time: int
    bgp_identifier: IPv4Address
    capabilities: tuple[Capability, ...] = ()
    message_type: ClassVar[MessageType] = MessageType.OPEN

    def __post_init__(self):
        _check_int("Open", "version", self.version, 0xFF)
        if _check_int("Open", "my_as", self.my_as, 2**32 - 1) > 0xFFFF:
            raise InvalidValue("Open", "my_as", self.my_as,
                               "must fit the 2-octet My Autonomous System field; a larger AS is sent as "
                               "AS_TRANS 23456 plus a FourOctetAS capability, which Open.for_speaker() builds "
                               "(RFC 6793 §4.2.1)")
        _check_int("Open", "hold_time", self.hold_time, 0xFFFF)
        object.__setattr__(self, "bgp_identifier", _ipv4("Open", "bgp_identifier", self.bgp_identifier))
        capabilities = _sequence(self.capabilities)
        for capability in capabilities:
            if not isinstance(capability, Capability):
                raise InvalidValue("Open", "capabilities", capability, "must be capability objects")
        object.__setattr__(self, "capabilities", capabilities)

    @classmethod
    def for_speaker(cls, asn: int, bgp_identifier: object, *, hold_time: int = DEFAULT_HOLD_TIME,
                    families: tuple[tuple[AFI, SAFI], ...] = ((AFI.IPV4, SAFI.UNICAST),),
                    route_refresh: bool = True) -> Open:
        """The OPEN a modern speaker sends: one Multiprotocol capability per family,
        Route Refresh, and always the 4-octet AS capability (RFC 6793 §4.1), with
        AS_TRANS in My AS when ``asn`` does not fit 2 octets (§4.2.1)."""
        _check_int("Open", "asn", asn, 2**32 - 1)
        if asn == 0:
            raise InvalidValue("Open", "asn", asn, "must not be 0 (RFC 7607 §2)")
        if hold_time != 0 and hold_time < MIN_HOLD_TIME:
            raise InvalidValue("Open", "hold_time", hold_time, "must be 0 or at least 3 seconds (RFC 4271 §4.2)")
        capabilities = [MultiprotocolExtensions(afi, safi) for afi, safi in families]
        if route_refresh:
            capabilities.append(RouteRefreshCapability())
        capabilities.append(FourOctetAS(asn))
        return cls(BGP_VERSION, asn if asn <= 0xFFFF else AS_TRANS, hold_time, bgp_identifier, tuple(capabilities))

    @property
    def asn(self) -> int:
        """The speaker's AS: the 4-octet capability's "in lieu of" My AS (RFC 6793 §4.1)."""
        return next((c.asn for c in self.capabilities if isinstance(c, FourOctetAS)), self.my_as)

    @property
    def four_octet_as(self) -> bool:
        """True if the OPEN carries the 4-octet AS capability (RFC 6793 §3)."""
        return any(isinstance(c, FourOctetAS) for c in self.capabilities)

    @property
    def route_refresh(self) -> bool:
        """True if the speaker accepts ROUTE-REFRESH (RFC 2918 §2)."""
        return any(isinstance(c, RouteRefreshCapability) for c in self.capabilities)

    @property
    def families(self) -> tuple[tuple[int, int], ...]:
        """(AFI, SAFI) pairs announced with Multiprotocol Extensions (RFC 4760 §8)."""
        return tuple((c.afi, c.safi) for c in self.capabilities if isinstance(c, MultiprotocolExtensions))

    def encode(self) -> bytes:
        parameters = encode_optional_parameters(self.capabilities)
        body = (bytes([self.version]) + self.my_as.to_bytes(2, "big") + self.hold_time.to_bytes(2, "big")
                + self.bgp_identifier.packed + bytes([len(parameters)]) + parameters)
        return _frame(MessageType.OPEN, body)


def _open_error(field: str, value: object, expected: str, subcode: int, data: bytes = b"") -> BGPMessageError:
    return BGPMessageError("OPEN message", field, value, expected,
                           code=ErrorCode.OPEN_MESSAGE_ERROR, subcode=subcode, data=data)


def _decode_open(body: bytes) -> Open:
    """RFC 4271 §6.2 checks, in the RFC's order, plus RFC 7607 §2 (AS 0) and RFC 6286 §2.2."""
    version = body[0]
    if version != BGP_VERSION:
        # Data: "the largest, locally-supported version number less than the version the
        # remote BGP peer bid ... or ... the smallest" - 4 either way, as 2 octets.
        raise _open_error("Version", version, "must be 4", OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
                          BGP_VERSION.to_bytes(2, "big"))
    my_as = int.from_bytes(body[1:3], "big")
    if my_as == 0:
        raise _open_error("My Autonomous System", my_as, "must not be AS 0 (RFC 7607 §2)", OpenSubcode.BAD_PEER_AS)
    hold_time = int.from_bytes(body[3:5], "big")
    if hold_time in (1, 2):
        raise _open_error("Hold Time", hold_time, "must be 0 or at least 3 seconds (RFC 4271 §6.2)",
                          OpenSubcode.UNACCEPTABLE_HOLD_TIME)
    identifier = IPv4Address(body[5:9])
    if int(identifier) == 0:
        raise _open_error("BGP Identifier", str(identifier), "must be non-zero (RFC 6286 §2.2)",
                          OpenSubcode.BAD_BGP_IDENTIFIER)
    length = body[9]
    if length == 255 and len(body) > 10 and body[10] == 255:
        # RFC 9072 §2: Non-Ext OP Len 255 + Non-Ext OP Type 255 announce 2-octet parameter
        # lengths. This speaker does not implement them and answers as RFC 9072 §3 expects of one.
        raise _open_error("Non-Ext OP Type", 255, "must not announce RFC 9072 extended Optional Parameters",
                          OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER)
    if 10 + length != len(body):
        raise _open_error("Opt Parm Len", length,
                          f"must equal the {len(body) - 10} octets that follow it (RFC 4271 §4.2)", 0)
    capabilities = decode_optional_parameters(body[10:])
    for capability in capabilities:
        if isinstance(capability, FourOctetAS) and capability.asn == 0:
            raise _open_error("Capabilities", 0, "must not announce 4-octet AS 0 (RFC 7607 §2)",
                              OpenSubcode.BAD_PEER_AS)
    return Open(version, my_as, hold_time, identifier, capabilities)


def _prefixes(obj: str, field: str, values: object) -> tuple[IPv4Network, ...]:
    prefixes = tuple(parse_network(v, obj=obj, field=field) for v in _sequence(values))
    for prefix in prefixes:
        if not isinstance(prefix, IPv4Network):
            raise InvalidValue(obj, field, prefix,
                               "must be IPv4: other families travel in MP_REACH_NLRI/MP_UNREACH_NLRI (RFC 4760)")
    return prefixes


@dataclass(frozen=True)
class Update:
    """UPDATE (RFC 4271 §4.3): withdraw some prefixes, announce others with one set of attributes.

    ``withdrawn`` and ``nlri`` are the IPv4 fields of the message itself;
    other families ride in :class:`~kubenet_lab.bgp.attributes.MPReachNLRI` and
    :class:`~kubenet_lab.bgp.attributes.MPUnreachNLRI` among the
    ``attributes``. Attributes are encoded in the order given; RFC 4271 §5 asks
    senders for ascending type codes and RFC 7606 §5.1 for MP_REACH_NLRI or
    MP_UNREACH_NLRI first.

    ``malformed`` is filled in by the decoder only: the RFC 7606 reports for
    attributes it discarded or that make the UPDATE count as withdrawn
    (:attr:`treat_as_withdraw`). ``encode()`` ignores it.

    >>> bad = decode(bytes.fromhex("ffffffffffffffffffffffffffffffff002f02" "0000" "0014"
    ...     "40010103" "40020602010000fc00" "400304c0a8000c" "180af401"))
    >>> bad.treat_as_withdraw, bad.feasible_routes, bad.unfeasible_routes
    (True, (), (IPv4Network('10.244.1.0/24'),))
    """

    withdrawn: tuple[IPv4Network, ...] = ()
    attributes: tuple[PathAttribute, ...] = ()
    nlri: tuple[IPv4Network, ...] = ()
    malformed: tuple[MalformedAttribute, ...] = ()
    message_type: ClassVar[MessageType] = MessageType.UPDATE

    def __post_init__(self):
        object.__setattr__(self, "withdrawn", _prefixes("Update", "withdrawn", self.withdrawn))
        object.__setattr__(self, "nlri", _prefixes("Update", "nlri", self.nlri))
        attributes = _sequence(self.attributes)
        codes = set()
        for attribute in attributes:
            if not isinstance(attribute, PathAttribute):
                raise InvalidValue("Update", "attributes", attribute, "must be path attribute objects")
            if attribute.type_code in codes:
                raise InvalidValue("Update", "attributes", attribute,
                                   "must not repeat an attribute type (RFC 7606 §3 g)")
            codes.add(attribute.type_code)
        object.__setattr__(self, "attributes", attributes)
        malformed = _sequence(self.malformed)
        if not all(isinstance(m, MalformedAttribute) for m in malformed):
            raise InvalidValue("Update", "malformed", malformed, "must be MalformedAttribute reports")
        object.__setattr__(self, "malformed", malformed)

    def attribute(self, kind: type) -> PathAttribute | None:
        """The attribute of class ``kind`` (e.g. ``ASPath``), or None."""
        return next((a for a in self.attributes if isinstance(a, kind)), None)

    @property
    def treat_as_withdraw(self) -> bool:
        """True when RFC 7606 says to handle this UPDATE as withdrawing all its prefixes."""
        return any(m.approach is Approach.TREAT_AS_WITHDRAW for m in self.malformed)

    @property
    def feasible_routes(self) -> tuple:
        """Prefixes this UPDATE makes reachable: NLRI plus MP_REACH_NLRI (none if treat-as-withdraw)."""
        if self.treat_as_withdraw:
            return ()
        return self._reachable()

    @property
    def unfeasible_routes(self) -> tuple:
        """Prefixes this UPDATE withdraws: Withdrawn Routes, MP_UNREACH_NLRI and, under
        treat-as-withdraw, everything it announced (RFC 7606 §2)."""
        withdrawn = self.withdrawn + tuple(p for a in self.attributes if isinstance(a, MPUnreachNLRI)
                                           for p in a.withdrawn)
        return withdrawn + (self._reachable() if self.treat_as_withdraw else ())

    def _reachable(self) -> tuple:
        return self.nlri + tuple(p for a in self.attributes if isinstance(a, MPReachNLRI) for p in a.nlri)

    @property
    def end_of_rib(self) -> tuple[AFI, SAFI] | None:
        """(AFI, SAFI) if this is an End-of-RIB marker, else None (RFC 4724 §2).

        IPv4 unicast: an UPDATE with no withdrawn routes, attributes or NLRI.
        Any other family: an UPDATE whose only attribute is an empty MP_UNREACH_NLRI.
        """
        if self.withdrawn or self.nlri:
            return None
        if not self.attributes:
            return AFI.IPV4, SAFI.UNICAST
        if (len(self.attributes) == 1 and isinstance(self.attributes[0], MPUnreachNLRI)
                and not self.attributes[0].withdrawn):
            return self.attributes[0].afi, self.attributes[0].safi
        return None

    def encode(self, *, four_octet_as: bool = True) -> bytes:
        """The UPDATE's bytes; ``four_octet_as=False`` for a peer without the 4-octet AS
        capability (2-octet AS numbers, AS4_PATH/AS4_AGGREGATOR where needed, RFC 6793 §4.2.2)."""
        withdrawn = b"".join(encode_prefix(p) for p in self.withdrawn)
        attributes = encode_path_attributes(self.attributes, four_octet_as=four_octet_as)
        nlri = b"".join(encode_prefix(p) for p in self.nlri)
        return _frame(MessageType.UPDATE, len(withdrawn).to_bytes(2, "big") + withdrawn
                      + len(attributes).to_bytes(2, "big") + attributes + nlri)


def end_of_rib(afi: AFI = AFI.IPV4, safi: SAFI = SAFI.UNICAST) -> Update:
    """The End-of-RIB marker a speaker sends after its initial routes (RFC 4724 §2).

    >>> end_of_rib().encode().hex()
    'ffffffffffffffffffffffffffffffff00170200000000'
    >>> end_of_rib(AFI.IPV6).encode().hex()[38:]   # no withdrawn routes; 6 octets of attributes
    '00000006800f03000201'
    """
    if (afi, safi) == (AFI.IPV4, SAFI.UNICAST):
        return Update()
    return Update(attributes=(MPUnreachNLRI(afi, safi),))


def _update_error(field: str, value: object, expected: str, subcode: int, data: bytes = b"") -> BGPMessageError:
    return BGPMessageError("UPDATE message", field, value, expected,
                           code=ErrorCode.UPDATE_MESSAGE_ERROR, subcode=subcode, data=data)


def _network_field(data: bytes, field: str) -> tuple[IPv4Network, ...]:
    try:
        return decode_prefixes(data, AFI.IPV4)
    except _WireError as err:
        # RFC 7606 §5.3 (and §3 i for Withdrawn Routes): unparseable -> session reset,
        # "Invalid Network Field" (RFC 4271 §6.3).
        raise _update_error(field, err.value, err.expected, UpdateSubcode.INVALID_NETWORK_FIELD) from None


def _decode_update(body: bytes, four_octet_as: bool) -> Update:
    withdrawn_length = int.from_bytes(body[0:2], "big")
    if 4 + withdrawn_length > len(body):
        raise _update_error("Withdrawn Routes Length", withdrawn_length,
                            f"must leave room for Total Path Attribute Length in {len(body)} octets "
                            f"(RFC 4271 §6.3)", UpdateSubcode.MALFORMED_ATTRIBUTE_LIST)
    attributes_length = int.from_bytes(body[2 + withdrawn_length: 4 + withdrawn_length], "big")
    if 4 + withdrawn_length + attributes_length > len(body):
        raise _update_error("Total Path Attribute Length", attributes_length,
                            f"must fit the {len(body) - 4 - withdrawn_length} octets left (RFC 4271 §6.3)",
                            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST)
    withdrawn = _network_field(body[2:2 + withdrawn_length], "Withdrawn Routes")
    start = 4 + withdrawn_length
    attributes, reports, seen = decode_path_attributes(body[start:start + attributes_length],
                                                       four_octet_as=four_octet_as)
    nlri = _network_field(body[start + attributes_length:], "Network Layer Reachability Information")

    if nlri or any(isinstance(a, MPReachNLRI) for a in attributes):
        # RFC 7606 §3 d; RFC 4760 §3 makes NEXT_HOP needed only for the NLRI field.
        required = [AttributeType.ORIGIN, AttributeType.AS_PATH] + ([AttributeType.NEXT_HOP] if nlri else [])
        reports += tuple(MalformedAttribute(code, Approach.TREAT_AS_WITHDRAW,
                                            UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
                                            f"well-known mandatory {code.name} is missing (RFC 7606 §3 d)",
                                            bytes([code]))
                         for code in required if code not in seen)
    elif AttributeType.MP_REACH_NLRI not in seen and seen - {AttributeType.MP_UNREACH_NLRI}:
        # RFC 7606 §5.2: with path attributes but nothing reachable, the receiver cannot be sure
        # it found the NLRI, so any error stronger than attribute discard resets the session.
        for report in reports:
            if report.approach is Approach.TREAT_AS_WITHDRAW:
                raise _update_error(_name(report.type_code), report.data.hex(),
                                    f"must be well-formed in an UPDATE without reachable NLRI: {report.reason} "
                                    f"(RFC 7606 §5.2)", report.subcode, report.data)
    return Update(withdrawn, attributes, nlri, reports)


@dataclass(frozen=True)
class Notification:
    """NOTIFICATION (RFC 4271 §4.5): an error report, after which the sender closes the session.

    Decoding accepts any code: "an unrecognized Error Code or Error Subcode"
    in a NOTIFICATION can only be logged (RFC 4271 §6.4).

    >>> n = Notification(6, 2)
    >>> str(n), n.encode().hex()
    ('NOTIFICATION 6/2 Cease / Administrative Shutdown', 'ffffffffffffffffffffffffffffffff0015030602')
    """

    code: int
    subcode: int
    data: bytes = b""
    message_type: ClassVar[MessageType] = MessageType.NOTIFICATION

    def __post_init__(self):
        _check_int("Notification", "code", self.code, 0xFF)
        _check_int("Notification", "subcode", self.subcode, 0xFF)
        if not isinstance(self.data, (bytes, bytearray)):
            raise InvalidValue("Notification", "data", self.data, "must be bytes")
        object.__setattr__(self, "code", int(self.code))
        object.__setattr__(self, "subcode", int(self.subcode))
        object.__setattr__(self, "data", bytes(self.data))

    def __str__(self) -> str:
        return f"NOTIFICATION {self.code}/{self.subcode} {error_name(self.code, self.subcode)}"

    def encode(self) -> bytes:
        return _frame(MessageType.NOTIFICATION, bytes([self.code, self.subcode]) + self.data)


@dataclass(frozen=True)
class Keepalive:
    """KEEPALIVE (RFC 4271 §4.4): only the 19-octet header."""

    message_type: ClassVar[MessageType] = MessageType.KEEPALIVE

    def encode(self) -> bytes:
        return _frame(MessageType.KEEPALIVE, b"")


@dataclass(frozen=True)
class RouteRefresh:
    """ROUTE-REFRESH (RFC 2918 §3): ask the peer to resend its Adj-RIB-Out for one AFI/SAFI.

    ``subtype`` is RFC 2918's Reserved octet, which RFC 7313 §3.2 turned into
    the Message Subtype (0 = refresh, 1 = BoRR, 2 = EoRR of Enhanced Route Refresh).

    >>> RouteRefresh(AFI.IPV6, SAFI.UNICAST).encode().hex()[32:]
    '00170500020001'
    """

    afi: int
    safi: int
    subtype: int = 0
    message_type: ClassVar[MessageType] = MessageType.ROUTE_REFRESH

    def __post_init__(self):
        afi = _check_int("RouteRefresh", "afi", self.afi, 0xFFFF)
        safi = _check_int("RouteRefresh", "safi", self.safi, 0xFF)
        _check_int("RouteRefresh", "subtype", self.subtype, 0xFF)
        object.__setattr__(self, "afi", AFI(afi) if afi in AFI._value2member_map_ else afi)
        object.__setattr__(self, "safi", SAFI(safi) if safi in SAFI._value2member_map_ else safi)

    def encode(self) -> bytes:
        return _frame(MessageType.ROUTE_REFRESH, self.afi.to_bytes(2, "big") + bytes([self.subtype, self.safi]))


def _decode_route_refresh(message: bytes) -> RouteRefresh:
    body = message[HEADER_LENGTH:]
    if len(body) != 4:
        subtype = body[2]
        if subtype in (1, 2):
            raise BGPMessageError("ROUTE-REFRESH message", "Length", len(message),
                                  "must be 23 for a BoRR/EoRR (RFC 7313 §5)",
                                  code=ErrorCode.ROUTE_REFRESH_MESSAGE_ERROR,
                                  subcode=RouteRefreshSubcode.INVALID_MESSAGE_LENGTH, data=message)
        raise BGPMessageError("ROUTE-REFRESH message", "Length", len(message),
                              "must be 23 (RFC 2918 §3; no ORF entries were negotiated, RFC 5291)",
                              code=ErrorCode.MESSAGE_HEADER_ERROR, subcode=HeaderSubcode.BAD_MESSAGE_LENGTH,
                              data=message[16:18])
    return RouteRefresh(int.from_bytes(body[:2], "big"), body[3], body[2])


Message = Open | Update | Notification | Keepalive | RouteRefresh


def _header_error(field: str, value: object, expected: str, subcode: int, data: bytes = b"") -> BGPMessageError:
    return BGPMessageError("BGP message header", field, value, expected,
                           code=ErrorCode.MESSAGE_HEADER_ERROR, subcode=subcode, data=data)


def _check_header(data: bytes) -> int:
    """Marker and Length checks that framing needs (RFC 4271 §6.1); returns the Length."""
    marker = data[:16]
    if marker != MARKER[:len(marker)]:
        raise _header_error("Marker", marker.hex(), "must be 16 octets of all ones",
                            HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED)
    if len(data) < 18:
        return 0
    length = int.from_bytes(data[16:18], "big")
    if not HEADER_LENGTH <= length <= MAX_MESSAGE_LENGTH:
        raise _header_error("Length", length, f"must be from {HEADER_LENGTH} to {MAX_MESSAGE_LENGTH}",
                            HeaderSubcode.BAD_MESSAGE_LENGTH, data[16:18])
    return length


def decode(data: bytes, *, four_octet_as: bool = True) -> Message:
    """Decode exactly one BGP message.

    ``four_octet_as`` says whether both sides sent the 4-octet AS capability;
    it decides how AS_PATH and AGGREGATOR are read (RFC 6793 §4.1). Header
    errors are checked in RFC 4271 §6.1 order: marker, length, type, then the
    type's minimum length.

    >>> decode(bytes.fromhex("ffffffffffffffffffffffffffffffff001309"))
    Traceback (most recent call last):
    ...
    kubenet_lab.bgp.errors.BGPMessageError: BGP message header: 'Type' must be 1 to 5 (OPEN ... ROUTE-REFRESH) (got 9) [NOTIFICATION 1/3 Message Header Error / Bad Message Type]
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidValue("BGP message", "data", type(data).__name__, "must be bytes")
    data = bytes(data)
    length = _check_header(data)
    if len(data) < HEADER_LENGTH:
        raise _header_error("Length", len(data), f"must be at least {HEADER_LENGTH} octets, a whole header",
                            HeaderSubcode.BAD_MESSAGE_LENGTH, data[16:18])
    if length != len(data):
        raise _header_error("Length", length,
                            f"must equal the {len(data)} octets given, one whole message (use split_messages)",
                            HeaderSubcode.BAD_MESSAGE_LENGTH, data[16:18])
    kind = data[18]
    if kind not in MessageType._value2member_map_:
        raise _header_error("Type", kind, "must be 1 to 5 (OPEN ... ROUTE-REFRESH)", HeaderSubcode.BAD_MESSAGE_TYPE,
                            bytes([kind]))
    kind = MessageType(kind)
    minimum = MIN_LENGTH[kind]
    if length < minimum or (kind == MessageType.KEEPALIVE and length != minimum):
        raise _header_error("Length", length,
                            f"must be {'exactly' if kind == MessageType.KEEPALIVE else 'at least'} {minimum} "
                            f"for {kind.name.replace('_', '-')} (RFC 4271 §6.1)",
                            HeaderSubcode.BAD_MESSAGE_LENGTH, data[16:18])
    body = data[HEADER_LENGTH:]
    if kind == MessageType.OPEN:
        return _decode_open(body)
    if kind == MessageType.UPDATE:
        return _decode_update(body, four_octet_as)
    if kind == MessageType.NOTIFICATION:
        return Notification(body[0], body[1], body[2:])
    if kind == MessageType.KEEPALIVE:
        return Keepalive()
    return _decode_route_refresh(data)


def split_messages(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut a TCP receive buffer into whole messages; return them and the incomplete rest.

    Only the marker and the Length field are checked here, because a wrong
    one means the stream can no longer be framed (RFC 4271 §6.1): the
    receiver must send NOTIFICATION and close.

    >>> ka = Keepalive().encode()
    >>> frames, rest = split_messages(ka + ka + ka[:7])
    >>> len(frames), rest == ka[:7]
    (2, True)
    """
    if not isinstance(buffer, (bytes, bytearray, memoryview)):
        raise InvalidValue("BGP stream", "buffer", type(buffer).__name__, "must be bytes")
    buffer = bytes(buffer)
    frames = []
    offset = 0
    while offset < len(buffer):
        length = _check_header(buffer[offset:offset + 18])
        if length == 0 or offset + length > len(buffer):
            break
        frames.append(buffer[offset:offset + length])
        offset += length
    return frames, buffer[offset:]
