"""What a kube-proxy sync changes when pods and Services come and go.

Expected changes are reasoned from kube-proxy's rules (kube-proxy.md §6): with n endpoints,
KUBE-SVC- jumps to the i-th KUBE-SEP- with probability 1/(n-i+1), the last one unconditionally.
"""

from kubenet_lab import Cluster
from kubenet_lab.kubeproxy import ruleset_diff


def cluster(endpoints: int) -> Cluster:
    c = Cluster()
    c.add_node("node-1", ip="192.168.0.11")
    for i in range(endpoints):
        c.add_pod(f"web-{i}", node="node-1", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, cluster_ip="10.96.1.50")
    return c


def rules(c: Cluster) -> str:
    return c.kube_proxy("node-1").iptables_restore()


def test_identical_rulesets_differ_in_nothing():
    c = cluster(2)
    diff = ruleset_diff(rules(c), rules(c))
    assert diff.empty and str(diff) == ""


def test_a_third_endpoint_adds_one_sep_chain_and_rewrites_the_probabilities():
    before, c = rules(cluster(2)), cluster(2)
    c.add_pod("web-2", node="node-1", labels={"app": "web"})
    diff = ruleset_diff(before, rules(c))
    nat = next(change for change in diff.changes if change[0] == "nat")
    _, created, deleted, removed, added = nat
    assert len(created) == 1 and created[0].startswith("KUBE-SEP-") and not deleted
    # 2 endpoints: 0.5 then always; 3 endpoints: 0.3333333333, 0.5, then always.
    assert any("--probability 0.5000000000" in r for r in removed)
    assert sum("--probability 0.3333333333" in r for r in added) == 1
    assert sum("--probability 0.5000000000" in r for r in added) == 1
    assert diff.counts["chains created"] == 1 and "*nat" in str(diff)


def test_a_deleted_service_removes_its_chains_and_jump():
    c = cluster(1)
    before = rules(c)
    c.remove_service("web")
    diff = ruleset_diff(before, rules(c))
    text = str(diff)
    assert "-D KUBE-SERVICES" in text and "10.96.1.50" in text
    assert diff.counts["chains deleted"] == 2  # KUBE-SVC- and its one KUBE-SEP-
    assert text.count("-X KUBE-") == 2
