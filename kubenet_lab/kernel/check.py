"""Every probe a scenario implies, answered twice: by the model and by the kernel.

* pod -> pod and pod -> node: the packet walk's verdict and on-wire bytes against ``ping`` and a
  capture (:meth:`~kubenet_lab.kernel.lab.KernelLab.verify`);
* pod -> ClusterIP and node -> NodePort: the walk through kube-proxy's rules gives the endpoints
  the connection may reach (those with a non-zero probability) or none (REJECT); kube-proxy's
  real rules (iptables or nftables mode), loaded in every node, must hand the connection to one
  of them, or to nobody;
* from outside, in a cluster with a BGP design (its topology has the ``external`` client):
  external -> LoadBalancer VIP and external -> nodeIP:nodePort of every node, judged the same way,
  and by the client address the serving pod saw: kept with externalTrafficPolicy Local, a node's
  own address (kube-proxy's masquerade) with Cluster, as the Service's spec, the walk and the
  kernel must all say. The VIP is an ECMP /32: the walk follows one leg (its hash is a stand-in
  for the kernel's secret one), so the endpoints the kernel may reach are those kube-proxy's rules
  give on any node announcing the VIP (:func:`~kubenet_lab.bgp.fabric.load_balancer_announcements`);
* in a BGP-routed scenario, first, each router's routes as BIRD learnt them against the
  simulated fabric's FIB and the tables the walk forwards by
  (:meth:`~kubenet_lab.kernel.lab.KernelLab.route_disagreements`): the probes then travel over
  routes BIRD installed.

A scenario without nodes (chapter 09's design brief) has nothing to build: :func:`run_check`
says so and asks no probe. One the lab cannot build (Cilium's eBPF datapath) is refused with
the reason before anything is created.

:func:`run_check` is what ``kubenet-lab lab check`` runs; :func:`random_cluster` makes the seeded
random scenarios of the differential tests.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/metallb-bgp.yaml")
>>> [f"{p.src} -> {p.label}" for p in probes(c) if p.src == "external"][:3]
['external -> LoadBalancer default/web', 'external -> NodePort default/web on node-1', 'external -> NodePort default/web on node-2']
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..overlay.topology import EXTERNAL

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..objects import Service
    from .lab import KernelLab

__all__ = ["Probe", "probes", "run_check", "random_cluster", "LAB_CNIS"]

# The datapaths the lab can build here (Cilium needs its eBPF programs; IP-in-IP the ipip module).
LAB_CNIS = ("flannel-vxlan", "calico-vxlan", "calico-bgp", "native-routing")


@dataclass(frozen=True)
class Probe:
    """One question to ask both the model and the kernel."""

    kind: str  # "walk" or "service"
    src: str
    dst_ip: str
    label: str
    port: int = 0
    proto: str = "icmp"
    allowed: frozenset[str] = frozenset()
    # From outside: whether the serving pod must see the client's own address (externalTrafficPolicy
    # Local) or a node's (Cluster: masqueraded); None for probes from inside the cluster.
    keeps_source: bool | None = None


def probes(cluster: Cluster) -> list[Probe]:
    """Every pod -> pod, pod -> node, pod -> ClusterIP and node -> NodePort probe of ``cluster``, and
    with a BGP design every external -> LoadBalancer VIP and external -> nodeIP:nodePort one."""
    pods = [p for p in cluster.pods if p.ips and not p.host_network and p.node]
    found = [Probe("walk", a.key, str(b.ip), b.key) for a in pods for b in pods if a is not b]
    found += [Probe("walk", a.key, str(n.ip), n.name) for a in pods for n in cluster.nodes]
    for service in cluster.services:
        ready = frozenset(pod for pod, _ in _ready_endpoints(cluster, service))
        for sp in service.ports:
            if sp.protocol not in ("TCP", "UDP"):
                continue
            proto = sp.protocol.lower()
            for ip in service.cluster_ips:
                if ip.version == 4:
                    found += [Probe("service", p.key, str(ip), f"ClusterIP {service.key}", sp.port, proto, ready)
                              for p in pods[:2]]
            if sp.node_port and service.external_traffic_policy == "Cluster" and len(cluster.nodes) > 1:
                src, dst = cluster.nodes[0], cluster.nodes[1]
                found.append(Probe("service", src.name, str(dst.ip), f"NodePort {service.key}", sp.node_port, proto,
                                   ready))
    if EXTERNAL in cluster.topology().kinds:
        found += [probe for service in cluster.services for probe in _external_probes(cluster, service)]
    return found


def _ready_endpoints(cluster: Cluster, service: Service) -> list[tuple[str, str | None]]:
    """(pod, node) of each ready IPv4 endpoint of ``service``, from its EndpointSlices."""
    return [(e.target_pod, e.node_name) for s in cluster.endpoint_slices(service) for e in s.endpoints
            if e.ready and e.address.version == 4 and e.target_pod]


def _external_probes(cluster: Cluster, service: Service) -> list[Probe]:
    """The client outside the cluster to ``service``: its LoadBalancer VIPs, and its nodePort on every
    node. With externalTrafficPolicy Local a node hands the connection only to its own ready
    endpoints (none: kube-proxy drops it) and the source is kept; with Cluster to any, masqueraded."""
    local = service.external_traffic_policy == "Local"
    endpoints = _ready_endpoints(cluster, service)
    ready = frozenset(pod for pod, _ in endpoints)
    found = []
    for sp in service.ports:
        if sp.protocol not in ("TCP", "UDP"):
            continue
        proto = sp.protocol.lower()
        if service.type == "LoadBalancer":
            found += [Probe("service", EXTERNAL, str(ip), f"LoadBalancer {service.key}", sp.port, proto, ready, local)
                      for ip in service.load_balancer_ips if ip.version == 4]
        if sp.node_port:
            for node in cluster.nodes:
                allowed = frozenset(pod for pod, on in endpoints if on == node.name) if local else ready
                found.append(Probe("service", EXTERNAL, str(node.ip), f"NodePort {service.key} on {node.name}",
                                   sp.node_port, proto, allowed, local))
    return found


def run_check(cluster: Cluster, *, report: Callable[[str], None] = lambda line: None,
              sample: int | None = None, seed: int = 0) -> tuple[int, int]:
    """Build ``cluster`` in the kernel, ask every probe (or a seeded sample of ``sample``), return (total, agree).

    In a BGP-routed scenario each router's FIB counts as one more probe. A scenario without nodes
    builds nothing: one line says why, and the answer is (0, 0)."""
    from .bird import fib_of
    from .lab import KernelLab

    if not cluster.nodes:
        report(f"nothing to build: scenario {cluster.network.name!r} has no Node objects, so no namespace and "
               "no probe (a design brief? 'kubenet-lab design-check' reviews it)")
        return 0, 0
    chosen = probes(cluster)
    if sample is not None and len(chosen) > sample:
        chosen = random.Random(seed).sample(chosen, sample)
    agree = 0
    with KernelLab(cluster) as lab:
        routers = []
        if lab.fabric is not None:
            disagreements = lab.route_disagreements(walk=True)
            routers = sorted(lab.fabric.speakers)
            for name in routers:
                lines = disagreements.get(name)
                count = len(fib_of(lab.fabric, name))
                verdict = (f"DISAGREE: {'; '.join(lines)}" if lines else
                           f"agree: the kernel's proto bird routes are the fabric's FIB and the walk's "
                           f"({count} prefixes)")
                report(f"[routes] {name}: {verdict}")
                agree += not lines
        if any(p.kind == "service" for p in chosen):
            lab.start_echo_servers()
        for number, probe in enumerate(chosen, 1):
            if probe.kind == "walk":
                verdict = lab.verify(cluster.trace(probe.src, probe.dst_ip))
                ok, line = verdict.agrees, str(verdict)
            else:
                ok, line = _judge_service(lab, probe)
            agree += ok
            where = f"{probe.dst_ip}:{probe.port}/{probe.proto}" if probe.kind == "service" else probe.dst_ip
            report(f"[{number}/{len(chosen)}] {probe.src} -> {probe.label} ({where}): {line}")
    return len(chosen) + len(routers), agree


def _judge_service(lab: KernelLab, probe: Probe) -> tuple[bool, str]:
    """Connect as ``probe`` says, and judge the answer against the walk and the EndpointSlices."""
    cluster = lab.cluster
    allowed, walk_keeps = _walk_endpoints(cluster, probe)
    answer = lab.answer(probe.src, probe.dst_ip, probe.port, probe.proto)
    served = answer.pod if answer else None
    ok = served in allowed if allowed else served is None
    kernel = served or "no answer"
    if allowed != probe.allowed:
        ok = False  # the walk and the EndpointSlices disagree on the endpoints
        kernel += f" (walk allows {sorted(allowed)}, slices list {sorted(probe.allowed)})"
    expected = (f"one of {', '.join(sorted(probe.allowed))}" if probe.allowed else
                "no answer (no endpoint on this node, externalTrafficPolicy Local)" if probe.keeps_source else
                "no answer (no endpoints)")
    if probe.keeps_source is not None and probe.allowed:
        client = str(lab.topology.external_address)
        nodes = {str(a) for n in cluster.nodes for a in lab.topology[n.name].local_addresses()}
        expected += ", client source kept" if probe.keeps_source else ", source masqueraded to a node's address"
        if walk_keeps != probe.keeps_source:
            ok = False
            kernel += f" (the walk {'keeps' if walk_keeps else 'rewrites'} the client source)"
        if answer is not None:
            seen_ok = answer.peer == client if probe.keeps_source else answer.peer in nodes
            ok &= seen_ok
            kernel += f", seen from {answer.peer}" + ("" if seen_ok else " (wrong source)")
    return ok, f"{'agree' if ok else 'DISAGREE'}: model {expected}, kernel {kernel}"


def _walk_endpoints(cluster: Cluster, probe: Probe) -> tuple[frozenset[str], bool | None]:
    """The pods a Service probe may reach according to the packet walk through kube-proxy's rules,
    and whether the walk delivers it with the sender's own source address (None: not delivered).

    To a LoadBalancer VIP from outside, the walk takes one leg of the ECMP /32; the kernel may take
    any, so the pods are those kube-proxy's rules reach on every node that announces the VIP."""
    from ..bgp.fabric import announcing_nodes

    walk = cluster.trace(probe.src, probe.dst_ip, dport=probe.port, proto=probe.proto)
    if walk.outcome != "delivered" or walk.service_choice is None:
        return frozenset(), None
    keeps = walk.hops[-1].state.inner.src == walk.hops[0].state.inner.src
    legs = [walk.service_choice.probabilities]
    if probe.src == EXTERNAL and probe.label.startswith("LoadBalancer"):
        legs = [_ingress_chances(cluster, node, walk.hops[0].state.inner.src, probe)
                for node in announcing_nodes(cluster, probe.dst_ip)]
    by_ip = {str(p.ip): p.name for p in cluster.pods if p.ip is not None}
    pods = frozenset(by_ip[endpoint.rsplit(":", 1)[0]] for chances in legs for endpoint, chance in chances.items()
                     if endpoint is not None and chance > 0 and endpoint.rsplit(":", 1)[0] in by_ip)
    return pods, keeps


def _ingress_chances(cluster: Cluster, node: str, client, probe: Probe) -> dict:
    """Endpoint -> probability for the client's connection arriving on ``node``'s eth0, by the same
    walk through kube-proxy's rules the packet walk does on arrival."""
    from ..datapath.trace import kube_proxy_rules
    from ..kubeproxy.netfilter import Flow

    topology = cluster.topology()
    flow = Flow(client, probe.dst_ip, probe.proto, probe.port, in_interface="eth0")
    result = kube_proxy_rules(cluster, topology, node).walk(flow, local=topology[node].local_addresses())
    return result.probabilities if result.verdict == "ACCEPT" else {}


def random_cluster(seed: int) -> Cluster:
    """A seeded random scenario: 2-5 nodes (in racks or not), 1-4 pods per node, 1-5 Services with
    0-4 endpoints, some NodePort, some externalTrafficPolicy Local, a CNI the lab can build;
    kube-proxy in iptables mode for even seeds, nftables mode for odd ones; with Calico BGP, the
    BGP design (BIRD in every router) or none (routes installed as BIRD would) by the seed."""
    from ..cluster import Cluster

    rng = random.Random(seed)
    cni = rng.choice(LAB_CNIS)
    nodes = rng.randint(2, 5)
    racks = []
    if rng.random() < 0.5:
        racks = [{"name": f"rack-{i + 1}", "subnet": f"192.168.{i + 1}.0/24", "tor": {"name": f"tor-{i + 1}"}}
                 for i in range(2)]
    design = "none"
    if cni == "calico-bgp":
        design = ("none", "full-mesh", "route-reflectors", "per-rack-ebgp")[seed // 2 % 4]
        design = "full-mesh" if design == "per-rack-ebgp" and not racks else design
    cluster = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/16", cni=cni,
                      ipam="calico" if cni.startswith("calico") else "host-local", racks=racks,
                      same_subnet_direct=bool(racks) and cni == "flannel-vxlan" and rng.random() < 0.5,
                      kube_proxy_mode=("iptables", "nftables")[seed % 2], bgp_design=design, name=f"random-{seed}")
    for i in range(nodes):
        cluster.add_node(f"node-{i + 1}", rack=f"rack-{i % 2 + 1}" if racks else None)
    apps = [f"app{i}" for i in range(rng.randint(1, 5))]
    for i in range(nodes):
        for j in range(rng.randint(1, 4)):
            app = rng.choice(apps)
            cluster.add_pod(f"p{i + 1}-{j}", node=f"node-{i + 1}", labels={"app": app}, ports={"http": 8080})
    for app in apps:
        kind = rng.choice(("ClusterIP", "ClusterIP", "NodePort"))
        policy = "Local" if kind == "NodePort" and rng.random() < 0.3 else "Cluster"
        selector = {"app": app} if rng.random() < 0.9 else {"app": "nobody"}  # sometimes no endpoints
        cluster.add_service(f"svc-{app}", selector=selector, type=kind, external_traffic_policy=policy,
                            ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    return cluster
