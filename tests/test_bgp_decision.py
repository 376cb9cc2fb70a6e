"""The decision process: one case per step, reasoned from RFC 4271 §9.1.2.2, RFC 4456 §9 and
the BIRD/FRR ordering in datapath.md §2.5, plus ECMP as FRR does it (datapath.md §2.7)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubenet_lab.bgp import ASPath, OriginType, Path, Step, best_path, decode
from kubenet_lab.bgp.decision import DEFAULT_LOCAL_PREF, neighbor_as
from kubenet_lab.errors import InvalidValue

PREFIX = "10.244.1.0/24"


def path(peer: str, *, as_path="", origin=OriginType.IGP, med=None, local_pref=None, peer_as=65001, ebgp=True,
         igp_cost=0, router_id=None, originator_id=None, cluster_list=(), prefix=PREFIX, next_hop=None) -> Path:
    return Path(prefix, next_hop or peer, as_path, origin, med, local_pref, peer, router_id or peer, peer_as, ebgp,
                igp_cost, originator_id, cluster_list)


def decide(*paths, **options):
    return best_path(list(paths), **options)


def test_a_single_path_is_best_by_default():
    only = path("192.0.2.1", as_path="65001")
    decision = decide(only)
    assert (decision.best, decision.step, decision.multipath, decision.eliminated) == (only, Step.ONLY_PATH,
                                                                                      (only,), ())
    assert best_path([]) is None


def test_highest_local_pref_beats_a_shorter_as_path():
    # Step 1 comes before everything else (RFC 4271 §9.1.1 degree of preference).
    long = path("10.0.0.1", as_path="65001 65002 65003", local_pref=200, ebgp=False, peer_as=64512)
    short = path("10.0.0.2", as_path="65001", local_pref=100, ebgp=False, peer_as=64512)
    decision = decide(short, long)
    assert (decision.best, decision.step) == (long, Step.LOCAL_PREF)
    assert decision.eliminated == ((short, Step.LOCAL_PREF),)


def test_missing_local_pref_counts_as_100():
    # BIRD `default bgp_local_pref 100`, FRR `bgp default local-preference 100`.
    assert DEFAULT_LOCAL_PREF == 100
    missing = path("10.0.0.1", as_path="65001")
    assert decide(missing, path("10.0.0.2", as_path="65001", local_pref=90)).best == missing
    assert decide(missing, path("10.0.0.2", as_path="65001", local_pref=110)).best.local_pref == 110
    assert decide(missing, path("10.0.0.2", as_path="65001", local_pref=100)).step is Step.ROUTER_ID


def test_shortest_as_path_with_as_set_counting_one():
    # RFC 4271 §9.1.2.2 a: "an AS_SET counts as 1, no matter how many ASes are in the set".
    with_set = path("10.0.0.2", as_path="65001 {65002,65003,65004}")
    sequence = path("10.0.0.1", as_path="65001 65002 65003")
    decision = decide(sequence, with_set)
    assert (decision.best, decision.step) == (with_set, Step.AS_PATH_LENGTH)
    # Confederation segments count 0 (RFC 5065 §5.3).
    confed = path("10.0.0.3", as_path="(65100 65101 65102) 65001 65002")
    assert decide(sequence, confed).best == confed


def test_lowest_origin():
    # RFC 4271 §9.1.2.2 b: IGP < EGP < INCOMPLETE.
    igp, egp, incomplete = (path(f"10.0.0.{i}", as_path="65001", origin=o)
                            for i, o in ((3, OriginType.IGP), (1, OriginType.EGP), (2, OriginType.INCOMPLETE)))
    decision = decide(incomplete, egp, igp)
    assert (decision.best, decision.step) == (igp, Step.ORIGIN)
    assert decide(incomplete, egp).best == egp


def test_med_is_compared_only_within_the_same_neighbouring_as():
    # RFC 4271 §9.1.2.2 c: MED is removed per neighbouring AS. a (AS 65001, MED 10) loses to
    # b (AS 65001, MED 5); c (AS 65002, MED 100) is not comparable, so it survives the MED step
    # and the router ID decides between b and c.
    a = path("10.0.0.1", as_path="65001 65010", med=10, router_id="1.1.1.1")
    b = path("10.0.0.2", as_path="65001 65010", med=5, router_id="3.3.3.3")
    c = path("10.0.0.3", as_path="65002 65010", med=100, peer_as=65002, router_id="2.2.2.2")
    decision = decide(a, b, c)
    assert (decision.best, decision.step) == (c, Step.ROUTER_ID)
    assert dict((p.peer_address, step) for p, step in decision.eliminated) == {
        IPv4Address("10.0.0.1"): Step.MED, IPv4Address("10.0.0.2"): Step.ROUTER_ID}
    # `bgp always-compare-med` (FRR) / `med metric` (BIRD): MED across ASes, b wins.
    decision = decide(a, b, c, always_compare_med=True)
    assert (decision.best, decision.step) == (b, Step.MED)


def test_missing_med_is_the_lowest():
    # RFC 4271 §9.1.2.2 c: "the lowest possible MULTI_EXIT_DISC value MUST be assigned"
    # (BIRD `default bgp_med 0`; FRR without `bgp bestpath med missing-as-worst`).
    missing = path("10.0.0.2", as_path="65001")
    decision = decide(path("10.0.0.1", as_path="65001", med=10), missing)
    assert (decision.best, decision.step) == (missing, Step.MED)


def test_neighbour_as_of_internal_routes_is_the_local_as():
    # RFC 4271 §9.1.2.2 c: originated inside the AS (empty AS_PATH, or one starting with an
    # AS_SET) -> the local AS; confederation segments are skipped.
    assert neighbor_as(path("10.0.0.1", as_path=""), 64512) == 64512
    assert neighbor_as(path("10.0.0.1", as_path="{65001,65002}"), 64512) == 64512
    assert neighbor_as(path("10.0.0.1", as_path="(65100) 65001 65002"), 64512) == 65001
    # Two iBGP-originated paths of the local AS compare MEDs with each other.
    low = path("10.0.0.2", med=1, ebgp=False, peer_as=64512)
    assert decide(path("10.0.0.1", med=5, ebgp=False, peer_as=64512), low, local_as=64512).step is Step.MED


def test_ebgp_over_ibgp():
    # RFC 4271 §9.1.2.2 d - the ToR prefers what a node told it directly over an iBGP copy.
    ibgp = path("10.0.0.1", as_path="64512", ebgp=False, peer_as=65001, router_id="1.1.1.1")
    ebgp = path("10.0.0.2", as_path="64512", peer_as=64512)
    decision = decide(ibgp, ebgp)
    assert (decision.best, decision.step) == (ebgp, Step.EBGP_OVER_IBGP)


def test_lowest_igp_cost_to_the_next_hop():
    # RFC 4271 §9.1.2.2 e ("hot potato"): two iBGP exits, the nearer one wins.
    far = path("10.0.0.1", as_path="65001", ebgp=False, peer_as=64512, igp_cost=20)
    near = path("10.0.0.2", as_path="65001", ebgp=False, peer_as=64512, igp_cost=10)
    decision = decide(far, near)
    assert (decision.best, decision.step) == (near, Step.IGP_COST)


def test_lowest_router_id_or_originator_id():
    # RFC 4271 §9.1.2.2 f; RFC 4456 §9: a reflected route's ORIGINATOR_ID stands in for the
    # router ID. Node 10.0.0.1's route reflected by RR 10.0.0.9 beats node 10.0.0.5's direct one.
    reflected = path("10.0.0.9", ebgp=False, peer_as=64512, originator_id="10.0.0.1", cluster_list=["10.0.0.9"])
    direct = path("10.0.0.5", ebgp=False, peer_as=64512)
    decision = decide(direct, reflected)
    assert (decision.best, decision.step) == (reflected, Step.ROUTER_ID)


def test_shortest_cluster_list():
    # RFC 4456 §9, between router ID and peer address: two reflected copies of one node's
    # route (same ORIGINATOR_ID), one through two clusters.
    one = path("10.0.0.9", ebgp=False, peer_as=64512, originator_id="10.0.0.1", cluster_list=["10.0.0.9"])
    two = path("10.0.0.8", ebgp=False, peer_as=64512, originator_id="10.0.0.1",
               cluster_list=["10.0.0.8", "10.0.0.7"])
    decision = decide(two, one)
    assert (decision.best, decision.step) == (one, Step.CLUSTER_LIST_LENGTH)


def test_lowest_peer_address_last():
    # RFC 4271 §9.1.2.2 g; FRR's code prefers the lower address too (datapath.md §2.5).
    a = path("10.0.0.20", ebgp=False, peer_as=64512, originator_id="10.0.0.1", cluster_list=["10.0.0.9"])
    b = path("10.0.0.10", ebgp=False, peer_as=64512, originator_id="10.0.0.1", cluster_list=["10.0.0.8"])
    decision = decide(a, b)
    assert (decision.best, decision.step) == (b, Step.PEER_ADDRESS)


def test_unresolvable_next_hop_and_as_loops_are_not_eligible():
    # RFC 4271 §9.1.2: before any tie-breaking. BIRD shows such routes "unreachable"
    # (datapath.md §3: iBGP `gateway recursive` without `protocol direct`).
    unreachable = path("10.0.0.1", as_path="65001", local_pref=500, igp_cost=None)
    reachable = path("10.0.0.2", as_path="65001 65002")
    decision = decide(unreachable, reachable)
    assert (decision.best, decision.step) == (reachable, Step.NEXT_HOP_UNRESOLVABLE)
    # FRR sent our own prefix back with AS_PATH "65001 64512" (datapath.md §3, lesson 4).
    looped = path("10.0.0.3", as_path="65001 64512", local_pref=500)
    assert decide(looped, reachable, local_as=64512).step is Step.AS_LOOP
    assert decide(looped, local_as=64512) is None and decide(unreachable) is None


def test_ecmp_needs_the_same_neighbour_as_unless_multipath_relax():
    # datapath.md §2.7 [tested, FRR 8.4]: two eBGP paths for a service /32 from nodes in the same
    # AS -> both multipath; from different ASes (AS per node) -> one until multipath-relax.
    same_a = path("192.168.1.11", as_path="64512", peer_as=64512, prefix="198.51.100.10/32")
    same_b = path("192.168.1.12", as_path="64512", peer_as=64512, prefix="198.51.100.10/32")
    decision = decide(same_b, same_a)
    assert decision.best == same_a and decision.multipath == (same_a, same_b)
    other_as = path("192.168.1.12", as_path="64513", peer_as=64513, prefix="198.51.100.10/32")
    assert decide(same_a, other_as).multipath == (same_a,)
    assert decide(same_a, other_as, multipath_relax=True).multipath == (same_a, other_as)


def test_ecmp_stops_at_the_igp_cost_step():
    near = path("10.0.0.1", as_path="65001", igp_cost=10)
    also_near = path("10.0.0.2", as_path="65001", igp_cost=10)
    far = path("10.0.0.3", as_path="65001", igp_cost=20)
    longer = path("10.0.0.4", as_path="65001 65001")
    decision = decide(far, longer, also_near, near)
    assert decision.multipath == (near, also_near)
    assert decision.step is Step.ROUTER_ID


def test_ibgp_ecmp_needs_identical_as_paths():
    # FRR: iBGP multipath candidates must have the same AS_PATH unless multipath-relax.
    a = path("10.0.0.1", as_path="65001 65002", ebgp=False, peer_as=64512)
    b = path("10.0.0.2", as_path="65001 65002", ebgp=False, peer_as=64512)
    c = path("10.0.0.3", as_path="65003 65002", ebgp=False, peer_as=64512)
    assert decide(c, b, a).multipath == (a, b)
    assert decide(c, b, a, multipath_relax=True).multipath == (a, b, c)


def test_path_from_a_decoded_update():
    # The reflected route of datapath.md §2.6, as decoded in test_bgp_messages.
    wire = bytes.fromhex("ff" * 16 + "003f02" "0000" "0023" "40010100" "400200" "400304c0000202" "40050400000064"
                         "800904c0000202" "800a04c0000201" "1a0af40100")
    p = Path.from_update(decode(wire), "10.244.1.0/26", peer_address="192.0.2.1", peer_router_id="192.0.2.1",
                         peer_as=64512, ebgp=False)
    assert (p.prefix, p.next_hop, p.as_path, p.local_pref, p.med) == (
        IPv4Network("10.244.1.0/26"), IPv4Address("192.0.2.2"), ASPath(()), 100, None)
    assert (p.originator_id, p.cluster_list) == (IPv4Address("192.0.2.2"), (IPv4Address("192.0.2.1"),))
    with pytest.raises(InvalidValue, match="feasible"):
        Path.from_update(decode(wire), "10.244.2.0/26", peer_address="192.0.2.1", peer_router_id="192.0.2.1",
                         peer_as=64512, ebgp=False)


def test_bad_candidates_are_refused():
    with pytest.raises(InvalidValue, match="same prefix"):
        decide(path("10.0.0.1"), path("10.0.0.2", prefix="10.244.2.0/24"))
    with pytest.raises(InvalidValue, match="different peers"):
        decide(path("10.0.0.1"), path("10.0.0.1", med=5))
    with pytest.raises(InvalidValue, match="AS 0"):
        path("10.0.0.1", peer_as=0)


# The outcome must not depend on the order in which the paths arrived.
candidates = st.lists(
    st.builds(
        lambda i, as_path, origin, med, pref, ebgp, cost, rid, orig, clusters: path(
            f"10.0.{i // 250}.{i % 250 + 1}", as_path=as_path, origin=origin, med=med, local_pref=pref, ebgp=ebgp,
            peer_as=int(as_path.split()[0]) if ebgp and as_path else 64512, igp_cost=cost,
            router_id=f"1.1.1.{rid}", originator_id=orig, cluster_list=clusters),
        st.integers(0, 999),
        st.sampled_from(["", "65001", "65002", "65001 65003", "65002 65003", "65001 {65004,65005}"]),
        st.sampled_from(list(OriginType)), st.sampled_from([None, 0, 10, 20]), st.sampled_from([None, 90, 100, 200]),
        st.booleans(), st.sampled_from([None, 0, 10]), st.integers(1, 4),
        st.sampled_from([None, "1.1.1.1", "1.1.1.9"]),
        st.sampled_from([(), ("2.2.2.2",), ("2.2.2.2", "3.3.3.3")])),
    min_size=1, max_size=8, unique_by=lambda p: p.peer_address)


@settings(max_examples=300, deadline=None)
@given(candidates, st.randoms(use_true_random=False), st.booleans(), st.booleans())
def test_decision_is_independent_of_arrival_order(paths, rng, always_compare_med, relax):
    options = dict(local_as=64512, always_compare_med=always_compare_med, multipath_relax=relax)
    first = best_path(paths, **options)
    shuffled = list(paths)
    rng.shuffle(shuffled)
    assert best_path(shuffled, **options) == first
    if first is None:
        return
    eligible = [p for p in paths if p.igp_cost is not None and 64512 not in p.as_path.asns]
    # The winner has the best value of the first criterion, and every candidate is accounted for.
    def pref(p):
        return DEFAULT_LOCAL_PREF if p.local_pref is None else p.local_pref

    assert pref(first.best) == max(pref(p) for p in eligible)
    assert {id(p) for p, _ in first.eliminated} | {id(first.best)} == {id(p) for p in paths}
    assert first.multipath[0] is first.best and set(first.multipath) <= set(eligible)


def test_order_independence_on_a_crowd():
    # 30 eBGP peers in two neighbouring ASes with mixed MEDs: the per-AS MED step is the one
    # that makes order matter in implementations that compare paths pairwise (RFC 4271 §9.1.2.2 c).
    rng = random.Random(7)
    crowd = []
    for i in range(30):
        neighbour = rng.choice([65001, 65002])
        crowd.append(path(f"10.1.{i}.1", as_path=str(neighbour), med=rng.choice([None, 5, 10]),
                          router_id=f"9.9.{rng.randrange(250)}.{i}", peer_as=neighbour))
    reference = best_path(crowd)
    assert len(reference.multipath) >= 1 and reference.step in (Step.ROUTER_ID, Step.PEER_ADDRESS)
    for _ in range(5):
        rng.shuffle(crowd)
        assert best_path(crowd) == reference
