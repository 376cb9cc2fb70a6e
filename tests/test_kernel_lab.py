"""The kernel lab: the plan (no root needed) and, as root, the kernel agreeing with the walk.

The root tests build each scenario in network namespaces named knl<hex>-..., send the
walk's packet with ping, capture the underlay with dumpcap, and require the same verdict
and the same bytes (IP IDs, checksums, the outer UDP source port and ping's own echo
data aside). They remove every namespace they made, whatever happens.
"""

import subprocess
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.kernel import KernelLab, missing_requirements, plan
from kubenet_lab.kernel.plan import is_lab_command

TWO_RACKS = [{"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}},
             {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}}]


def cluster(cni="flannel-vxlan", racks=False, **kwargs) -> Cluster:
    ipam = "calico" if cni.startswith("calico") else "host-local"
    c = Cluster(cni=cni, ipam=ipam, racks=TWO_RACKS if racks else [], **kwargs)
    for i in range(1, 4):
        c.add_node(f"node-{i}", rack=None if not racks else ("rack-1" if i <= 2 else "rack-2"))
    c.add_pod("a", node="node-1")
    c.add_pod("b", node="node-1")
    c.add_pod("y", node="node-2")
    c.add_pod("x", node="node-3")
    return c


def test_plan_targets_only_lab_namespaces_and_speaks_iproute2():
    commands = plan(cluster().topology(), "knl0a1b2c")
    assert all(is_lab_command(c, "knl0a1b2c") for c in commands)
    text = [str(c) for c in commands]
    assert ("ip -n knl0a1b2c-n-node-1 link add flannel.1 type vxlan id 1 dstport 8472 local 192.168.0.11 dev eth0 "
            "nolearning") in text
    assert "ip -n knl0a1b2c-n-node-1 route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in text
    assert any(t.startswith("bridge -n knl0a1b2c-n-node-1 fdb append ") and t.endswith("dst 192.168.0.12 self permanent")
               for t in text)
    # a pod's default route comes after the route that makes its gateway reachable
    pod = [t for t in text if t.startswith("ip -n knl0a1b2c-p-default-a route")]
    assert pod[-1].endswith("route replace default via 10.244.0.1 dev eth0")


def test_kube_proxy_rules_load_as_each_mode_loads_them():
    c = cluster(kube_proxy_mode="nftables")
    c.add_service("web", selector={"app": "web"}, port=80)
    rules = {n.name: c.kube_proxy(n.name).nft_ruleset(4) for n in c.nodes}
    loads = [x for x in plan(c.topology(), "knl0a1b2c", rules, proxy_mode="nftables") if x.stdin in rules.values()]
    # kube-proxy's nftables mode writes one transaction per sync to `nft -f` (proxier.go, nftables
    # mode); its table's base chains hook themselves in, so no iptables jumps are added
    assert [x.argv[3:] for x in loads] == [("knl0a1b2c-n-node-1", "nft", "-f", "-"),
                                           ("knl0a1b2c-n-node-2", "nft", "-f", "-"),
                                           ("knl0a1b2c-n-node-3", "nft", "-f", "-")]
    assert all(x.stdin.startswith("add table ip kube-proxy") for x in loads)
    iptables = [x for x in plan(c.topology(), "knl0a1b2c", rules, proxy_mode="nftables") if "iptables-restore" in x.argv]
    assert all("KUBE-" not in (x.stdin or "") for x in iptables)


def test_lab_refuses_to_run_anything_outside_its_prefix():
    from kubenet_lab.kernel.plan import Command

    assert not is_lab_command(Command(("ip", "link", "add", "x", "type", "dummy"), "knl0a1b2c-n-node-1"), "knl0a1b2c")
    assert not is_lab_command(Command(("ip", "-n", "other", "link"), "other"), "knl0a1b2c")


def test_cilium_steps_aside_with_a_reason():
    from kubenet_lab.kernel import unsupported_reason

    assert "eBPF" in unsupported_reason(cluster("cilium-vxlan").topology())


REASON = missing_requirements()
root_only = pytest.mark.skipif(REASON is not None, reason=REASON or "")

CASES = [
    ("flannel-vxlan", {}, [("a", "x", {}), ("a", "b", {}), ("a", "node-2", {}), ("node-1", "y", {}),
                           ("a", "10.244.2.99", {}), ("a", "x", {"size": 1451}), ("a", "x", {"size": 3000, "df": False})]),
    ("flannel-vxlan", {"racks": True, "same_subnet_direct": True}, [("a", "y", {}), ("a", "x", {})]),
    ("calico-vxlan", {}, [("a", "x", {}), ("a", "b", {}), ("node-1", "x", {})]),
    ("calico-bgp", {"racks": True}, [("a", "x", {}), ("a", "y", {}), ("a", "b", {})]),
    ("native-routing", {}, [("a", "x", {}), ("a", "b", {})]),
    ("flannel-vxlan", {"veth_mtu": 1500}, [("a", "x", {"size": 1500}), ("a", "x", {"size": 1500, "df": False})]),
    ("flannel-vxlan", {"veth_mtu": 1500, "tunnel_mtu": 1500}, [("a", "x", {"size": 1500, "df": False})]),
]


@root_only
@pytest.mark.parametrize("cni, options, walks", CASES,
                         ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for c, o, _ in CASES])
def test_kernel_agrees_with_the_walk(cni, options, walks):
    c = cluster(cni, **options)
    with KernelLab(c) as lab:
        prefix = lab.prefix
        for src, dst, kwargs in walks:
            dst_ip = str(c.pod(dst).ip) if dst in {p.name for p in c.pods} else dst
            verdict = lab.verify(c.trace(src, dst_ip if dst.count(".") == 3 else dst, **kwargs))
            assert verdict.agrees, f"{src} -> {dst} {kwargs}: {verdict}"
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left


@root_only
def test_failed_build_leaves_nothing_behind(monkeypatch):
    c = cluster()
    lab = KernelLab(c)
    real_run = lab._run
    calls = []

    def fail_late(command):
        calls.append(command)
        if len(calls) == 40:
            raise RuntimeError("injected failure")
        return real_run(command)

    monkeypatch.setattr(lab, "_run", fail_late)
    with pytest.raises(RuntimeError, match="injected"):
        lab.up()
    assert lab.prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
# Every shipped scenario, so a new one is covered the day it lands (DESIGN.md: YAML or JSON).
SCENARIO_FILES = sorted(p.name for p in SCENARIOS.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_every_shipped_scenario_is_covered():
    assert {"three-node-vxlan.yaml", "two-rack-bgp.yaml", "metallb-bgp.yaml", "capstone-datacentre.yaml",
            "dual-stack.yaml"} <= set(SCENARIO_FILES)


def test_external_probes_follow_the_services_spec():
    # metallb-bgp.yaml (read by hand): web is a LoadBalancer (VIP 192.168.100.1, nodePort 30080,
    # externalTrafficPolicy Cluster: any node hands it to web-1 or web-2, masqueraded); api a
    # NodePort. two-rack-bgp.yaml: web is externalTrafficPolicy Local, its pods on node-1 and node-3:
    # node-2 and node-4 have no endpoint to give (kube-proxy drops), and the client's address is kept.
    from kubenet_lab.kernel.check import probes

    outside = [p for p in probes(Cluster.load(SCENARIOS / "metallb-bgp.yaml")) if p.src == "external"]
    assert [(p.label, p.dst_ip, p.port) for p in outside][:2] == [
        ("LoadBalancer default/web", "192.168.100.1", 80), ("NodePort default/web on node-1", "192.168.1.11", 30080)]
    assert len(outside) == 1 + 4 + 4 and all(p.keeps_source is False for p in outside)
    assert {p.allowed for p in outside if "web" in p.label} == {frozenset({"web-1", "web-2"})}
    local = {p.label: p for p in probes(Cluster.load(SCENARIOS / "two-rack-bgp.yaml")) if p.src == "external"}
    assert {label: sorted(p.allowed) for label, p in local.items()} == {
        "LoadBalancer default/web": ["web-1", "web-2"], "NodePort default/web on node-1": ["web-1"],
        "NodePort default/web on node-2": [], "NodePort default/web on node-3": ["web-2"],
        "NodePort default/web on node-4": []}
    assert all(p.keeps_source for p in local.values())
    # The VIP is an ECMP /32 from node-1 and node-3: the walk follows one leg, to one node's only
    # local endpoint, but the kernel may hash onto the other leg, so the check allows both pods.
    from kubenet_lab.kernel.check import _walk_endpoints

    two_racks = Cluster.load(SCENARIOS / "two-rack-bgp.yaml")
    vip = local["LoadBalancer default/web"]
    walk = two_racks.trace("external", vip.dst_ip, dport=80, proto="tcp")
    assert len([e for e, chance in walk.service_choice.probabilities.items() if chance]) == 1
    assert _walk_endpoints(two_racks, vip) == (frozenset({"web-1", "web-2"}), True)
    # no BGP design, no client outside
    assert not [p for p in probes(Cluster.load(SCENARIOS / "three-node-vxlan.yaml")) if p.src == "external"]


@root_only
@pytest.mark.parametrize("scenario", SCENARIO_FILES)
def test_lab_check_cli_agrees_on_every_probe(scenario, capsys, monkeypatch):
    """``lab check`` on every shipped scenario. The rule for the three kinds of file:

    * a scenario without Node objects (chapter 09's design brief) builds nothing and asks no probe;
    * one the lab cannot build (Cilium's eBPF datapath) is refused with its reason, and not one
      command of the plan runs;
    * every other one agrees on every probe, the external client's included where the topology has it.
    """
    from kubenet_lab.cli import main
    from kubenet_lab.kernel import unsupported_reason

    path = SCENARIOS / scenario
    cluster = Cluster.load(path)
    ran = []
    real_run = KernelLab._run
    monkeypatch.setattr(KernelLab, "_run", lambda self, command, **kw: ran.append(command) or real_run(self, command, **kw))
    if not cluster.nodes:
        assert main(["lab", "check", str(path)]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"nothing to build: scenario {cluster.network.name!r} has no Node objects, so no namespace and "
                       "no probe (a design brief? 'kubenet-lab design-check' reviews it)", "0 probes, 0 agree"]
        assert ran == []
        return
    reason = unsupported_reason(cluster.topology())
    if reason is not None:
        assert main(["lab", "check", str(path)]) == 2
        assert reason in capsys.readouterr().err and "eBPF" in reason
        assert ran == []
        return
    assert main(["lab", "check", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    probes, agree = lines[-1].split(" probes, ")
    assert agree == f"{probes} agree", "\n".join(line for line in lines if "DISAGREE" in line)
    numbered = [line for line in lines if line.startswith("[") and not line.startswith("[routes]")]
    routers = [line for line in lines if line.startswith("[routes]")]
    assert len(numbered) + len(routers) == int(probes) and all(": agree" in line for line in numbered + routers)
    outside = [line for line in numbered if "] external -> " in line]
    if cluster.network.bgp_design != "none":
        # the VIPs and every node's nodePort, from outside (topology.py: a BGP design has the client)
        vips = sum(len(s.ports) for s in cluster.services if s.type == "LoadBalancer" for ip in s.load_balancer_ips)
        node_ports = sum(1 for s in cluster.services for sp in s.ports if sp.node_port)
        assert sum("-> LoadBalancer " in line for line in outside) == vips
        assert sum("-> NodePort " in line for line in outside) == node_ports * len(cluster.nodes)
    else:
        assert outside == []


@root_only
def test_lab_up_status_down(capsys):
    from pathlib import Path

    from kubenet_lab.cli import main

    path = Path(__file__).resolve().parent.parent / "scenarios" / "three-node-vxlan.yaml"
    assert main(["lab", "up", str(path)]) == 0
    prefix = capsys.readouterr().out.split()[1]
    try:
        assert main(["lab", "status"]) == 0
        assert f"{prefix}  9 namespaces" in capsys.readouterr().out  # 3 nodes, 5 pods, 1 switch
    finally:
        assert main(["lab", "down", prefix]) == 0
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert main(["lab", "down", "not-a-prefix"]) == 2


def test_lab_cli_refuses_cilium_with_a_reason(capsys):
    from pathlib import Path

    from kubenet_lab.cli import main

    path = Path(__file__).resolve().parent.parent / "scenarios" / "dual-stack.yaml"
    assert main(["lab", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "eBPF" in err or "root" in err or "needs" in err


@root_only
def test_kube_proxy_rules_in_the_kernel_balance_over_every_endpoint_and_hairpin():
    # kube-proxy's own rules, loaded in each node with its jumps from the built-in chains, hand
    # ClusterIP connections to every ready endpoint (1/3 each: 60 tries miss one with p < 1e-10),
    # and a pod reaching its own Service is hairpinned back to itself.
    from pathlib import Path

    c = Cluster.load(Path(__file__).resolve().parent.parent / "scenarios" / "three-node-vxlan.yaml")
    web = str(c.service("web").cluster_ip)
    with KernelLab(c) as lab:
        lab.start_echo_servers()
        seen = set()
        for _ in range(60):
            seen.add(lab.connect("web-1", web, 80))
            if seen >= {"web-1", "web-2", "web-3"}:
                break
        assert seen == {"web-1", "web-2", "web-3"}
        assert lab.connect("node-1", str(c.node("node-3").ip), 30080) in {"web-1", "web-2", "web-3"}
        assert lab.connect("client", web, 80, "udp") is None  # no UDP port on the Service: nothing answers
