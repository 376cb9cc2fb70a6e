"""The generated rulesets in a real kernel: ``iptables-restore --test``, then a real load.

Each check runs in a network namespace of its own (``knl-test-<pid>-<random>``),
created for it and deleted afterwards, so the host's own rules are never
touched. Loading uses kube-proxy's own flags, ``--noflush --counters``. Needs
root and the ``ip`` (iproute2), ``iptables-restore`` and ``ip6tables-restore``
(iptables) commands; the nfacct counters of kube-proxy's test harness also need
``nfacct`` (package nfacct). Elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.kubeproxy import KubeProxy, iptables_restore
from kubenet_lab.kubeproxy.iptables import NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED
from kubeproxy_upstream import endpoint, endpoint_port, fake_proxier_settings, make_endpoint_slice, make_service, port
from test_kubeproxy_iptables import OVERALL_EXPECTED, REPEATED_FULL_RESYNC_EXPECTED, overall_inputs

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))
RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}
SAVE = {4: "iptables-save", 6: "ip6tables-save"}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    tools = ["ip", *RESTORE.values(), *SAVE.values()]
    absent = [t for t in tools if shutil.which(t) is None]
    return f"needs {', '.join(absent)} (apt packages iproute2, iptables)" if absent else None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _run(args: list[str], text: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(args, input=text, capture_output=True, text=True, timeout=120)


@contextmanager
def namespace(nfacct: bool = False):
    """A fresh network namespace, deleted on exit; with kube-proxy's nfacct counters if asked."""
    name = f"knl-test-{os.getpid()}-{secrets.token_hex(3)}"
    created = _run(["ip", "netns", "add", name])
    assert created.returncode == 0, created.stderr
    try:
        if nfacct:
            for counter in (NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED):
                added = _run(["ip", "netns", "exec", name, "nfacct", "add", counter])
                assert added.returncode == 0, added.stderr
        yield name
    finally:
        _run(["ip", "netns", "delete", name])


def restore(ns: str, rules: str, family: int = 4, test: bool = False) -> None:
    """Feed ``rules`` to (ip6)iptables-restore inside ``ns``, as kube-proxy does."""
    args = ["ip", "netns", "exec", ns, RESTORE[family], "--noflush", "--counters"] + (["--test"] if test else [])
    done = _run(args, rules)
    assert done.returncode == 0, f"{RESTORE[family]} rejected the input: {done.stderr}"


def saved(ns: str, family: int = 4) -> str:
    done = _run(["ip", "netns", "exec", ns, SAVE[family]])
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rule_count(text: str) -> int:
    return sum(line.startswith("-A ") for line in text.splitlines())


def _chains(text: str) -> set[str]:
    """The KUBE-* chains declared in a restore input or listed by iptables-save."""
    return {line[1:].split()[0] for line in text.splitlines() if line.startswith(":KUBE-")}


def check_loads(rules: str, family: int = 4, nfacct: bool = False) -> None:
    """``--test`` accepts the input, a real load installs every rule, and nothing else."""
    with namespace(nfacct) as ns:
        restore(ns, rules, family, test=True)
        restore(ns, rules, family)
        in_kernel = saved(ns, family)
        assert _rule_count(in_kernel) == _rule_count(rules)
        assert _chains(rules) - {line[3:] for line in rules.splitlines() if line.startswith("-X ")} <= _chains(in_kernel)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_loads_on_every_node(scenario):
    cluster = Cluster.load(scenario)
    for node in cluster.nodes:
        for family in cluster.network.families:
            check_loads(KubeProxy(cluster, node.name).iptables_restore(family), family)


def test_upstream_reference_input_passes_restore_test():
    # TestOverallIPTablesRules' expected text: kube-proxy's own output (after sorting).
    with namespace() as ns:
        restore(ns, OVERALL_EXPECTED, test=True)


@pytest.mark.skipif(shutil.which("nfacct") is None, reason="needs nfacct (apt package nfacct) for kube-proxy's counters")
def test_upstream_reference_input_and_ours_load_with_nfacct_counters():
    check_loads(OVERALL_EXPECTED, nfacct=True)
    services, slices, health_check_node_ports = overall_inputs()
    check_loads(iptables_restore(services, slices, fake_proxier_settings(),
                                 health_check_node_ports=health_check_node_ports), nfacct=True)


def test_full_resync_deletes_stale_chains_in_the_kernel():
    # What TestSyncProxyRulesRepeated's final resync does, against a real kernel: sync with
    # every Service, then without one, passing the chains iptables-save reports.
    cluster = Cluster.load(SCENARIOS[0])
    proxy = KubeProxy(cluster, cluster.nodes[0].name)
    with namespace() as ns:
        restore(ns, proxy.iptables_restore())
        before = _chains(saved(ns))
        service = next(s for s in cluster.services if s.key != "default/kubernetes")
        cluster.remove_service(service.name, service.namespace)
        resync = proxy.iptables_restore(existing_nat_chains=before)
        assert "\n-X " in resync
        restore(ns, resync)
        after = saved(ns)
        assert _chains(after) == _chains(resync) - {line[3:] for line in resync.splitlines() if line.startswith("-X ")}
        assert f" {service.cluster_ip} " not in after
        assert _rule_count(after) == _rule_count(resync)


def test_upstream_resync_input_passes_restore_test():
    # TestSyncProxyRulesRepeated's full resync: declares, then deletes, two stale chains.
    with namespace() as ns:
        restore(ns, REPEATED_FULL_RESYNC_EXPECTED, test=True)


def test_large_cluster_ruleset_loads():
    # Over 1000 endpoints: kube-proxy's large-cluster mode, comments dropped from endpoint rules.
    services = [make_service("ns", f"svc{i}", f"172.30.{i // 250}.{i % 250 + 1}", [port("p80", 80)]) for i in range(300)]
    slices = [make_endpoint_slice("ns", f"svc{i}", 1, [endpoint(f"10.{i // 250}.{i % 250}.{j}") for j in range(1, 6)],
                                  [endpoint_port("p80", 80)]) for i in range(300)]
    rules = iptables_restore(services, slices, fake_proxier_settings(nfacct=False))
    assert "-A KUBE-SEP-" in rules and not any(l.startswith("-A KUBE-SEP-") and "--comment" in l for l in rules.splitlines())
    check_loads(rules)


def test_ipv6_ruleset_with_affinity_loads():
    cluster = Cluster(pod_cidr="fd00:10:244::/56", service_cidr="fd00:10:96::/112")
    cluster.add_node("node-1", ip="fd00:192:168::11")
    for i in range(3):
        cluster.add_pod(f"web-{i}", node="node-1", labels={"app": "web"})
    cluster.add_service("web", selector={"app": "web"}, port=80, type="NodePort", session_affinity="ClientIP")
    check_loads(KubeProxy(cluster, "node-1").iptables_restore(6), family=6)
