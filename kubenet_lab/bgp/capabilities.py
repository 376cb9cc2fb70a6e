"""Capabilities: what a BGP speaker says it can do, in its OPEN (RFC 5492).

An OPEN message ends with Optional Parameters; parameter type 2 carries
Capabilities, each a ``code, length, value`` triple (RFC 5492 §4). A speaker
uses only what *both* sides advertised, so this is where two routers agree on
the address families they will exchange, on 4-octet AS numbers and on route
refresh. The three that matter for a Kubernetes fabric:

=====  ===============================  =========  ================================================
code   capability                       RFC        what it changes
=====  ===============================  =========  ================================================
1      Multiprotocol Extensions         4760 §8    one per (AFI, SAFI): IPv6 pod CIDRs need (2, 1)
2      Route Refresh                    2918 §2    the peer may ask for a resend (``clear bgp soft in``)
65     Support for 4-octet AS number    6793 §3    AS numbers in AS_PATH become 4 octets wide
=====  ===============================  =========  ================================================

Anything else (Graceful Restart 64, which BIRD and FRR always send,
ADD-PATH 69, FQDN 73, ...) is kept as an :class:`UnknownCapability` so it can
be shown and compared, never dropped. BIRD, FRR and GoBGP pack all their
capabilities into *one* Optional Parameter (datapath.md §3, lesson 3); RFC
5492 also allows one parameter per capability, and the decoder reads both.

>>> cap = FourOctetAS(4200000000)
>>> cap.encode().hex()                       # code 65, length 4, the AS number
'4104fa56ea00'
>>> decode_capabilities(bytes.fromhex("010400010001" "0200"))
(MultiprotocolExtensions(afi=AFI.IPV4, safi=SAFI.UNICAST), RouteRefreshCapability())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import InvalidValue
from .errors import BGPMessageError, ErrorCode, OpenSubcode
from .wire import AFI, MAX_AS, SAFI

__all__ = [
    "MultiprotocolExtensions",
    "RouteRefreshCapability",
    "FourOctetAS",
    "UnknownCapability",
    "Capability",
    "CAPABILITY_NAMES",
    "CAPABILITIES_PARAMETER",
    "encode_optional_parameters",
    "decode_optional_parameters",
    "decode_capabilities",
]

#: Optional Parameter type that carries Capabilities (RFC 5492 §4); the only one still defined.
CAPABILITIES_PARAMETER = 2

#: IANA "Capability Codes", for the capabilities seen from BIRD, FRR and GoBGP (datapath.md §3).
CAPABILITY_NAMES = {
    1: "Multiprotocol Extensions",                  # RFC 4760
    2: "Route Refresh",                             # RFC 2918
    5: "Extended Next Hop Encoding",                # RFC 8950
    6: "BGP Extended Message",                      # RFC 8654
    64: "Graceful Restart",                         # RFC 4724
    65: "Support for 4-octet AS number",            # RFC 6793
    69: "ADD-PATH",                                 # RFC 7911
    70: "Enhanced Route Refresh",                   # RFC 7313
    71: "Long-Lived Graceful Restart",              # RFC 9494
    73: "FQDN",                                     # draft-walton-bgp-hostname-capability
    128: "Route Refresh (pre-standard)",            # Cisco's code before RFC 2918
}

_OBJ = "OPEN message"


def _check_int(obj: str, field: str, value: object, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise InvalidValue(obj, field, value, f"must be an integer from 0 to {top}")
    return value


class _Capability:
    """Shared encoding: ``code (1) | length (1) | value`` (RFC 5492 §4)."""

    code: ClassVar[int]

    def encode(self) -> bytes:
        value = self.encode_value()
        return bytes([self.code, len(value)]) + value


@dataclass(frozen=True)
class MultiprotocolExtensions(_Capability):
    """Multiprotocol Extensions capability: "I can exchange routes of this AFI/SAFI".

    Value: AFI (2 octets), Reserved (1, zero), SAFI (1) - RFC 4760 §8. A speaker
    sends one per family; without any, RFC 4760 §8 implies IPv4 unicast only.
    """

    afi: int
    safi: int
    code: ClassVar[int] = 1

    def __post_init__(self):
        afi = _check_int("MultiprotocolExtensions", "afi", self.afi, 0xFFFF)
        safi = _check_int("MultiprotocolExtensions", "safi", self.safi, 0xFF)
        object.__setattr__(self, "afi", AFI(afi) if afi in AFI._value2member_map_ else afi)
        object.__setattr__(self, "safi", SAFI(safi) if safi in SAFI._value2member_map_ else safi)

    def encode_value(self) -> bytes:
        return self.afi.to_bytes(2, "big") + b"\x00" + bytes([self.safi])


@dataclass(frozen=True)
class RouteRefreshCapability(_Capability):
    """Route Refresh capability: the peer may send ROUTE-REFRESH (RFC 2918 §2; empty value)."""

    code: ClassVar[int] = 2

    def encode_value(self) -> bytes:
        return b""


@dataclass(frozen=True)
class FourOctetAS(_Capability):
    """Support for 4-octet AS number capability, carrying the speaker's real AS (RFC 6793 §3).

    When both sides send it, AS numbers in AS_PATH and AGGREGATOR are 4 octets
    wide, and the receiver uses this AS "in lieu of" the OPEN's 2-octet
    My Autonomous System field (RFC 6793 §4.1).
    """

    asn: int
    code: ClassVar[int] = 65

    def __post_init__(self):
        _check_int("FourOctetAS", "asn", self.asn, MAX_AS)

    def encode_value(self) -> bytes:
        return self.asn.to_bytes(4, "big")


@dataclass(frozen=True)
class UnknownCapability(_Capability):
    """Any other capability, kept as its code and raw value (RFC 5492 §4: a
    speaker ignores capabilities it does not understand)."""

    code: int
    value: bytes = b""

    def __post_init__(self):
        _check_int("UnknownCapability", "code", self.code, 0xFF)
        if self.code in _KNOWN:
            raise InvalidValue("UnknownCapability", "code", self.code,
                               f"must not be a decoded capability; use {_KNOWN[self.code].__name__}")
        if not isinstance(self.value, (bytes, bytearray)) or len(self.value) > 255:
            raise InvalidValue("UnknownCapability", "value", self.value, "must be at most 255 bytes")
        object.__setattr__(self, "value", bytes(self.value))

    @property
    def name(self) -> str:
        """IANA's name for the code, e.g. ``'Graceful Restart'``."""
        return CAPABILITY_NAMES.get(self.code, f"capability {self.code}")

    def encode_value(self) -> bytes:
        return self.value


Capability = MultiprotocolExtensions | RouteRefreshCapability | FourOctetAS | UnknownCapability
_KNOWN = {1: MultiprotocolExtensions, 2: RouteRefreshCapability, 65: FourOctetAS}


def _malformed(value: object, expected: str) -> BGPMessageError:
    # RFC 4271 §4.5: "If no appropriate Error Subcode is defined, then a zero
    # (Unspecific) value is used"; RFC 5492 defines none for a malformed capability.
    return BGPMessageError(_OBJ, "Capabilities", value, expected,
                           code=ErrorCode.OPEN_MESSAGE_ERROR, subcode=0)


def decode_capabilities(data: bytes) -> tuple[Capability, ...]:
    """The capabilities packed in one Optional Parameter's value (RFC 5492 §4)."""
    capabilities = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise _malformed(data[offset:].hex(), "must hold a 2-octet capability header")
        code, length = data[offset], data[offset + 1]
        value = data[offset + 2: offset + 2 + length]
        if len(value) != length:
            raise _malformed(data[offset:].hex(), f"must hold the {length} octets capability {code} announces")
        if code == MultiprotocolExtensions.code:
            if length != 4:
                raise _malformed(value.hex(), "must be 4 octets for Multiprotocol Extensions (RFC 4760 §8)")
            capabilities.append(MultiprotocolExtensions(int.from_bytes(value[:2], "big"), value[3]))
        elif code == RouteRefreshCapability.code:
            if length != 0:
                raise _malformed(value.hex(), "must be empty for Route Refresh (RFC 2918 §2)")
            capabilities.append(RouteRefreshCapability())
        elif code == FourOctetAS.code:
            if length != 4:
                raise _malformed(value.hex(), "must be 4 octets for the 4-octet AS capability (RFC 6793 §3)")
            capabilities.append(FourOctetAS(int.from_bytes(value, "big")))
        else:
            capabilities.append(UnknownCapability(code, value))
        offset += 2 + length
    return tuple(capabilities)


def decode_optional_parameters(data: bytes) -> tuple[Capability, ...]:
    """All capabilities in an OPEN's Optional Parameters field (RFC 4271 §4.2, RFC 5492 §4).

    A parameter of any type other than 2 earns "Unsupported Optional Parameter"
    (RFC 4271 §6.2). That includes type 255, the RFC 9072 marker for extended
    parameter lengths, which this speaker does not implement.
    """
    capabilities: list[Capability] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise BGPMessageError(_OBJ, "Optional Parameters", data[offset:].hex(),
                                  "must hold a 2-octet parameter header",
                                  code=ErrorCode.OPEN_MESSAGE_ERROR, subcode=0)
        kind, length = data[offset], data[offset + 1]
        value = data[offset + 2: offset + 2 + length]
        if len(value) != length:
            raise BGPMessageError(_OBJ, "Optional Parameters", data[offset:].hex(),
                                  f"must hold the {length} octets parameter type {kind} announces",
                                  code=ErrorCode.OPEN_MESSAGE_ERROR, subcode=0)
        if kind != CAPABILITIES_PARAMETER:
            raise BGPMessageError(_OBJ, "Parm. Type", kind, "must be 2 (Capabilities, RFC 5492 §4)",
                                  code=ErrorCode.OPEN_MESSAGE_ERROR,
                                  subcode=OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER)
        capabilities.extend(decode_capabilities(value))
        offset += 2 + length
    return tuple(capabilities)


def encode_optional_parameters(capabilities: tuple[Capability, ...]) -> bytes:
    """Capabilities packed as BIRD, FRR and GoBGP do: as few type-2 parameters as fit.

    A parameter's value holds at most 255 octets, so a long list spills into a
    second parameter; the whole field must fit its 1-octet length (RFC 4271 §4.2).
    """
    parameters = []
    current = b""
    for capability in capabilities:
        encoded = capability.encode()
        if current and len(current) + len(encoded) > 255:
            parameters.append(current)
            current = b""
        current += encoded
    if current:
        parameters.append(current)
    field = b"".join(bytes([CAPABILITIES_PARAMETER, len(p)]) + p for p in parameters)
    if len(field) > 255:
        raise InvalidValue("Open", "capabilities", len(field),
                           "must encode in at most 255 octets of Optional Parameters (RFC 4271 §4.2)")
    return field
