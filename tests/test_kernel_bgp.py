"""BGP-routed scenarios in the kernel lab: BIRD 2 in every router, routes learnt for real.

scenarios/two-rack-bgp.yaml: four nodes in two racks, "AS per rack" (per-rack-ebgp). Its
ClusterNetwork gives the ToRs AS 65001 and 65002 and the cluster AS 64512; the design (Calico
"Calico over IP fabrics", kubenet_lab.bgp.fabric) gives rack i's nodes AS 64512 + i and the
spine AS 65100. The ToRs sit at the rack subnets' .1, and on /31 uplinks 172.31.255.1 (tor-1)
and .3 (tor-2) facing the spine's .0 and .2.

Without root: the generated bird.conf is what that design says, and BIRD's own parser
(``bird -p``) accepts it; the plan leaves BGP routes to BIRD. As root: the lab's BIRDs
establish every session, each router's kernel table holds what the simulated fabric's FIB
says (and what RFC 4271 says independently: a node drops its rack-mate's routes, whose
AS_PATH holds its own AS), the probes travel over those routes, and after a link or a
daemon goes down the kernel converges to the fabric's event simulation.

The ``web`` LoadBalancer VIP is announced as a /32 by node-1 and node-3, the nodes of its two
endpoints (externalTrafficPolicy Local, as MetalLB announces it): the spine gets two paths of
equal AS_PATH length from two neighbour ASes and, with multipath-relax in the simulator and
``merge paths`` in BIRD, installs one ECMP route; the client outside the cluster, behind the
spine, reaches the Service through it.
"""

import os
import shutil
import subprocess
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.bgp.fabric import Fabric
from kubenet_lab.kernel import KernelLab, missing_requirements, plan
from kubenet_lab.kernel.bird import bird_config, kernel_fib
from kubenet_lab.kernel.lab import run_dir
from kubenet_lab.kernel.plan import is_lab_command

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "two-rack-bgp.yaml"
RACK_OF = {"node-1": 1, "node-2": 1, "node-3": 2, "node-4": 2}
TOR_UPLINK = {1: "172.31.255.1", 2: "172.31.255.3"}


@pytest.fixture(scope="module")
def cluster():
    return Cluster.load(SCENARIO)


def _block(cluster, node):
    (block,) = cluster.blocks(node)
    return block


def test_bird_conf_says_what_the_design_says(cluster):
    fabric = Fabric.from_cluster(cluster)
    node = bird_config(fabric, "node-1")
    assert "router id 192.168.1.11;" in node
    assert "local 192.168.1.11 as 64513;" in node and "neighbor 192.168.1.1 as 65001;" in node
    assert f"route {_block(cluster, 'node-1')} blackhole;" in node    # Calico's block, announced
    assert "next hop self ebgp;" in node and "merge paths on;" in node
    tor = bird_config(fabric, "tor-1")
    assert "neighbor 172.31.255.0 as 65100;" in tor and "neighbor 192.168.1.12 as 64513;" in tor
    assert "(source = RTS_DEVICE && net ~ [ 192.168.1.0/24 ])" in tor  # the rack subnet, a connected route
    assert "rr client" not in tor + node                                # eBGP everywhere: nothing to reflect


def test_route_reflector_design_makes_rr_clients():
    c = Cluster(cni="calico-bgp", ipam="calico", bgp_design="route-reflectors")
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
    fabric = Fabric.from_cluster(c)          # default reflectors: the two lowest node IPs
    reflector, client = bird_config(fabric, "node-1"), bird_config(fabric, "node-3")
    assert reflector.count("rr client;") == 1 and "rr client" not in client
    assert "gateway recursive;" in client and "learn;" in client   # iBGP next hops: through BIRD's table


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2) to parse the config")
@pytest.mark.parametrize("design", ["per-rack-ebgp", "full-mesh", "route-reflectors"])
def test_bird_parses_every_generated_config(cluster, tmp_path, design):
    fabric = Fabric.from_cluster(cluster, design)
    for router in fabric.speakers:
        path = tmp_path / f"{router}.conf"
        path.write_text(bird_config(fabric, router))
        done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, f"{design}, {router}: {done.stderr}"


def test_plan_leaves_bgp_routes_to_bird_and_starts_it_last(cluster):
    topology = cluster.topology()
    routers = {"node-1": "/run/x", "tor-1": "/run/x", "spine": "/run/x"}
    commands = plan(topology, "knl0a1b2c", bird=routers)
    text = [str(c) for c in commands]
    assert all(is_lab_command(c, "knl0a1b2c") for c in commands)
    assert not any(" proto bird" in t or " proto bgp" in t for t in text if "-n-node-1 " in t or "-r-tor-1 " in t)
    assert any(t.startswith("ip -n knl0a1b2c-n-node-3 route replace blackhole") for t in text)  # node-3: no BIRD here
    starts = [t for t in text if " bird -c " in t]
    assert starts == text[-3:] and "ip netns exec knl0a1b2c-n-node-1 bird -c /run/x/node-1.conf" in starts[0]


REASON = missing_requirements()
root_only = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def _vip(cluster):
    (vip,) = cluster.service("web").load_balancer_ips
    return ip_network(f"{vip}/32")


@pytest.fixture(scope="module")
def lab(cluster):
    if REASON is not None:
        pytest.skip(REASON)
    with KernelLab(cluster) as lab:
        yield lab
    assert not run_dir(lab.prefix).exists()


@root_only
def test_every_session_is_established(lab):
    states = lab.bgp_sessions()
    assert len(states) == 12 and set(states.values()) == {"Established"}   # 6 sessions, seen from both ends


@root_only
def test_kernel_routes_are_the_fabrics_the_walks_and_rfc_4271s(lab, cluster):
    assert lab.route_disagreements(walk=True) == {}
    netns = {name: lab.names.netns(name, lab.topology.kinds[name]) for name in ("node-1", "tor-1", "spine")}
    spine = kernel_fib(netns["spine"])
    for node, rack in RACK_OF.items():   # the spine reaches each block through that rack's ToR
        assert spine[_block(cluster, node)] == {(ip_address(TOR_UPLINK[rack]), f"tor-{rack}")}
    node1 = kernel_fib(netns["node-1"])
    via_tor = frozenset({(ip_address("192.168.1.1"), "eth0")})
    assert node1[_block(cluster, "node-3")] == via_tor and node1[ip_network("192.168.2.0/24")] == via_tor
    # node-2's block reaches node-1 with AS_PATH 65001 64513: node-1's own AS, so it is dropped
    assert _block(cluster, "node-2") not in node1
    # the VIP: one multipath route on the spine, one path per rack
    assert spine[_vip(cluster)] == {(ip_address(TOR_UPLINK[1]), "tor-1"), (ip_address(TOR_UPLINK[2]), "tor-2")}


@root_only
def test_pods_reach_each_other_over_bird_routes(lab, cluster):
    for src, dst in (("web-1", "web-2"), ("client", "api-1"), ("api-1", "client")):
        verdict = lab.verify(cluster.trace(src, str(cluster.pod(dst).ip)))
        assert verdict.agrees, f"{src} -> {dst}: {verdict}"


@root_only
def test_the_outside_reaches_the_load_balancer_over_the_ecmp_route(lab, cluster):
    vip = str(_vip(cluster).network_address)
    assert cluster.trace("external", vip, dport=80, proto="tcp").outcome == "delivered"
    lab.start_echo_servers()
    assert lab.connect("external", vip, 80) in {"web-1", "web-2"}


@root_only
def test_a_failed_uplink_and_its_repair_converge_as_simulated(lab, cluster):
    tor2 = lab.names.netns("tor-2", "router")
    node1 = lab.names.netns("node-1", "node")
    subprocess.run(["ip", "-n", tor2, "link", "set", "uplink", "down"], check=True, timeout=10)
    lab.fabric.link_down("tor-2")
    lab.wait_for_bgp()
    assert lab.route_disagreements() == {}
    assert _block(cluster, "node-3") not in kernel_fib(node1)           # rack 2 is cut off
    spine = kernel_fib(lab.names.netns("spine", "router"))
    assert spine[_vip(cluster)] == {(ip_address(TOR_UPLINK[1]), "tor-1")}  # the ECMP route lost a leg
    assert not lab.ping("web-1", str(cluster.pod("web-2").ip)).delivered
    subprocess.run(["ip", "-n", tor2, "link", "set", "uplink", "up"], check=True, timeout=10)
    lab.fabric.link_up("tor-2")
    lab.wait_for_bgp()
    assert lab.route_disagreements() == {}
    assert lab.ping("web-1", str(cluster.pod("web-2").ip)).delivered


@root_only
def test_a_stopped_bird_is_withdrawn_everywhere(lab, cluster):
    # The last test on the module's lab: node-4's BIRD does not come back.
    lab.stop_bird("node-4")
    lab.fabric.session_down("tor-2", "node-4")
    lab.wait_for_bgp()
    assert lab.route_disagreements() == {}
    api = _block(cluster, "node-4")
    for router in ("node-1", "tor-1", "spine", "tor-2"):
        assert api not in kernel_fib(lab.names.netns(router, lab.topology.kinds[router]))
    assert kernel_fib(lab.names.netns("node-4", "node")) == {}         # BIRD took its routes with it


@root_only
def test_lab_down_stops_bird_by_pid(capsys):
    from kubenet_lab.cli import main

    assert main(["lab", "up", str(SCENARIO)]) == 0
    prefix = capsys.readouterr().out.split()[1]
    pids = [int(p.read_text()) for p in run_dir(prefix).glob("*.pid")]
    try:
        assert len(pids) == 7 and all(Path(f"/proc/{pid}/comm").read_text().strip() == "bird" for pid in pids)
    finally:
        assert main(["lab", "down", prefix]) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not run_dir(prefix).exists()


@root_only
def test_ipvs_mode_steps_aside_before_building_anything():
    from kubenet_lab.errors import InvalidValue

    c = Cluster(kube_proxy_mode="ipvs")
    c.add_node("node-1")
    c.add_pod("web-1", node="node-1", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80)
    lab = KernelLab(c)
    with pytest.raises(InvalidValue, match="IPVS"):
        lab.up()
    expected = "does not program IPVS" if os.path.exists("/proc/net/ip_vs") else "no /proc/net/ip_vs"
    assert expected in missing_requirements(c)
    assert lab.prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
