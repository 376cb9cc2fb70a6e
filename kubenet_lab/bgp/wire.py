"""Constants of the BGP-4 wire format and the NLRI prefix encoding.

Every BGP message starts with the same 19-octet header (RFC 4271 §4.1)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               |
    +                           Marker: 16 octets of 0xff           +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Length               |      Type     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Length counts the header too, so the shortest message (a KEEPALIVE) is 19
octets and no message may exceed 4096. BGP runs over TCP port 179, which is a
byte stream: the Length field is the only thing that tells one message from
the next.

Routes are carried as *prefixes* in a compact form used by the NLRI and
Withdrawn Routes fields and by MP_REACH_NLRI/MP_UNREACH_NLRI (RFC 4271 §4.3,
RFC 4760 §5): one octet of prefix length **in bits**, then only as many
octets of address as that length needs, "the value of trailing bits is
irrelevant".

>>> from ipaddress import ip_network
>>> encode_prefix(ip_network("10.244.1.0/24")).hex()
'180af401'
>>> encode_prefix(ip_network("0.0.0.0/0")).hex()
'00'
>>> decode_prefixes(bytes.fromhex("180af401" "1a0af40140"), AFI.IPV4)
(IPv4Network('10.244.1.0/24'), IPv4Network('10.244.1.64/26'))
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from ..addresses import IPNetwork
from .errors import _Code

__all__ = [
    "BGP_PORT",
    "BGP_VERSION",
    "MARKER",
    "HEADER_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MessageType",
    "MIN_LENGTH",
    "AS_TRANS",
    "MAX_AS",
    "AFI",
    "SAFI",
    "encode_prefix",
    "decode_prefixes",
]

#: "BGP listens on TCP port 179" (RFC 4271 §8.2.1); Wireshark dissects this port as BGP.
BGP_PORT = 179
#: The only version this speaker talks: "the current BGP version number is 4" (RFC 4271 §4.2).
BGP_VERSION = 4
#: "This 16-octet field is included for compatibility; it MUST be set to all ones" (RFC 4271 §4.1).
MARKER = b"\xff" * 16
#: Marker + Length + Type (RFC 4271 §4.1).
HEADER_LENGTH = 19
#: "The value of the Length field MUST always be at least 19 and no greater than 4096" (RFC 4271 §4.1).
MAX_MESSAGE_LENGTH = 4096
#: "AS_TRANS ... the reserved 2-octet AS number 23456" stands in for a 4-octet AS (RFC 6793 §2, §9).
AS_TRANS = 23456
#: Largest 4-octet AS number (RFC 6793 §3).
MAX_AS = 2**32 - 1


class MessageType(_Code):
    """The header's Type code (RFC 4271 §4.1; ROUTE-REFRESH is RFC 2918 §3)."""

    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


#: Shortest legal Length per type (RFC 4271 §4.2-§4.5 and §6.1; RFC 2918 §3).
#: A KEEPALIVE "consists of only the message header"; a ROUTE-REFRESH is always 23.
MIN_LENGTH = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: 19,
    MessageType.ROUTE_REFRESH: 23,
}


class AFI(_Code):
    """Address Family Identifier (IANA "Address Family Numbers", RFC 4760 §3)."""

    IPV4 = 1
    IPV6 = 2


class SAFI(_Code):
    """Subsequent Address Family Identifier (RFC 4760 §6)."""

    UNICAST = 1
    MULTICAST = 2


_BITS = {AFI.IPV4: 32, AFI.IPV6: 128}
_NETWORK = {AFI.IPV4: IPv4Network, AFI.IPV6: IPv6Network}


class _WireError(Exception):
    """Internal: bytes that do not parse. Callers turn it into the BGPMessageError
    their RFC section prescribes; it never leaves the package."""

    def __init__(self, value: object, expected: str):
        super().__init__(value, expected)
        self.value = value
        self.expected = expected


def encode_prefix(prefix: IPNetwork) -> bytes:
    """One prefix as ``length-in-bits`` + the minimal number of address octets (RFC 4271 §4.3)."""
    length = prefix.prefixlen
    return bytes([length]) + prefix.network_address.packed[: (length + 7) // 8]


def decode_prefixes(data: bytes, afi: AFI) -> tuple[IPNetwork, ...]:
    """All prefixes packed in ``data``; trailing host bits are ignored (RFC 4271 §4.3).

    RFC 7606 §5.3 calls the field syntactically incorrect if a length exceeds
    the family's address size (32 or 128 bits) or runs past the end of the
    field; the caller turns that into the NOTIFICATION its section requires.
    """
    bits = _BITS[afi]
    network = _NETWORK[afi]
    width = bits // 8
    prefixes = []
    offset = 0
    while offset < len(data):
        length = data[offset]
        if length > bits:
            raise _WireError(length, f"must be a prefix length of at most {bits} bits")
        size = (length + 7) // 8
        if offset + 1 + size > len(data):
            raise _WireError(data[offset:].hex(), f"must hold the {size} address octets a /{length} needs")
        address = data[offset + 1: offset + 1 + size].ljust(width, b"\x00")
        prefixes.append(network((address, length), strict=False))
        offset += 1 + size
    return tuple(prefixes)

