"""BGP-4 messages: byte-exact golden vectors, round trips, scapy and tshark agreement, RFC error cases, fuzz.

Every golden vector below was derived by hand from the RFC field layouts
(derivation in the comment above it), not captured from our own encoder, so a
test failure means the encoder or the decoder moved away from the RFC.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubenet_lab.bgp import (
    AFI,
    AS_TRANS,
    BGP_PORT,
    NO_EXPORT,
    SAFI,
    Aggregator,
    Approach,
    ASPath,
    ASPathSegment,
    AtomicAggregate,
    BGPMessageError,
    ClusterList,
    Communities,
    Community,
    FourOctetAS,
    Keepalive,
    LocalPref,
    MPReachNLRI,
    MPUnreachNLRI,
    MultiExitDisc,
    MultiprotocolExtensions,
    NextHop,
    Notification,
    Open,
    Origin,
    OriginatorID,
    OriginType,
    RouteRefresh,
    RouteRefreshCapability,
    SegmentType,
    UnknownAttribute,
    UnknownCapability,
    Update,
    decode,
    end_of_rib,
    split_messages,
)
from kubenet_lab.bgp import errors as bgp_errors
from kubenet_lab.bgp.errors import HeaderSubcode, OpenSubcode, UpdateSubcode, error_name
from kubenet_lab.errors import InvalidValue, KubenetLabError

MARKER = "ff" * 16


def hx(*parts: str) -> bytes:
    """Hex pieces (spaces allowed) to bytes, so each vector reads field by field."""
    return bytes.fromhex("".join(parts).replace(" ", ""))


# ------------------------------------------------------------------ golden vectors (RFC field layouts)

# KEEPALIVE (RFC 4271 §4.4): header only. Marker ff*16, Length 19 = 0x0013, Type 4.
KEEPALIVE = hx(MARKER, "0013", "04")

# OPEN (RFC 4271 §4.2) from AS 64512 (0xfc00), Hold Time 90 (0x005a), BGP Identifier
# 192.168.0.11 (c0 a8 00 0b), with capabilities (RFC 5492 §4: code, length, value):
#   01 04 0001 00 01   Multiprotocol Extensions IPv4 unicast (RFC 4760 §8: AFI, Res., SAFI)
#   01 04 0002 00 01   Multiprotocol Extensions IPv6 unicast
#   02 00              Route Refresh (RFC 2918 §2)
#   41 04 0000fc00     4-octet AS 64512 (RFC 6793 §3; 0x41 = 65)
# = 20 octets, in one Optional Parameter: type 02, length 0x14 -> Opt Parm Len 22 = 0x16.
# Body: 1 + 2 + 2 + 4 + 1 + 22 = 32, so Length = 19 + 32 = 51 = 0x0033, Type 1.
OPEN_64512 = hx(MARKER, "0033", "01", "04", "fc00", "005a", "c0a8000b", "16",
                "02 14", "01 04 0001 00 01", "01 04 0002 00 01", "02 00", "41 04 0000fc00")

# The same speaker with AS 4200000000 (0xfa56ea00): My AS is AS_TRANS 23456 = 0x5ba0
# (RFC 6793 §4.2.1), the real AS only in the capability. IPv4 unicast only:
# caps 6 + 2 + 6 = 14, parameter 16 = 0x10, body 26, Length 45 = 0x2d.
OPEN_4200000000 = hx(MARKER, "002d", "01", "04", "5ba0", "005a", "c0a8000b", "10",
                     "02 0e", "01 04 0001 00 01", "02 00", "41 04 fa56ea00")

# UPDATE (RFC 4271 §4.3) announcing 10.244.1.0/24 between 4-octet-AS speakers:
#   Withdrawn Routes Length 0000
#   Total Path Attribute Length 20 = 0x0014:
#     40 01 01 00            ORIGIN (well-known: flags 0x40 = Transitive), length 1, IGP
#     40 02 06 02 01 0000fc00  AS_PATH, length 6: AS_SEQUENCE (2) of 1 AS, 64512 in 4 octets
#     40 03 04 c0a8000c      NEXT_HOP 192.168.0.12
#   NLRI 18 0af401           /24 = 0x18, then only 3 octets of address (RFC 4271 §4.3)
# Body 2 + 2 + 20 + 4 = 28, Length 47 = 0x002f, Type 2.
UPDATE_ANNOUNCE = hx(MARKER, "002f", "02", "0000", "0014",
                     "40 01 01 00", "40 02 06 02 01 0000fc00", "40 03 04 c0a8000c", "18 0af401")

# The same UPDATE to an OLD (2-octet AS) peer: the AS_PATH segment holds fc00 in 2 octets,
# so AS_PATH length 4 and Total Path Attribute Length 18 = 0x12; Length 45 = 0x2d.
UPDATE_ANNOUNCE_2OCTET = hx(MARKER, "002d", "02", "0000", "0012",
                            "40 01 01 00", "40 02 04 02 01 fc00", "40 03 04 c0a8000c", "18 0af401")

# UPDATE withdrawing 10.244.1.0/24: Withdrawn Routes Length 4, the prefix, no attributes,
# no NLRI. Body 2 + 4 + 2 = 8, Length 27 = 0x1b.
UPDATE_WITHDRAW = hx(MARKER, "001b", "02", "0004", "18 0af401", "0000")

# A route reflected by BIRD 2 (datapath.md §2.6, tested): node1's 10.244.1.0/26 as node2
# receives it over iBGP - empty AS_PATH (RFC 4271 §5.1.2: iBGP originators send it empty),
# NEXT_HOP 192.0.2.2, LOCAL_PREF 100, ORIGINATOR_ID 192.0.2.2, CLUSTER_LIST [192.0.2.1]:
#   40 01 01 00 | 40 02 00 | 40 03 04 c0000202 | 40 05 04 00000064
#   80 09 04 c0000202  ORIGINATOR_ID (optional non-transitive: 0x80), RFC 4456 §8
#   80 0a 04 c0000201  CLUSTER_LIST
# = 4 + 3 + 7 + 7 + 7 + 7 = 35 = 0x23 octets; NLRI 1a 0af40100 (/26 needs 4 octets).
# Body 2 + 2 + 35 + 5 = 44, Length 63 = 0x3f.
UPDATE_REFLECTED = hx(MARKER, "003f", "02", "0000", "0023",
                      "40 01 01 00", "40 02 00", "40 03 04 c0000202", "40 05 04 00000064",
                      "80 09 04 c0000202", "80 0a 04 c0000201", "1a 0af40100")

# An UPDATE with MED, COMMUNITIES (RFC 1997), AGGREGATOR and ATOMIC_AGGREGATE, 4-octet AS:
#   40 01 01 02              ORIGIN INCOMPLETE
#   40 02 10 ...             AS_PATH "65001 64512 {65002}": an AS_SEQUENCE (2) of 2 ASes and an
#                            AS_SET (1) of 1: 02 02 0000fde9 0000fc00 | 01 01 0000fdea = 16 = 0x10 octets
#   40 03 04 c0a80001        NEXT_HOP 192.168.0.1
#   80 04 04 00000032        MULTI_EXIT_DISC 50 (optional: 0x80)
#   40 06 00                 ATOMIC_AGGREGATE (well-known discretionary, empty)
#   c0 07 08 0000fde9 c0a80001  AGGREGATOR AS 65001, 192.168.0.1 (optional transitive: 0xc0)
#   c0 08 08 fc000064 ffffff01  COMMUNITIES 64512:100 and NO_EXPORT (0xFFFFFF01)
# Attributes: 4 + 19 + 7 + 7 + 3 + 11 + 11 = 62 = 0x3e; NLRI 10 0af4 (/16, 2 octets).
# Body 2 + 2 + 62 + 3 = 69, Length 88 = 0x58.
UPDATE_RICH = hx(MARKER, "0058", "02", "0000", "003e",
                 "40 01 01 02", "40 02 10 02 02 0000fde9 0000fc00 01 01 0000fdea",
                 "40 03 04 c0a80001", "80 04 04 00000032", "40 06 00",
                 "c0 07 08 0000fde9 c0a80001", "c0 08 08 fc000064 ffffff01", "10 0af4")

# IPv6 pod CIDR fd00:10:244:1::/64 in MP_REACH_NLRI (RFC 4760 §3), put first (RFC 7606 §5.1),
# next hop global fd00::12 + link-local fe80::1 as BIRD sends on a shared subnet (RFC 2545 §3):
#   80 0e 2e  MP_REACH_NLRI (optional), length 46:
#     0002 01 20  AFI 2, SAFI 1, Length of Next Hop 32
#     fd00..0012 fe80..0001   two 16-octet addresses
#     00          Reserved
#     40 fd000010 02440001   /64 = 0x40, 8 octets
#   40 01 01 00 | 40 02 06 02 01 0000fc00   ORIGIN, AS_PATH (no NEXT_HOP: RFC 4760 §3)
# Attributes 49 + 4 + 9 = 62 = 0x3e; body 66; Length 85 = 0x55.
UPDATE_IPV6 = hx(MARKER, "0055", "02", "0000", "003e",
                 "80 0e 2e 0002 01 20", "fd000000000000000000000000000012", "fe800000000000000000000000000001",
                 "00", "40 fd000010 02440001", "40 01 01 00", "40 02 06 02 01 0000fc00")

# Withdrawing it: MP_UNREACH_NLRI (RFC 4760 §4): 80 0f 0c 0002 01 40 fd000010 02440001.
UPDATE_IPV6_WITHDRAW = hx(MARKER, "0026", "02", "0000", "000f",
                          "80 0f 0c 0002 01 40 fd000010 02440001")

# End-of-RIB (RFC 4724 §2). IPv4 unicast: an UPDATE with both lengths 0, Length 23 = 0x17.
EOR_IPV4 = hx(MARKER, "0017", "02", "0000", "0000")
# IPv6 unicast: only MP_UNREACH_NLRI with AFI 2, SAFI 1 and no prefixes: 80 0f 03 0002 01,
# attributes 6 octets, Length 29 = 0x1d.
EOR_IPV6 = hx(MARKER, "001d", "02", "0000", "0006", "80 0f 03 0002 01")

# NOTIFICATION (RFC 4271 §4.5) Cease (6) / Administrative Shutdown (2, RFC 4486): Length 21 = 0x15.
NOTIFICATION_CEASE = hx(MARKER, "0015", "03", "06", "02")

# ROUTE-REFRESH (RFC 2918 §3) for IPv4 unicast: AFI 0001, Reserved 00, SAFI 01; Length 23.
ROUTE_REFRESH = hx(MARKER, "0017", "05", "0001", "00", "01")

ASPATH_RICH = ASPath((ASPathSegment(SegmentType.AS_SEQUENCE, (65001, 64512)),
                      ASPathSegment(SegmentType.AS_SET, (65002,))))

GOLDEN = [
    ("keepalive", KEEPALIVE, Keepalive(), True),
    ("open 64512", OPEN_64512,
     Open(4, 64512, 90, IPv4Address("192.168.0.11"),
          (MultiprotocolExtensions(AFI.IPV4, SAFI.UNICAST), MultiprotocolExtensions(AFI.IPV6, SAFI.UNICAST),
           RouteRefreshCapability(), FourOctetAS(64512))), True),
    ("open 4200000000", OPEN_4200000000,
     Open(4, AS_TRANS, 90, "192.168.0.11",
          (MultiprotocolExtensions(1, 1), RouteRefreshCapability(), FourOctetAS(4200000000))), True),
    ("update announce", UPDATE_ANNOUNCE,
     Update(attributes=(Origin(OriginType.IGP), ASPath([64512]), NextHop("192.168.0.12")),
            nlri=[IPv4Network("10.244.1.0/24")]), True),
    ("update announce, 2-octet AS", UPDATE_ANNOUNCE_2OCTET,
     Update(attributes=(Origin(OriginType.IGP), ASPath([64512]), NextHop("192.168.0.12")),
            nlri=["10.244.1.0/24"]), False),
    ("update withdraw", UPDATE_WITHDRAW, Update(withdrawn=["10.244.1.0/24"]), True),
    ("update reflected", UPDATE_REFLECTED,
     Update(attributes=(Origin(0), ASPath(()), NextHop("192.0.2.2"), LocalPref(100),
                        OriginatorID("192.0.2.2"), ClusterList(["192.0.2.1"])), nlri=["10.244.1.0/26"]), True),
    ("update rich", UPDATE_RICH,
     Update(attributes=(Origin(OriginType.INCOMPLETE), ASPATH_RICH, NextHop("192.168.0.1"), MultiExitDisc(50),
                        AtomicAggregate(), Aggregator(65001, "192.168.0.1"),
                        Communities([Community("64512:100"), NO_EXPORT])), nlri=["10.244.0.0/16"]), True),
    ("update ipv6", UPDATE_IPV6,
     Update(attributes=(MPReachNLRI(AFI.IPV6, SAFI.UNICAST, ("fd00::12", "fe80::1"), ["fd00:10:244:1::/64"]),
                        Origin(0), ASPath([64512]))), True),
    ("update ipv6 withdraw", UPDATE_IPV6_WITHDRAW,
     Update(attributes=(MPUnreachNLRI(AFI.IPV6, SAFI.UNICAST, ["fd00:10:244:1::/64"]),)), True),
    ("end-of-rib ipv4", EOR_IPV4, end_of_rib(), True),
    ("end-of-rib ipv6", EOR_IPV6, end_of_rib(AFI.IPV6, SAFI.UNICAST), True),
    ("notification cease", NOTIFICATION_CEASE, Notification(6, 2), True),
    ("route refresh", ROUTE_REFRESH, RouteRefresh(AFI.IPV4, SAFI.UNICAST), True),
]


@pytest.mark.parametrize("name, wire, message, four_octet_as", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_vector_encodes_and_decodes(name, wire, message, four_octet_as):
    encoded = message.encode(four_octet_as=four_octet_as) if isinstance(message, Update) else message.encode()
    assert encoded.hex() == wire.hex()
    assert decode(wire, four_octet_as=four_octet_as) == message


def test_open_for_speaker_builds_the_golden_opens():
    families = ((AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST))
    assert Open.for_speaker(64512, "192.168.0.11", families=families).encode() == OPEN_64512
    big = Open.for_speaker(4200000000, "192.168.0.11")
    assert big.encode() == OPEN_4200000000
    assert (big.my_as, big.asn, big.four_octet_as, big.route_refresh, big.families) == (
        AS_TRANS, 4200000000, True, True, ((AFI.IPV4, SAFI.UNICAST),))


def test_four_octet_as_towards_an_old_peer_uses_as_trans_and_as4_path():
    # AS_PATH "64512 4200000000" to a 2-octet peer (RFC 6793 §4.2.2):
    #   40 02 06 02 02 fc00 5ba0           AS_PATH with AS_TRANS for the big AS
    #   c0 11 0a 02 02 0000fc00 fa56ea00   AS4_PATH (17, optional transitive) with the real path
    # and AGGREGATOR AS 4200000000 -> c0 07 06 5ba0 c0a80001 + AS4_AGGREGATOR c0 12 08 fa56ea00 c0a80001.
    # AS4_* go after the last lower type code (AGGREGATOR, 7), keeping the list ascending.
    update = Update(attributes=(Origin(0), ASPath("64512 4200000000"), NextHop("192.168.0.1"),
                                Aggregator(4200000000, "192.168.0.1")), nlri=["10.244.0.0/16"])
    attributes = hx("40 01 01 00", "40 02 06 02 02 fc00 5ba0", "40 03 04 c0a80001", "c0 07 06 5ba0 c0a80001",
                    "c0 11 0a 02 02 0000fc00 fa56ea00", "c0 12 08 fa56ea00 c0a80001")
    wire = update.encode(four_octet_as=False)
    assert wire[23:23 + len(attributes)] == attributes and wire[21:23] == len(attributes).to_bytes(2, "big")
    assert decode(wire, four_octet_as=False) == update          # RFC 6793 §4.2.3 merges them back
    # From a NEW speaker the AS4 attributes are not expected: discarded and reported (RFC 6793 §4.1).
    seen_as_new = decode(wire, four_octet_as=True)
    assert {m.type_code for m in seen_as_new.malformed} >= {17, 18}
    assert all(m.approach is Approach.ATTRIBUTE_DISCARD for m in seen_as_new.malformed if m.type_code in (17, 18))


def test_as4_path_reconstruction_when_an_old_speaker_prepended():
    # RFC 6793 §4.2.3: an OLD speaker (AS 65010) prepended to AS_PATH only, so AS_PATH has 3 ASes
    # and AS4_PATH 2: take the one leading AS from AS_PATH, then AS4_PATH.
    attributes = hx("40 01 01 00", "40 02 08 02 03 fdf2 5ba0 fc00", "40 03 04 c0a80001",
                    "c0 11 0a 02 02 fa56ea00 0000fc00")
    body = hx("0000", len(attributes).to_bytes(2, "big").hex()) + attributes + hx("10 0af4")
    update = decode(hx(MARKER, (19 + len(body)).to_bytes(2, "big").hex(), "02") + body, four_octet_as=False)
    assert update.attribute(ASPath) == ASPath("65010 4200000000 64512")
    assert not update.malformed


def test_extended_length_is_used_above_255_octets():
    # 70 ASes in 4 octets = 282 octets of AS_PATH value: flags 0x50 (Transitive + Extended Length),
    # a 2-octet length 0x011a (RFC 4271 §4.3).
    path = ASPath(list(range(65001, 65071)))
    assert path.encode()[:4] == hx("50 02 011a")
    update = Update(attributes=(Origin(0), path, NextHop("10.0.0.1")), nlri=["10.0.0.0/8"])
    assert decode(update.encode()) == update


def test_long_as_sequence_splits_into_255_as_segments():
    path = ASPath(list(range(1, 301)))
    assert [len(s.asns) for s in path.segments] == [255, 45] and path.length == 300
    # RFC 4271 §5.1.2 b: the leading AS_SEQUENCE is full, so the prepended AS opens a new one.
    assert [len(s.asns) for s in path.prepend(7).segments] == [1, 255, 45] and path.prepend(7).length == 301
    assert ASPath(list(range(1, 11))).prepend(7).segments[0].asns[:2] == (7, 1)


def test_as_path_text_notation_and_length():
    path = ASPath("(65100 65101) 65001 {65010,65011} [65200]")
    assert [s.segment_type for s in path.segments] == [SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_SEQUENCE,
                                                       SegmentType.AS_SET, SegmentType.AS_CONFED_SET]
    assert path.length == 2          # 65001 + the AS_SET; confederation segments count 0 (RFC 5065 §5.3)
    assert str(path) == "(65100 65101) 65001 {65010,65011} [65200]" and eval(repr(path)) == path
    assert ASPath("{65010,65011}").prepend(65001) == ASPath("65001 {65010,65011}")
    with pytest.raises(InvalidValue, match="must close"):
        ASPath("65001 {65002")


def test_prefix_encoding_uses_minimal_octets_and_ignores_trailing_bits():
    # RFC 4271 §4.3: /0 is just the length octet; /25 needs 4 octets; host bits in the
    # trailing octet are "irrelevant".
    update = Update(nlri=["0.0.0.0/0", "10.244.1.128/25", "10.0.0.0/8"],
                    attributes=(Origin(0), ASPath(()), NextHop("10.0.0.1")))
    assert update.encode().endswith(hx("00", "19 0af40180", "08 0a"))
    sloppy = hx(MARKER, "001b", "02", "0000", "0000", "14 0af4ff")   # /20 with host bits set
    assert decode(sloppy, four_octet_as=True).nlri == (IPv4Network("10.244.240.0/20"),)


def test_end_of_rib_is_recognised():
    assert decode(EOR_IPV4).end_of_rib == (AFI.IPV4, SAFI.UNICAST)
    assert decode(EOR_IPV6).end_of_rib == (AFI.IPV6, SAFI.UNICAST)
    assert decode(UPDATE_WITHDRAW).end_of_rib is None and decode(UPDATE_IPV6_WITHDRAW).end_of_rib is None


def test_feasible_and_unfeasible_routes():
    assert decode(UPDATE_IPV6).feasible_routes == (IPv6Network("fd00:10:244:1::/64"),)
    assert decode(UPDATE_IPV6_WITHDRAW).unfeasible_routes == (IPv6Network("fd00:10:244:1::/64"),)
    assert decode(UPDATE_WITHDRAW).unfeasible_routes == (IPv4Network("10.244.1.0/24"),)


def test_unknown_capabilities_and_attributes_are_kept_verbatim():
    # Graceful Restart (64) as BIRD sends it: restart time 120 s = 0x0078, no families.
    gr = UnknownCapability(64, hx("0078"))
    assert gr.name == "Graceful Restart" and gr.encode() == hx("40 02 0078")
    o = Open(4, 64512, 90, "10.0.0.1", (gr, FourOctetAS(64512)))
    assert decode(o.encode()) == o
    # LARGE_COMMUNITY (32, RFC 8092) is optional transitive: kept with its flags; the
    # lower four flag bits are ignored on receipt (RFC 4271 §4.3).
    large = hx("c0 20 0c", "0000fc00 00000001 00000002")
    attrs = hx("40 01 01 00", "40 02 00", "40 03 04 0a000001") + large
    wire = hx(MARKER, (19 + 4 + len(attrs) + 2).to_bytes(2, "big").hex(), "02", "0000",
              len(attrs).to_bytes(2, "big").hex()) + attrs + hx("08 0a")
    update = decode(wire)
    assert update.attribute(UnknownAttribute) == UnknownAttribute(0xC0, 32, hx("0000fc00 00000001 00000002"))
    assert update.encode() == wire


def test_split_messages_frames_a_tcp_stream():
    stream = OPEN_64512 + KEEPALIVE + UPDATE_ANNOUNCE + EOR_IPV4
    for cut in range(len(stream) + 1):
        frames, rest = split_messages(stream[:cut])
        assert b"".join(frames) + rest == stream[:cut]
        assert all(decode(f) is not None for f in frames)
    assert split_messages(stream) == ([OPEN_64512, KEEPALIVE, UPDATE_ANNOUNCE, EOR_IPV4], b"")
    assert split_messages(b"") == ([], b"")
    # A broken marker is seen as soon as its first wrong octet arrives (RFC 4271 §6.1).
    with pytest.raises(BGPMessageError) as err:
        split_messages(KEEPALIVE + b"\xff\xfe")
    assert (err.value.code, err.value.subcode) == (1, 1)
    with pytest.raises(BGPMessageError) as err:
        split_messages(hx(MARKER, "1001"))           # Length 4097
    assert (err.value.code, err.value.subcode, err.value.data) == (1, 2, hx("1001"))


# ------------------------------------------------------------------ RFC 4271 §6 errors (session reset)

def header(length: int, kind: int) -> bytes:
    return hx(MARKER) + length.to_bytes(2, "big") + bytes([kind])


def update_with(attributes: bytes, nlri: bytes = hx("18 0af401"), withdrawn: bytes = b"") -> bytes:
    body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(attributes).to_bytes(2, "big") + attributes + nlri
    return header(19 + len(body), 2) + body


GOOD_ATTRIBUTES = hx("40 01 01 00", "40 02 06 02 01 0000fc00", "40 03 04 c0a8000c")

SESSION_RESETS = [
    # (name, bytes, code, subcode, data) - Data fields per RFC 4271 §6.1-§6.3.
    ("bad marker", hx("ff" * 15, "fe", "0013", "04"), 1, HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED, b""),
    ("length below 19", hx(MARKER, "0012", "04"), 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("0012")),
    ("length above 4096", hx(MARKER, "1001", "04") + bytes(4078), 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("1001")),
    ("keepalive not 19", header(20, 4) + b"\x00", 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("0014")),
    ("open too short", header(28, 1) + bytes(9), 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("001c")),
    ("update too short", header(22, 2) + bytes(3), 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("0016")),
    ("notification too short", header(20, 3) + b"\x06", 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("0014")),
    ("route-refresh too long", header(24, 5) + hx("0001 00 01 00"), 1, HeaderSubcode.BAD_MESSAGE_LENGTH, hx("0018")),
    ("bad type", header(19, 6), 1, HeaderSubcode.BAD_MESSAGE_TYPE, hx("06")),
    ("type 0", header(19, 0), 1, HeaderSubcode.BAD_MESSAGE_TYPE, hx("00")),
    # OPEN (RFC 4271 §6.2); Unsupported Version's data is the version we support, 2 octets.
    ("open version 3", header(29, 1) + hx("03 fc00 005a c0a8000b 00"), 2,
     OpenSubcode.UNSUPPORTED_VERSION_NUMBER, hx("0004")),
    ("open AS 0", header(29, 1) + hx("04 0000 005a c0a8000b 00"), 2, OpenSubcode.BAD_PEER_AS, b""),
    ("open 4-octet AS 0", header(37, 1) + hx("04 5ba0 005a c0a8000b 08 02 06 41 04 00000000"), 2,
     OpenSubcode.BAD_PEER_AS, b""),
    ("open hold 1", header(29, 1) + hx("04 fc00 0001 c0a8000b 00"), 2, OpenSubcode.UNACCEPTABLE_HOLD_TIME, b""),
    ("open hold 2", header(29, 1) + hx("04 fc00 0002 c0a8000b 00"), 2, OpenSubcode.UNACCEPTABLE_HOLD_TIME, b""),
    ("open identifier 0.0.0.0", header(29, 1) + hx("04 fc00 005a 00000000 00"), 2,
     OpenSubcode.BAD_BGP_IDENTIFIER, b""),
    ("open parameter type 1", header(33, 1) + hx("04 fc00 005a c0a8000b 04 01 02 0000"), 2,
     OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER, b""),
    # RFC 9072 §2: Non-Ext OP Len ff, Non-Ext OP Type ff, Extended Opt. Parm. Length 0009,
    # then a capabilities parameter with a 2-octet length: 02 0006 41 04 0000fc00.
    ("open RFC 9072 extended parameters", header(41, 1) + hx("04 fc00 005a c0a8000b ff ff 0009 02 0006 4104 0000fc00"), 2,
     OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER, b""),
    ("open capability overrun", header(33, 1) + hx("04 fc00 005a c0a8000b 04 02 02 4104"), 2, 0, b""),
    ("open 4-octet AS capability of 2 octets", header(35, 1) + hx("04 fc00 005a c0a8000b 06 02 04 4102 fc00"),
     2, 0, b""),
    ("open Opt Parm Len too long", header(30, 1) + hx("04 fc00 005a c0a8000b 02 02"), 2, 0, b""),
    # UPDATE (RFC 4271 §6.3, RFC 7606 §3 b, §3 g, §5.3).
    ("withdrawn length overruns", header(23, 2) + hx("0005 0000"), 3, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, b""),
    ("attribute length overruns", header(23, 2) + hx("0000 0001"), 3, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, b""),
    ("NLRI /33", update_with(GOOD_ATTRIBUTES, hx("21 0af40100 00")), 3, UpdateSubcode.INVALID_NETWORK_FIELD, b""),
    ("NLRI truncated", update_with(GOOD_ATTRIBUTES, hx("18 0af4")), 3, UpdateSubcode.INVALID_NETWORK_FIELD, b""),
    ("withdrawn /40", update_with(b"", b"", hx("28 0a000000 00")), 3, UpdateSubcode.INVALID_NETWORK_FIELD, b""),
    ("unrecognized well-known", update_with(GOOD_ATTRIBUTES + hx("40 63 00")), 3,
     UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, hx("40 63 00")),
    ("two MP_UNREACH_NLRI", update_with(hx("80 0f 03 0002 01", "80 0f 03 0002 01"), b""), 3,
     UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, hx("80 0f 03 0002 01")),
    ("MP_REACH next hop length 5", update_with(hx("80 0e 0a 0002 01 05 0000000000 00") + GOOD_ATTRIBUTES[:13], b""),
     3, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, hx("80 0e 0a 0002 01 05 0000000000 00")),
    ("MP_REACH too short", update_with(hx("80 0e 04 0002 01 10") + GOOD_ATTRIBUTES[:13], b""), 3,
     UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, hx("80 0e 04 0002 01 10")),
    ("MP_REACH prefix /129", update_with(hx("80 0e 16 0002 01 10 fd000000000000000000000000000012 00 81")
                                         + GOOD_ATTRIBUTES[:13], b""), 3, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
     hx("80 0e 16 0002 01 10 fd000000000000000000000000000012 00 81")),
    ("MP_UNREACH flagged transitive", update_with(hx("c0 0f 03 0002 01"), b""), 3,
     UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, hx("c0 0f 03 0002 01")),
    # RFC 7606 §5.2: attributes but no reachable NLRI, so treat-as-withdraw becomes session reset.
    ("no NLRI and a bad ORIGIN", update_with(hx("40 01 01 05"), b""), 3, UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE,
     hx("40 01 01 05")),
    # ROUTE-REFRESH with Enhanced Route Refresh subtype 1 and a wrong length (RFC 7313 §5).
    ("BoRR too long", header(24, 5) + hx("0001 01 01 00"), 7, 1, header(24, 5) + hx("0001 01 01 00")),
]


@pytest.mark.parametrize("name, wire, code, subcode, data", SESSION_RESETS, ids=[c[0] for c in SESSION_RESETS])
def test_session_reset_errors_carry_the_notification(name, wire, code, subcode, data):
    with pytest.raises(BGPMessageError) as err:
        decode(wire)
    assert (err.value.code, err.value.subcode, err.value.data) == (code, subcode, data)
    assert err.value.approach is Approach.SESSION_RESET
    assert err.value.notification() == Notification(code, subcode, data)
    assert f"[NOTIFICATION {code}/{subcode} {error_name(code, subcode)}]" in str(err.value)
    assert isinstance(err.value, InvalidValue) and isinstance(err.value, ValueError)


# ------------------------------------------------------------------ RFC 7606 revised handling (reported)

def reports(wire: bytes, four_octet_as: bool = True) -> list[tuple[int, Approach, int]]:
    return [(m.type_code, m.approach, m.subcode) for m in decode(wire, four_octet_as=four_octet_as).malformed]


TAW, DISCARD = Approach.TREAT_AS_WITHDRAW, Approach.ATTRIBUTE_DISCARD
ORIGIN, ASP, NH = hx("40 01 01 00"), hx("40 02 06 02 01 0000fc00"), hx("40 03 04 c0a8000c")

REVISED = [
    # (name, attributes, expected reports) - all with NLRI 10.244.1.0/24.
    ("ORIGIN length 2 (§7.1)", hx("40 01 02 0000") + ASP + NH, [(1, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("ORIGIN value 3 (§7.1)", hx("40 01 01 03") + ASP + NH, [(1, TAW, UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE)]),
    ("AS_PATH unknown segment type (§7.2)", ORIGIN + hx("40 02 06 05 01 0000fc00") + NH,
     [(2, TAW, UpdateSubcode.MALFORMED_AS_PATH)]),
    ("AS_PATH segment overrun (§7.2)", ORIGIN + hx("40 02 06 02 02 0000fc00") + NH,
     [(2, TAW, UpdateSubcode.MALFORMED_AS_PATH)]),
    ("AS_PATH one-octet underrun (§7.2)", ORIGIN + hx("40 02 07 02 01 0000fc00 02") + NH,
     [(2, TAW, UpdateSubcode.MALFORMED_AS_PATH)]),
    ("AS_PATH zero-length segment (§7.2)", ORIGIN + hx("40 02 02 02 00") + NH,
     [(2, TAW, UpdateSubcode.MALFORMED_AS_PATH)]),
    ("AS_PATH with AS 0 (RFC 7607)", ORIGIN + hx("40 02 06 02 01 00000000") + NH,
     [(2, TAW, UpdateSubcode.MALFORMED_AS_PATH)]),
    ("NEXT_HOP length 5 (§7.3)", ORIGIN + ASP + hx("40 03 05 c0a8000c00"),
     [(3, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("NEXT_HOP 0.0.0.0 (RFC 4271 §6.3)", ORIGIN + ASP + hx("40 03 04 00000000"),
     [(3, TAW, UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE)]),
    ("NEXT_HOP multicast", ORIGIN + ASP + hx("40 03 04 e0000001"), [(3, TAW, UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE)]),
    ("MED length 3 (§7.4)", ORIGIN + ASP + NH + hx("80 04 03 000000"), [(4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("LOCAL_PREF length 0 (§7.5)", ORIGIN + ASP + NH + hx("40 05 00"), [(5, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("ATOMIC_AGGREGATE length 1 (§7.6)", ORIGIN + ASP + NH + hx("40 06 01 00"),
     [(6, DISCARD, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("AGGREGATOR length 6 between 4-octet speakers (§7.7)", ORIGIN + ASP + NH + hx("c0 07 06 fc00 c0a80001"),
     [(7, DISCARD, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("AGGREGATOR AS 0 (RFC 7607)", ORIGIN + ASP + NH + hx("c0 07 08 00000000 c0a80001"),
     [(7, DISCARD, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("COMMUNITIES length 6 (§7.8)", ORIGIN + ASP + NH + hx("c0 08 06 fc000064 ffff"),
     [(8, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("COMMUNITIES empty (§7.8)", ORIGIN + ASP + NH + hx("c0 08 00"), [(8, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("ORIGINATOR_ID length 3 (§7.9)", ORIGIN + ASP + NH + hx("80 09 03 c0a800"),
     [(9, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("CLUSTER_LIST length 5 (§7.10)", ORIGIN + ASP + NH + hx("80 0a 05 c0a8000100"),
     [(10, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("ORIGIN flagged optional (§3 c)", hx("c0 01 01 00") + ASP + NH, [(1, TAW, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR)]),
    ("well-known with Partial set (RFC 4271 §4.3)", hx("60 01 01 00") + ASP + NH,
     [(1, TAW, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR)]),
    ("MED flagged transitive (§3 c)", ORIGIN + ASP + NH + hx("c0 04 04 00000000"),
     [(4, TAW, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR)]),
    ("AGGREGATOR flagged well-known: discard", ORIGIN + ASP + NH + hx("40 07 08 0000fc00 c0a80001"),
     [(7, DISCARD, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR)]),
    ("missing ORIGIN (§3 d)", ASP + NH, [(1, TAW, UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE)]),
    ("missing AS_PATH and NEXT_HOP (§3 d)", ORIGIN,
     [(2, TAW, UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE), (3, TAW, UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE)]),
    ("second ORIGIN discarded (§3 g)", ORIGIN + ASP + NH + hx("40 01 01 02"),
     [(1, DISCARD, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST)]),
    ("attribute header cut short (§4)", ORIGIN + ASP + NH + hx("c0 08"),
     [(8, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("last attribute overruns (§4)", ORIGIN + ASP + NH + hx("c0 08 08 fc000064"),
     [(8, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
    ("MP_REACH for an unimplemented family is ignored", ORIGIN + ASP + NH + hx("80 0e 05 0019 46 00 00"),
     [(14, DISCARD, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("two errors: strongest approach wins (§3 h)", hx("40 01 01 09") + ASP + NH + hx("40 06 01 00"),
     [(1, TAW, UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE), (6, DISCARD, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]),
]


@pytest.mark.parametrize("name, attributes, expected", REVISED, ids=[c[0] for c in REVISED])
def test_rfc7606_revised_error_handling(name, attributes, expected):
    update = decode(update_with(attributes))
    assert reports(update_with(attributes)) == expected
    taw = any(approach is TAW for _, approach, _ in expected)
    assert update.treat_as_withdraw is taw
    if taw:
        assert update.feasible_routes == () and update.unfeasible_routes == (IPv4Network("10.244.1.0/24"),)
    else:
        assert update.feasible_routes == (IPv4Network("10.244.1.0/24"),)
    for report in update.malformed:
        assert report.notification().code == 3 and report.data
        assert str(report).startswith(report.approach.value)


def test_malformed_attribute_data_is_the_whole_attribute():
    # RFC 4271 §6.3: "The Data field MUST contain the erroneous attribute (type, length, and value)";
    # for a missing attribute, its type code.
    [bad] = decode(update_with(hx("40 01 01 03") + ASP + NH)).malformed
    assert bad.data == hx("40 01 01 03")
    [missing] = decode(update_with(ASP + NH)).malformed
    assert missing.data == hx("01")


def test_mp_reach_only_update_needs_no_next_hop_but_origin_and_as_path():
    # RFC 4760 §3 / RFC 7606 §3 d: NEXT_HOP is needed only for the NLRI field.
    assert not decode(UPDATE_IPV6).malformed
    mp_only = hx("80 0e 1e 0002 01 10 fd000000000000000000000000000012 00 40 fd000010 02440001")
    assert reports(update_with(mp_only + ORIGIN, b"")) == [(2, TAW, UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE)]


def test_eor_and_withdrawals_need_no_attributes_and_discard_stays_lenient():
    assert not decode(EOR_IPV6).malformed and not decode(UPDATE_WITHDRAW).malformed
    # RFC 7606 §5.2 escalates only errors stronger than attribute discard.
    update = decode(update_with(hx("40 06 01 00"), b""))
    assert [(m.type_code, m.approach) for m in update.malformed] == [(6, DISCARD)]


def test_two_octet_session_aggregator_and_as4_rules():
    # Between OLD speakers AGGREGATOR is 6 octets (RFC 7606 §7.7); 8 is malformed -> discard.
    assert reports(update_with(ORIGIN + hx("40 02 04 02 01 fc00") + NH + hx("c0 07 06 fc00 c0a80001")),
                   four_octet_as=False) == []
    assert reports(update_with(ORIGIN + hx("40 02 04 02 01 fc00") + NH + hx("c0 07 08 0000fc00 c0a80001")),
                   four_octet_as=False) == [(7, DISCARD, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR)]
    # A malformed AS4_PATH from an OLD speaker is discarded and AS_PATH used alone (RFC 6793 §6).
    update = decode(update_with(ORIGIN + hx("40 02 04 02 01 5ba0") + NH + hx("c0 11 05 02 01 0000fc")),
                    four_octet_as=False)
    assert update.attribute(ASPath) == ASPath([AS_TRANS]) and not update.treat_as_withdraw
    assert [(m.type_code, m.approach) for m in update.malformed] == [(17, DISCARD)]
    # Confederation segments in AS4_PATH are dropped, the rest is used (RFC 6793 §6).
    update = decode(update_with(ORIGIN + hx("40 02 04 02 01 5ba0") + NH
                                + hx("c0 11 0c 03 01 0000fc01 02 01 fa56ea00")), four_octet_as=False)
    assert update.attribute(ASPath) == ASPath([4200000000])
    # AGGREGATOR not AS_TRANS: AS4_AGGREGATOR and AS4_PATH are ignored (RFC 6793 §4.2.3).
    update = decode(update_with(ORIGIN + hx("40 02 04 02 01 5ba0") + NH + hx("c0 07 06 fde9 c0a80001")
                                + hx("c0 11 06 02 01 fa56ea00", "c0 12 08 fa56ea00 c0a80001")), four_octet_as=False)
    assert update.attribute(ASPath) == ASPath([AS_TRANS]) and update.attribute(Aggregator).asn == 65001


def test_notification_decoding_accepts_any_code():
    # RFC 4271 §6.4: a bad NOTIFICATION can only be logged, so decoding never fails on codes.
    weird = decode(header(24, 3) + hx("2a 07 010203"))
    assert weird == Notification(42, 7, hx("010203")) and str(weird) == "NOTIFICATION 42/7 Error Code 42 / Subcode 7"
    assert str(decode(NOTIFICATION_CEASE)) == "NOTIFICATION 6/2 Cease / Administrative Shutdown"


def test_route_refresh_subtypes():
    # RFC 7313 §3.2: the Reserved octet became Message Subtype (1 = BoRR, 2 = EoRR).
    assert decode(header(23, 5) + hx("0002 02 01")) == RouteRefresh(AFI.IPV6, SAFI.UNICAST, 2)


def test_constructors_reject_what_cannot_be_encoded():
    with pytest.raises(InvalidValue, match="my_as"):
        Open(4, 4200000000, 90, "10.0.0.1")               # 2-octet field: use Open.for_speaker
    with pytest.raises(InvalidValue, match="IPv4"):
        Update(nlri=["fd00::/64"])                        # IPv6 goes in MP_REACH_NLRI
    with pytest.raises(InvalidValue, match="repeat"):
        Update(attributes=(Origin(0), Origin(1)))
    with pytest.raises(InvalidValue, match="link-local"):
        MPReachNLRI(AFI.IPV6, SAFI.UNICAST, "10.0.0.1", ["fd00::/64"])
    with pytest.raises(InvalidValue, match="own class"):
        UnknownAttribute(0xC0, 8, b"")
    with pytest.raises(InvalidValue, match="Optional"):
        UnknownAttribute(0x40, 99, b"")
    with pytest.raises(InvalidValue, match="4096"):
        Update(withdrawn=[IPv4Network((i << 8, 24)) for i in range(1100)]).encode()
    with pytest.raises(InvalidValue):
        Communities([])
    with pytest.raises(InvalidValue, match="AS:value"):
        Community("64512:70000")
    with pytest.raises(InvalidValue, match="hold_time"):
        Open.for_speaker(64512, "10.0.0.1", hold_time=2)
    with pytest.raises(InvalidValue):
        decode("not bytes")


def test_error_names_follow_the_rfcs():
    assert error_name(1, 1) == "Message Header Error / Connection Not Synchronized"
    assert error_name(2, 7) == "OPEN Message Error / Unsupported Capability"
    assert error_name(3, 2) == "UPDATE Message Error / Unrecognized Well-known Attribute"
    assert error_name(4, 0) == "Hold Timer Expired / Unspecific"
    assert error_name(5, 3) == "Finite State Machine Error / Receive Unexpected Message in Established State"
    assert error_name(6, 7) == "Cease / Connection Collision Resolution"
    assert error_name(7, 1) == "ROUTE-REFRESH Message Error / Invalid Message Length"
    assert error_name(3, 7) == "UPDATE Message Error / Subcode 7"     # AS Routing Loop, deprecated


def test_public_names_exist():
    import kubenet_lab.bgp as bgp
    from kubenet_lab.bgp import attribute_decoder, attributes, capabilities, decision, messages, negotiation, wire

    for module in (bgp, attributes, attribute_decoder, capabilities, decision, messages, negotiation, wire,
                   bgp_errors):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_import_of_kubenet_lab_bgp_stays_light():
    code = "import sys, kubenet_lab.bgp; print('scapy' in sys.modules)"
    assert subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


# ------------------------------------------------------------------ scapy agrees

@pytest.fixture(scope="module")
def scapy_bgp():
    """scapy.contrib.bgp with 4-octet AS parsing and without its import-time warning.

    conf.contribs["bgp"] is set as newer scapy reads it; scapy 2.8.0 ignores it and
    logs "use_2_bytes_asn: True" on import, so the log is silenced for the import and
    the module switch is set by hand (and restored afterwards).
    """
    from scapy.config import conf

    conf.contribs["bgp"] = {"use_2_bytes_asn": False}
    logger = logging.getLogger("scapy.runtime")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from scapy.contrib import bgp
    finally:
        logger.setLevel(level)
    previous = bgp.bgp_module_conf.use_2_bytes_asn
    bgp.bgp_module_conf.use_2_bytes_asn = False
    yield bgp
    bgp.bgp_module_conf.use_2_bytes_asn = previous


def scapy_capabilities(sb, open_layer) -> list:
    """All capabilities: scapy decodes only the first of each Optional Parameter and leaves
    the rest as Raw (datapath.md §1.7 pitfall 2), so the Raw tail is fed back to scapy's own
    BGPCapability dispatcher."""
    caps = []
    for parameter in open_layer.opt_params:
        data = bytes(parameter.param_value)
        while data:
            cap = sb.BGPCapability(data)
            caps.append(cap)
            data = data[2 + cap.length:]
    return caps


def test_scapy_dissects_the_golden_open(scapy_bgp):
    sb = scapy_bgp
    packet = sb.BGPHeader(OPEN_64512)
    layer = packet[sb.BGPOpen]
    assert (packet.len, packet.type) == (51, 1)
    assert (layer.version, layer.my_as, layer.hold_time, layer.bgp_id, layer.opt_param_len) == (
        4, 64512, 90, "192.168.0.11", 22)
    caps = scapy_capabilities(sb, layer)
    assert [c.code for c in caps] == [1, 1, 2, 65]
    assert [(c.afi, c.safi) for c in caps if c.code == 1] == [(1, 1), (2, 1)]
    assert caps[3].asn == 64512
    big = sb.BGPHeader(OPEN_4200000000)[sb.BGPOpen]
    assert big.my_as == AS_TRANS and scapy_capabilities(sb, big)[-1].asn == 4200000000


def test_scapy_dissects_the_golden_updates(scapy_bgp):
    sb = scapy_bgp
    update = sb.BGPHeader(UPDATE_ANNOUNCE)[sb.BGPUpdate]
    attrs = {a.type_code: a.attribute for a in update.path_attr}
    assert attrs[1].origin == 0 and attrs[3].next_hop == "192.168.0.12"
    assert [(s.segment_type, s.segment_value) for s in attrs[2].segments] == [(2, [64512])]
    assert [n.prefix for n in update.nlri] == ["10.244.1.0/24"]

    rich = sb.BGPHeader(UPDATE_RICH)[sb.BGPUpdate]
    attrs = {a.type_code: a for a in rich.path_attr}
    assert attrs[1].attribute.origin == 2
    assert [(s.segment_type, s.segment_value) for s in attrs[2].attribute.segments] == [
        (2, [65001, 64512]), (1, [65002])]
    assert attrs[4].attribute.med == 50 and attrs[6].attr_len == 0
    # scapy 2.8.0 reads AGGREGATOR with a 2-octet AS even with use_2_bytes_asn=False (a quirk
    # not in datapath.md): dissect the value with its 4-octet layout class instead.
    aggregator = sb.BGPPAAS4Aggregator(bytes(attrs[7].attribute))
    assert (aggregator.aggregator_asn, aggregator.speaker_address) == (65001, "192.168.0.1")
    # COMMUNITIES: scapy decodes only the first community (pitfall 3); walk the value.
    value = bytes(attrs[8].attribute)
    assert [sb.BGPPACommunity(value[i:i + 4]).community for i in range(0, len(value), 4)] == [
        int(Community("64512:100")), int(NO_EXPORT)]

    reflected = {a.type_code: a.attribute for a in sb.BGPHeader(UPDATE_REFLECTED)[sb.BGPUpdate].path_attr}
    assert reflected[5].local_pref == 100 and reflected[9].originator_id == "192.0.2.2"
    assert reflected[10].cluster_list == [int(IPv4Address("192.0.2.1"))]

    v6 = {a.type_code: a.attribute for a in sb.BGPHeader(UPDATE_IPV6)[sb.BGPUpdate].path_attr}
    assert (v6[14].afi, v6[14].safi, v6[14].nh_addr_len) == (2, 1, 32)
    assert (v6[14].nh_v6_global, v6[14].nh_v6_link_local) == ("fd00::12", "fe80::1")
    assert [n.prefix for n in v6[14].nlri] == ["fd00:10:244:1::/64"]

    withdraw = sb.BGPHeader(UPDATE_WITHDRAW)[sb.BGPUpdate]
    assert [n.prefix for n in withdraw.withdrawn_routes] == ["10.244.1.0/24"] and withdraw.path_attr_len == 0


def test_scapy_dissects_the_other_messages(scapy_bgp):
    sb = scapy_bgp
    assert isinstance(sb.BGPHeader(KEEPALIVE), sb.BGPKeepAlive)
    notification = sb.BGPHeader(NOTIFICATION_CEASE)[sb.BGPNotification]
    assert (notification.error_code, notification.error_subcode) == (6, 2)
    refresh = sb.BGPHeader(ROUTE_REFRESH)[sb.BGPRouteRefresh]
    assert (refresh.afi, refresh.subtype, refresh.safi) == (1, 0, 1)
    eor = sb.BGPHeader(EOR_IPV6)[sb.BGPUpdate]
    assert eor.path_attr[0].type_code == 15 and (eor.path_attr[0].attribute.afi, eor.path_attr[0].attribute.safi) == (2, 1)


def test_scapy_dissects_two_octet_as_path(scapy_bgp):
    sb = scapy_bgp
    sb.bgp_module_conf.use_2_bytes_asn = True
    try:
        attrs = {a.type_code: a.attribute for a in sb.BGPHeader(UPDATE_ANNOUNCE_2OCTET)[sb.BGPUpdate].path_attr}
    finally:
        sb.bgp_module_conf.use_2_bytes_asn = False
    assert [(s.segment_type, s.segment_value) for s in attrs[2].segments] == [(2, [64512])]


def test_scapy_built_update_decodes_here(scapy_bgp):
    # The other direction: scapy builds, we decode.
    sb = scapy_bgp
    built = bytes(sb.BGPHeader(type=2) / sb.BGPUpdate(
        path_attr=[sb.BGPPathAttr(type_flags=0x40, type_code=1, attribute=sb.BGPPAOrigin(origin=0)),
                   sb.BGPPathAttr(type_flags=0x40, type_code=3, attribute=sb.BGPPANextHop(next_hop="192.168.0.12"))],
        nlri=[sb.BGPNLRI_IPv4(prefix="10.244.1.0/24")]))
    update = decode(built)
    assert update.nlri == (IPv4Network("10.244.1.0/24"),) and update.attribute(NextHop).next_hop == IPv4Address(
        "192.168.0.12")
    assert [(m.type_code, m.subcode) for m in update.malformed] == [(2, UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE)]


# ------------------------------------------------------------------ tshark agrees

TSHARK = shutil.which("tshark")


def write_pcap(path, payloads: list[bytes]) -> None:
    """One TCP segment to port 179 per payload, sequence numbers contiguous (no handshake)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    packets, seq = [], 1000
    for payload in payloads:
        packets.append(Ether() / IP(src="192.168.0.11", dst="192.168.0.12")
                       / TCP(sport=40000, dport=BGP_PORT, flags="PA", seq=seq, ack=1) / Raw(payload))
        seq += len(payload)
    wrpcap(str(path), packets)


def tshark_fields(path, *options: str) -> list[list[dict]]:
    """Per packet, per BGP message: every field name -> list of values, in order."""
    out = subprocess.run([TSHARK, "-r", str(path), "-d", f"tcp.port=={BGP_PORT},bgp", *options,
                          "-T", "json", "--no-duplicate-keys"], capture_output=True, text=True, check=True).stdout

    def flatten(node, into, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                flatten(v, into, k)
        elif isinstance(node, list):
            for v in node:
                flatten(v, into, key)
        else:
            into.setdefault(key, []).append(node)

    assert "_ws.malformed" not in out and "_ws.expert" not in out, out
    packets = []
    for packet in json.loads(out):
        layers = packet["_source"]["layers"]
        bgp = layers["bgp"]
        messages = []
        for message in (bgp if isinstance(bgp, list) else [bgp]):
            fields = {}
            flatten(message, fields)
            messages.append(fields)
        packets.append(messages)
    return packets


needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install -y tshark)")


@needs_tshark
def test_tshark_dissects_every_golden_message_the_same(tmp_path):
    four = [g for g in GOLDEN if g[3]]
    write_pcap(tmp_path / "bgp.pcap", [wire for _, wire, _, _ in four])
    packets = tshark_fields(tmp_path / "bgp.pcap")
    assert len(packets) == len(four)
    for (name, wire, message, _), [fields] in zip(four, packets):
        assert fields["bgp.length"] == [str(len(wire))], name
        assert fields["bgp.type"] == [str(int(message.message_type))], name
        assert fields["bgp.marker"] == [":".join(["ff"] * 16)]
        check_tshark_fields(name, message, fields)


def check_tshark_fields(name, message, f):
    if isinstance(message, Open):
        assert (f["bgp.open.version"], f["bgp.open.myas"], f["bgp.open.holdtime"], f["bgp.open.identifier"]) == (
            [str(message.version)], [str(message.my_as)], [str(message.hold_time)], [str(message.bgp_identifier)])
        assert f["bgp.cap.type"] == [str(c.code) for c in message.capabilities]
        assert f["bgp.cap.mp.afi"] == [str(int(afi)) for afi, _ in message.families]
        assert f["bgp.cap.4as"] == [str(message.asn)]
    elif isinstance(message, Notification):
        assert (f["bgp.notify.major_error"], f["bgp.notify.minor_error_cease"]) == (["6"], ["2"])
    elif isinstance(message, RouteRefresh):
        assert (f["bgp.route_refresh.afi"], f["bgp.route_refresh.safi"]) == (["1"], ["1"])
    elif isinstance(message, Update):
        assert f.get("bgp.update.path_attribute.type_code", []) == [str(a.type_code) for a in message.attributes]
        assert f.get("bgp.update.path_attribute.flags", []) == [f"0x{a.encode()[0]:02x}" for a in message.attributes]
        assert f.get("bgp.withdrawn_prefix", []) == [str(p.network_address) for p in message.withdrawn]
        assert f.get("bgp.nlri_prefix", []) == [str(p.network_address) for p in message.nlri]
        assert f["bgp.update.withdrawn_routes.length"] == [str(sum(1 + (p.prefixlen + 7) // 8
                                                                   for p in message.withdrawn))]
        for attribute in message.attributes:
            check_tshark_attribute(attribute, f)


def check_tshark_attribute(a, f):
    p = "bgp.update.path_attribute."
    if isinstance(a, Origin):
        assert f[p + "origin"] == [str(int(a.origin))]
    elif isinstance(a, ASPath):
        assert f.get(p + "as_path_segment.type", []) == [str(int(s.segment_type)) for s in a.segments]
        assert f.get(p + "as_path_segment.as4", []) == [str(asn) for asn in a.asns]
    elif isinstance(a, NextHop):
        assert f[p + "next_hop"] == [str(a.next_hop)]
    elif isinstance(a, MultiExitDisc):
        assert f[p + "multi_exit_disc"] == [str(a.med)]
    elif isinstance(a, LocalPref):
        assert f[p + "local_pref"] == [str(a.local_pref)]
    elif isinstance(a, Aggregator):
        assert (f[p + "aggregator_as"], f[p + "aggregator_origin"]) == ([str(a.asn)], [str(a.address)])
    elif isinstance(a, Communities):
        plain = [c for c in a.communities if c < 0xFFFF0000]
        assert f.get(p + "community_as", []) == [str(c >> 16) for c in plain]
        assert f.get(p + "community_value", []) == [str(c & 0xFFFF) for c in plain]
        assert f.get(p + "community_wellknown", []) == [f"0x{c:08x}" for c in a.communities if c >= 0xFFFF0000]
    elif isinstance(a, OriginatorID):
        assert f[p + "originator_id"] == [str(a.originator_id)]
    elif isinstance(a, ClusterList):
        assert f["bgp.path_attribute.cluster_id"] == [str(c) for c in a.cluster_list]
    elif isinstance(a, MPReachNLRI):
        assert (f[p + "mp_reach_nlri.afi"], f[p + "mp_reach_nlri.safi"]) == ([str(int(a.afi))], [str(int(a.safi))])
        assert f[p + "mp_reach_nlri.next_hop.ipv6"] == [str(a.next_hop[0])]
        assert f[p + "mp_reach_nlri.next_hop.ipv6.link_local"] == [str(a.next_hop[1])]
        assert f["bgp.mp_reach_nlri_ipv6_prefix"] == [str(n.network_address) for n in a.nlri]
        assert f["bgp.prefix_length"][:len(a.nlri)] == [str(n.prefixlen) for n in a.nlri]
    elif isinstance(a, MPUnreachNLRI):
        assert (f[p + "mp_unreach_nlri.afi"], f[p + "mp_unreach_nlri.safi"]) == ([str(int(a.afi))], [str(int(a.safi))])
        assert f.get("bgp.mp_unreach_nlri_ipv6_prefix", []) == [str(n.network_address) for n in a.withdrawn]


@needs_tshark
def test_tshark_reads_several_messages_in_one_segment_and_two_octet_paths(tmp_path):
    # Two UPDATEs and a KEEPALIVE in one TCP segment, as BIRD sends them (datapath.md §1.7).
    write_pcap(tmp_path / "one.pcap", [UPDATE_ANNOUNCE + UPDATE_WITHDRAW + KEEPALIVE])
    [messages] = tshark_fields(tmp_path / "one.pcap")
    frames, rest = split_messages(UPDATE_ANNOUNCE + UPDATE_WITHDRAW + KEEPALIVE)
    assert [m["bgp.type"] for m in messages] == [[str(decode(f).message_type.value)] for f in frames] and rest == b""
    # A 2-octet AS session, with AS4_PATH carrying the real path (RFC 6793 §4.2.2).
    update = Update(attributes=(Origin(0), ASPath("64512 4200000000"), NextHop("192.168.0.1")), nlri=["10.0.0.0/8"])
    write_pcap(tmp_path / "old.pcap", [UPDATE_ANNOUNCE_2OCTET, update.encode(four_octet_as=False)])
    [[plain], [as4]] = tshark_fields(tmp_path / "old.pcap", "-o", "bgp.asn_len:2 octet")
    assert plain["bgp.update.path_attribute.as_path_segment.as2"] == ["64512"]
    assert as4["bgp.update.path_attribute.as_path_segment.as2"] == ["64512", str(AS_TRANS)]
    assert as4["bgp.update.path_attribute.as_path_segment.as4"] == ["64512", "4200000000"]
    assert as4["bgp.update.path_attribute.type_code"] == ["1", "2", "3", "17"]


# ------------------------------------------------------------------ properties and fuzz

asns = st.integers(1, 2**32 - 1)
ipv4 = st.integers(0x01000000, 0xDFFFFFFF).filter(lambda n: n >> 24 != 127).map(IPv4Address)
v4_prefixes = st.builds(lambda n, length: IPv4Network((n, length), strict=False), st.integers(0, 2**32 - 1),
                        st.integers(0, 32))
v6_prefixes = st.builds(lambda n, length: IPv6Network((n, length), strict=False), st.integers(0, 2**128 - 1),
                        st.integers(0, 128))
segments = st.builds(ASPathSegment, st.sampled_from([SegmentType.AS_SEQUENCE, SegmentType.AS_SET]),
                     st.lists(asns, min_size=1, max_size=8))
communities = st.lists(st.integers(0, 2**32 - 1).map(Community), min_size=1, max_size=6)


def unique(items):
    return tuple(dict.fromkeys(items))


@st.composite
def updates(draw, four_octet_as=True):
    attributes = [Origin(draw(st.sampled_from(list(OriginType)))),
                  ASPath(tuple(draw(st.lists(segments, max_size=4))))]
    nlri = unique(draw(st.lists(v4_prefixes, max_size=5)))
    if nlri:
        attributes.append(NextHop(draw(ipv4)))
    optional = [
        st.builds(MultiExitDisc, st.integers(0, 2**32 - 1)), st.builds(LocalPref, st.integers(0, 2**32 - 1)),
        st.just(AtomicAggregate()),
        st.builds(Aggregator, asns.filter(lambda n: n != AS_TRANS), ipv4),
        st.builds(Communities, communities), st.builds(OriginatorID, ipv4),
        st.builds(ClusterList, st.lists(ipv4, min_size=1, max_size=4)),
        st.builds(UnknownAttribute, st.sampled_from([0x80, 0xC0, 0xE0]), st.integers(40, 250),
                  st.binary(max_size=20)),
    ]
    for strategy in optional:
        if draw(st.booleans()):
            attributes.append(draw(strategy))
    if draw(st.booleans()):
        hop = draw(st.sampled_from([("fd00::1",), ("fd00::1", "fe80::1")]))
        attributes.insert(0, MPReachNLRI(AFI.IPV6, SAFI.UNICAST, hop, unique(draw(st.lists(v6_prefixes, max_size=3)))))
    elif draw(st.booleans()):
        attributes.insert(0, MPUnreachNLRI(AFI.IPV6, SAFI.UNICAST, unique(draw(st.lists(v6_prefixes, max_size=3)))))
    return Update(unique(draw(st.lists(v4_prefixes, max_size=3))), tuple(attributes), nlri)


@settings(max_examples=200, deadline=None)
@given(updates())
def test_update_round_trip_four_octet(update):
    assert decode(update.encode()) == update


@settings(max_examples=200, deadline=None)
@given(updates())
def test_update_round_trip_two_octet(update):
    # To an OLD peer ASes above 65535 travel as AS_TRANS + AS4_PATH/AS4_AGGREGATOR and come back whole.
    assert decode(update.encode(four_octet_as=False), four_octet_as=False) == update


capabilities = st.one_of(
    st.builds(MultiprotocolExtensions, st.integers(0, 0xFFFF), st.integers(0, 0xFF)),
    st.just(RouteRefreshCapability()), st.builds(FourOctetAS, asns),
    st.builds(UnknownCapability, st.integers(3, 255).filter(lambda c: c != 65), st.binary(max_size=12)))


@settings(max_examples=200, deadline=None)
@given(st.builds(Open, st.just(4), st.integers(1, 0xFFFF), st.sampled_from([0, 3, 9, 90, 180, 65535]),
                 st.integers(1, 2**32 - 1).map(IPv4Address), st.lists(capabilities, max_size=12).map(tuple)))
def test_open_round_trip(message):
    assert decode(message.encode()) == message


# Every (code, subcode) the decoder may put in a NOTIFICATION, and the reports' subcodes.
VALID_ERRORS = ({(1, int(s)) for s in HeaderSubcode} | {(2, 0)} | {(2, int(s)) for s in OpenSubcode}
                | {(3, int(s)) for s in UpdateSubcode} | {(7, 1)})

SEEDS = [wire for _, wire, _, _ in GOLDEN] + [OPEN_64512 + KEEPALIVE, UPDATE_ANNOUNCE_2OCTET] + [
    wire for _, wire, *_ in SESSION_RESETS] + [update_with(a) for _, a, _ in REVISED]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random edits of the kinds a broken peer produces: flips, inserts, deletes,
    truncation, a random Length field, or a random length octet inside the body."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1:
            data.insert(rng.randint(0, len(data)), rng.randrange(256))
        elif op == 2 and data:
            del data[rng.randrange(len(data))]
        elif op == 3:
            del data[rng.randint(0, len(data)):]
        elif op == 4 and len(data) >= 18:
            data[16:18] = rng.choice([len(data), rng.randrange(65536), rng.randint(19, 4096)]).to_bytes(2, "big")
        elif op == 5 and len(data) > 19:
            data[rng.randrange(19, len(data))] = rng.choice([0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 6 and len(data) > 19:
            data[rng.randrange(19, len(data))] = rng.randrange(256)
    return bytes(data)


def check_decoder_contract(data: bytes, four_octet_as: bool) -> None:
    try:
        message = decode(data, four_octet_as=four_octet_as)
    except BGPMessageError as err:
        assert (int(err.code), int(err.subcode)) in VALID_ERRORS, (err.code, err.subcode)
        assert err.notification().encode()       # always sendable
        return
    except KubenetLabError:
        return
    if isinstance(message, Update):
        for report in message.malformed:
            assert (3, int(report.subcode)) in VALID_ERRORS
            assert report.approach in (Approach.TREAT_AS_WITHDRAW, Approach.ATTRIBUTE_DISCARD)
        if message.malformed:
            return
        again = message.encode(four_octet_as=four_octet_as)
    else:
        again = message.encode()
    assert decode(again, four_octet_as=four_octet_as) == message     # decoding canonicalises


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False), st.booleans())
def test_fuzz_mutated_messages_raise_only_kubenet_lab_errors(seed, rng, four_octet_as):
    check_decoder_contract(mutate(seed, rng), four_octet_as)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 4096), st.integers(0, 255), st.booleans())
def test_fuzz_random_bytes_behind_a_valid_marker(body, length, kind, four_octet_as):
    check_decoder_contract(hx(MARKER) + length.to_bytes(2, "big") + bytes([kind]) + body, four_octet_as)
    check_decoder_contract(body, four_octet_as)
    try:
        split_messages(hx(MARKER) + length.to_bytes(2, "big") + bytes([kind]) + body)
    except BGPMessageError as err:
        assert (int(err.code), int(err.subcode)) in VALID_ERRORS
