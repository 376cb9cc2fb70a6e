"""One BGP speaker at a time: RIBs, the iBGP/eBGP export rules, route reflection, policy.

Expected values come from RFC 4271 (§5.1, §9.1, §9.2) and RFC 4456 (§6, §8),
worked out by hand for two to four routers wired with Speaker.add_peer.
"""

from ipaddress import ip_address, ip_network

import pytest

from kubenet_lab.bgp import ASPath, ClusterList, LocalPref, NextHop, OriginatorID, Step, Update, decode
from kubenet_lab.bgp.speaker import Peer, PrefixList, Speaker, check_asn, is_private_asn
from kubenet_lab.errors import AlreadyExists, InvalidValue, NotFound

SEGMENT = [("192.168.0.0/24", "eth0")]


def speaker(name, ip, asn=64512, **options):
    return Speaker(name, ip, asn, interfaces=SEGMENT, **options)


def link(a, b, *, a_reflects=False, b_reflects=False):
    """Configure and establish a session between two speakers (router ID = address)."""
    a.add_peer(Peer(b.name, b.router_id, b.asn, b.router_id, route_reflector_client=a_reflects))
    b.add_peer(Peer(a.name, a.router_id, a.asn, a.router_id, route_reflector_client=b_reflects))
    a.session_up(b.name)
    b.session_up(a.name)


def run(*speakers):
    """Exchange UPDATEs between directly wired speakers until nothing changes; count them."""
    by_name = {s.name: s for s in speakers}
    sent = 0
    while True:
        outgoing = []
        for s in speakers:
            s.decide()
            outgoing += [(s, out) for out in s.outgoing()]
        if not outgoing:
            return sent
        for sender, out in outgoing:
            for name in out.receivers:
                by_name[name].receive(sender.name, out.update)
                sent += 1


P1 = ip_network("10.244.1.0/24")


def test_ibgp_announcement_keeps_next_hop_and_empty_as_path():
    # RFC 4271 §5.1.2: an iBGP speaker originating a route sends an empty AS_PATH;
    # §5.1.3: NEXT_HOP is its own address on the session; LOCAL_PREF is sent inside the AS.
    a, b = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12")
    link(a, b)
    a.originate(P1)
    assert run(a, b) == 1
    path = b.adj_rib_in("a")[P1]
    assert (path.next_hop, path.as_path, path.local_pref, path.ebgp) == (ip_address("192.168.0.11"), ASPath(()),
                                                                         100, False)
    assert b.loc_rib[P1].step is Step.ONLY_PATH
    assert [str(r) for r in b.fib()] == ["10.244.1.0/24 via 192.168.0.11 dev eth0 proto bgp"]
    assert a.fib() == ()        # the originator's own prefix is the kernel's business, not BGP's


def test_ibgp_split_horizon_without_reflector():
    # RFC 4271 §9.2: a route learnt from an iBGP peer is not advertised to other iBGP peers.
    a, b, c = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12"), speaker("c", "192.168.0.13")
    link(a, b)
    link(b, c)
    a.originate(P1)
    assert run(a, b, c) == 1                    # a -> b only
    assert P1 in b.loc_rib and P1 not in c.loc_rib
    assert b.adj_rib_out("c") == {}


def test_route_reflector_adds_originator_id_and_cluster_list():
    # RFC 4456 §8: the reflector sets ORIGINATOR_ID to the originator's router ID and
    # prepends its CLUSTER_ID; NEXT_HOP and LOCAL_PREF pass unchanged (datapath.md §2.6).
    a, rr, c = speaker("a", "192.168.0.11"), speaker("rr", "192.168.0.1"), speaker("c", "192.168.0.13")
    link(rr, a, a_reflects=True)
    link(rr, c, a_reflects=True)
    a.originate(P1)
    assert run(a, rr, c) == 2                   # a -> rr, rr -> c (not back to a)
    update = rr.adj_rib_out_update("c", P1)
    assert update.attribute(OriginatorID).originator_id == ip_address("192.168.0.11")
    assert update.attribute(ClusterList).cluster_list == (ip_address("192.168.0.1"),)
    assert update.attribute(NextHop).next_hop == ip_address("192.168.0.11")
    assert update.attribute(LocalPref).local_pref == 100
    path = c.adj_rib_in("rr")[P1]
    assert (path.originator_id, path.cluster_list) == (ip_address("192.168.0.11"), (ip_address("192.168.0.1"),))
    assert [str(r) for r in c.fib()] == ["10.244.1.0/24 via 192.168.0.11 dev eth0 proto bgp"]
    assert decode(update.encode()) == update    # the simulated UPDATE is a real one


def test_reflection_from_a_non_client_goes_to_clients_only():
    # RFC 4456 §6: from a non-client peer, reflect to clients only.
    n, m = speaker("n", "192.168.0.21"), speaker("m", "192.168.0.22")
    rr, c = speaker("rr", "192.168.0.1"), speaker("c", "192.168.0.13")
    link(rr, n)
    link(rr, m)
    link(rr, c, a_reflects=True)
    n.originate(P1)
    run(n, m, rr, c)
    assert P1 in c.loc_rib and P1 not in m.loc_rib


def test_originator_and_cluster_loops_are_dropped():
    # RFC 4456 §8: a router ignores a route carrying its own ORIGINATOR_ID; a reflector
    # ignores a route whose CLUSTER_LIST holds its CLUSTER_ID.
    a, rr = speaker("a", "192.168.0.11"), speaker("rr", "192.168.0.1", cluster_id="10.0.0.1")
    link(rr, a, a_reflects=True)
    own = Update(attributes=(*_ibgp_attributes("192.168.0.12"), OriginatorID("192.168.0.11")), nlri=[P1])
    a.receive("rr", own)
    assert a.decide() == [] and a.adj_rib_in("rr") == {}
    looped = Update(attributes=(*_ibgp_attributes("192.168.0.11"), ClusterList(["10.0.0.1"])), nlri=[P1])
    rr.receive("a", looped)
    assert rr.decide() == [] and rr.adj_rib_in("a") == {}


def _ibgp_attributes(next_hop):
    from kubenet_lab.bgp import Origin, OriginType
    return (Origin(OriginType.IGP), ASPath(()), NextHop(next_hop), LocalPref(100))


def test_ebgp_prepends_as_sets_next_hop_self_and_drops_local_pref():
    # RFC 4271 §5.1.2 b, §5.1.3 (2), §5.1.5: to an external peer the AS is prepended,
    # NEXT_HOP is our address, LOCAL_PREF is not sent.
    node = speaker("node", "192.168.0.11", 64513)
    tor = speaker("tor", "192.168.0.1", 65001)
    link(node, tor)
    node.originate(P1)
    run(node, tor)
    update = node.adj_rib_out_update("tor", P1)
    assert update.attribute(ASPath) == ASPath([64513])
    assert update.attribute(NextHop).next_hop == ip_address("192.168.0.11")
    assert update.attribute(LocalPref) is None
    assert tor.loc_rib[P1].best.ebgp


def test_own_as_in_as_path_is_dropped_unless_allowas_in():
    # RFC 4271 §9.1.2: a route whose AS_PATH contains the local AS is not eligible; BIRD's
    # "allow local as 1" (Calico numAllowedLocalASNumbers) accepts one copy.
    from kubenet_lab.bgp import Origin, OriginType
    looped = Update(attributes=(Origin(OriginType.IGP), ASPath([65001, 64513]), NextHop("192.168.0.1")),
                    nlri=[P1])
    for allowas_in, accepted in ((0, False), (1, True)):
        node = speaker("node", "192.168.0.12", 64513, allowas_in=allowas_in)
        tor = speaker("tor", "192.168.0.1", 65001)
        link(node, tor)
        node.receive("tor", looped)
        assert node.decide() == ([P1] if accepted else [])
        assert (P1 in node.loc_rib) is accepted


def test_withdrawal_propagates_and_empties_the_ribs():
    a, b = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12")
    link(a, b)
    a.originate(P1)
    run(a, b)
    a.withdraw(P1)
    assert a.decide() == [P1]
    (out,) = a.outgoing()
    assert out.receivers == ("b",) and out.update.withdrawn == (P1,) and not out.update.nlri
    b.receive("a", out.update)
    assert b.decide() == [P1]
    assert b.loc_rib == {} and b.fib() == ()


def test_session_down_flushes_adj_rib_in_and_session_up_resends_the_table():
    # RFC 4271 §8: when the session closes, the routes it carried are removed.
    a, b = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12")
    link(a, b)
    a.originate(P1)
    run(a, b)
    b.session_down("a")
    a.session_down("b")
    assert b.decide() == [P1] and b.loc_rib == {}
    b.session_up("a")
    (out,) = a.session_up("b")
    assert out.receivers == ("b",) and out.update.nlri == (P1,)


def test_ecmp_same_neighbour_as_but_not_across_ases_without_relax():
    # datapath.md §2.7 (FRR, tested): two eBGP paths from the same AS are multipath; from
    # different ASes only with "bgp bestpath as-path multipath-relax".
    svc = ip_network("10.96.0.10/32")
    for second_as, relax, hops in ((64513, False, 2), (64514, False, 1), (64514, True, 2)):
        tor = speaker("tor", "192.168.0.1", 65001, multipath_relax=relax)
        n1, n2 = speaker("n1", "192.168.0.11", 64513), speaker("n2", "192.168.0.12", second_as)
        link(tor, n1)
        link(tor, n2)
        n1.originate(svc)
        n2.originate(svc)
        run(n1, n2, tor)
        (entry,) = tor.fib()
        assert len(entry.nexthops) == hops
        assert tor.loc_rib[svc].best.peer_address == ip_address("192.168.0.11")   # lower router ID
    assert str(entry) == ("10.96.0.10 proto bgp nexthop via 192.168.0.11 dev eth0 weight 1 "
                          "nexthop via 192.168.0.12 dev eth0 weight 1")


def test_local_route_beats_learnt_one():
    # FRR weight 32768 / BIRD static preference 200: a router keeps its own anycast route.
    svc = ip_network("10.96.0.10/32")
    a, b = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12")
    link(a, b)
    a.originate(svc)
    b.originate(svc)
    run(a, b)
    assert b.loc_rib[svc].best.next_hop == ip_address("0.0.0.0")
    assert b.fib() == ()


def test_import_and_export_prefix_lists():
    only_pods = PrefixList(["permit 10.244.0.0/16 le 26"])
    a, b = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12")
    a.add_peer(Peer("b", "192.168.0.12", 64512, "192.168.0.12", export_filter=only_pods))
    b.add_peer(Peer("a", "192.168.0.11", 64512, "192.168.0.11", import_filter=PrefixList(["deny 10.244.2.0/24",
                                                                                         "permit 0.0.0.0/0 le 32"])))
    a.session_up("b")
    b.session_up("a")
    for prefix in ("10.244.1.0/24", "10.244.2.0/24", "10.96.0.10/32"):
        a.originate(prefix)
    run(a, b)
    assert set(a.adj_rib_out("b")) == {P1, ip_network("10.244.2.0/24")}
    assert set(b.loc_rib) == {P1}


def test_prefix_list_semantics():
    pl = PrefixList(["deny 10.244.1.0/24", "permit 10.244.0.0/16 ge 24 le 26"])
    assert [pl.permits(ip_network(p)) for p in ("10.244.1.0/24", "10.244.2.0/24", "10.244.0.0/16",
                                                 "10.244.3.64/26", "10.244.3.1/32")] == [False, True, False, True,
                                                                                          False]
    with pytest.raises(InvalidValue, match="permit 10.244.0.0/16"):
        PrefixList(["allow 10.244.0.0/16"])
    with pytest.raises(InvalidValue, match="ge <= le"):
        PrefixList(["permit 10.244.0.0/16 ge 8"])


def test_show_ip_bgp_looks_like_frr():
    a, b, c = speaker("a", "192.168.0.11"), speaker("b", "192.168.0.12"), speaker("c", "192.168.0.13")
    link(a, c)
    link(b, c)
    svc = ip_network("10.96.0.10/32")
    a.originate(svc)
    b.originate(svc)
    c.originate("10.244.3.0/24")
    run(a, b, c)
    text = str(c.show_ip_bgp())
    assert "local router ID is 192.168.0.13" in text and "local AS 64512" in text
    lines = text.splitlines()
    assert "*>i10.96.0.10/32    192.168.0.11                  100      0 i" in lines
    assert "*=i                 192.168.0.12                  100      0 i" in lines
    assert "*> 10.244.3.0/24    0.0.0.0                  0         32768 i" in lines
    assert lines[-1] == "Displayed  2 routes and 3 total paths"
    table = c.show_ip_bgp().table
    assert table.headers == ("", "Network", "Next Hop", "Metric", "LocPrf", "Weight", "Path")
    assert "<table>" in c.show_ip_bgp()._repr_html_()


def test_user_errors():
    with pytest.raises(InvalidValue, match="AS_TRANS"):
        check_asn("Speaker x", "asn", 23456)
    for bad in (0, 65535, 2**32 - 1, 2**32, -1, True, "64512"):
        with pytest.raises(InvalidValue):
            Speaker("x", "192.168.0.1", bad)
    assert is_private_asn(64512) and is_private_asn(4200000000) and not is_private_asn(65535)
    a = speaker("a", "192.168.0.11")
    with pytest.raises(InvalidValue, match="IPv4"):
        a.originate("fd00::/64")
    with pytest.raises(InvalidValue, match="host bits|CIDR"):
        a.originate("10.244.1.1/24")
    with pytest.raises(NotFound):
        a.withdraw(P1)
    a.add_peer(Peer("b", "192.168.0.12", 64512, "192.168.0.12"))
    with pytest.raises(AlreadyExists):
        a.add_peer(Peer("b", "192.168.0.12", 64512, "192.168.0.12"))
    with pytest.raises(AlreadyExists):
        a.add_peer(Peer("c", "192.168.0.12", 64512, "192.168.0.14"))
    with pytest.raises(InvalidValue, match="established"):
        a.receive("b", Update())
    with pytest.raises(NotFound):
        a.session_up("nobody")
