"""The OPEN exchange: hold time, families, 4-octet AS and the OPEN errors only configuration can raise."""

import pytest

from kubenet_lab.bgp import (
    AFI,
    SAFI,
    BGPMessageError,
    FourOctetAS,
    MultiprotocolExtensions,
    Open,
    RouteRefreshCapability,
    decode,
    negotiate,
)
from kubenet_lab.bgp.errors import OpenSubcode

DUAL_STACK = ((AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST))


def test_hold_time_is_the_smaller_and_keepalive_a_third():
    # RFC 4271 §4.2 and §10; datapath.md §3 lesson 1: FRR's datacenter profile offers 9 s.
    node = Open.for_speaker(64512, "192.0.2.2")
    session = negotiate(node, Open.for_speaker(65001, "192.0.2.1", hold_time=9))
    assert (session.hold_time, session.keepalive_time) == (9, 3)
    assert negotiate(node, Open.for_speaker(65001, "192.0.2.1", hold_time=0)).keepalive_time == 0


def test_families_four_octet_as_and_route_refresh_need_both_sides():
    node = Open.for_speaker(64512, "192.0.2.2", families=DUAL_STACK)
    bird = Open.for_speaker(65001, "192.0.2.1")                     # IPv4 unicast only
    assert negotiate(node, bird).families == ((AFI.IPV4, SAFI.UNICAST),)
    # A peer without 4-octet AS and Route Refresh capabilities and without any MP capability:
    old = Open(4, 65001, 90, "192.0.2.1")
    session = negotiate(node, old)
    assert (session.four_octet_as, session.route_refresh, session.families) == (False, False,
                                                                                ((AFI.IPV4, SAFI.UNICAST),))
    v6_only = Open(4, 65001, 90, "192.0.2.1", (MultiprotocolExtensions(AFI.IPV6, SAFI.UNICAST),))
    assert negotiate(node, v6_only).families == ((AFI.IPV6, SAFI.UNICAST),)


def test_four_octet_peer_as_is_read_from_the_capability():
    # RFC 6793 §4.1: the capability's AS "in lieu of" My AS (which is AS_TRANS here).
    peer = decode(Open.for_speaker(4200000000, "192.0.2.1").encode())
    assert negotiate(Open.for_speaker(64512, "192.0.2.2"), peer, peer_as=4200000000).peer_as == 4200000000


def test_bad_peer_as():
    with pytest.raises(BGPMessageError) as err:
        negotiate(Open.for_speaker(64512, "192.0.2.2"), Open.for_speaker(65001, "192.0.2.1"), peer_as=65002)
    assert (err.value.code, err.value.subcode, err.value.data) == (2, OpenSubcode.BAD_PEER_AS, b"")


def test_bad_bgp_identifier_only_between_internal_peers():
    # RFC 6286 §2.2: the same router ID is an error on an iBGP session, allowed on eBGP.
    node = Open.for_speaker(64512, "192.0.2.2")
    with pytest.raises(BGPMessageError) as err:
        negotiate(node, Open.for_speaker(64512, "192.0.2.2"))
    assert (err.value.code, err.value.subcode) == (2, OpenSubcode.BAD_BGP_IDENTIFIER)
    assert negotiate(node, Open.for_speaker(65001, "192.0.2.2")).peer_as == 65001


def test_unsupported_capability_lists_what_is_missing():
    # MetalLB's native speaker refuses peers without 4-octet AS (datapath.md §2.3). RFC 5492 §5:
    # the Data field lists the capabilities, encoded as in an OPEN.
    old = Open(4, 65001, 90, "192.0.2.1", (MultiprotocolExtensions(AFI.IPV4, SAFI.UNICAST),))
    with pytest.raises(BGPMessageError) as err:
        negotiate(Open.for_speaker(64512, "192.0.2.2"), old,
                  required=(FourOctetAS(64512), RouteRefreshCapability()))
    assert (err.value.code, err.value.subcode) == (2, OpenSubcode.UNSUPPORTED_CAPABILITY)
    assert err.value.data == bytes.fromhex("41 04 0000fc00 02 00")
    assert err.value.notification().encode()[19:] == bytes.fromhex("02 07 4104 0000fc00 0200")
