"""Every probe a scenario implies, answered twice: by the model and by the kernel.

* pod -> pod and pod -> node: the packet walk's verdict and on-wire bytes against ``ping`` and a
  capture (:meth:`~kubenet_lab.kernel.lab.KernelLab.verify`);
* pod -> ClusterIP and node -> NodePort: the walk through kube-proxy's rules gives the endpoints
  the connection may reach (those with a non-zero probability) or none (REJECT); kube-proxy's
  real rules (iptables or nftables mode), loaded in every node, must hand the connection to one
  of them, or to nobody;
* in a BGP-routed scenario, first, each router's routes as BIRD learnt them against the
  simulated fabric's FIB and the tables the walk forwards by
  (:meth:`~kubenet_lab.kernel.lab.KernelLab.route_disagreements`): the probes then travel over
  routes BIRD installed.

:func:`run_check` is what ``kubenet-lab lab check`` runs; :func:`random_cluster` makes the seeded
random scenarios of the differential tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cluster import Cluster

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


def probes(cluster: Cluster) -> list[Probe]:
    """Every pod -> pod, pod -> node, pod -> ClusterIP and node -> NodePort probe of ``cluster``."""
    pods = [p for p in cluster.pods if p.ips and not p.host_network and p.node]
    found = [Probe("walk", a.key, str(b.ip), b.key) for a in pods for b in pods if a is not b]
    found += [Probe("walk", a.key, str(n.ip), n.name) for a in pods for n in cluster.nodes]
    for service in cluster.services:
        ready = frozenset(e.target_pod for s in cluster.endpoint_slices(service) for e in s.endpoints
                          if e.ready and e.address.version == 4 and e.target_pod)
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
    return found


def run_check(cluster: Cluster, *, report: Callable[[str], None] = lambda line: None,
              sample: int | None = None, seed: int = 0) -> tuple[int, int]:
    """Build ``cluster`` in the kernel, ask every probe (or a seeded sample of ``sample``), return (total, agree).

    In a BGP-routed scenario each router's FIB counts as one more probe."""
    from .bird import fib_of
    from .lab import KernelLab

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
                allowed = _walk_endpoints(cluster, probe)
                answer = lab.connect(probe.src, probe.dst_ip, probe.port, probe.proto)
                ok = answer in allowed if allowed else answer is None
                if allowed != probe.allowed:
                    ok = False  # the walk and the EndpointSlices disagree on the endpoints
                    answer = f"{answer} (walk allows {sorted(allowed)}, slices list {sorted(probe.allowed)})"
                expected = f"one of {', '.join(sorted(probe.allowed))}" if probe.allowed else "no answer (no endpoints)"
                line = f"{'agree' if ok else 'DISAGREE'}: model {expected}, kernel {answer or 'no answer'}"
            agree += ok
            where = f"{probe.dst_ip}:{probe.port}/{probe.proto}" if probe.kind == "service" else probe.dst_ip
            report(f"[{number}/{len(chosen)}] {probe.src} -> {probe.label} ({where}): {line}")
    return len(chosen) + len(routers), agree


def _walk_endpoints(cluster: Cluster, probe: Probe) -> frozenset[str]:
    """The pods a Service probe may reach according to the packet walk through kube-proxy's rules."""
    walk = cluster.trace(probe.src, probe.dst_ip, dport=probe.port, proto=probe.proto)
    if walk.outcome != "delivered" or walk.service_choice is None:
        return frozenset()
    by_ip = {str(p.ip): p.name for p in cluster.pods if p.ip is not None}
    return frozenset(by_ip[endpoint.rsplit(":", 1)[0]] for endpoint, chance in walk.service_choice.probabilities.items()
                     if chance > 0 and endpoint.rsplit(":", 1)[0] in by_ip)


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
