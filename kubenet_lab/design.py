"""A design review for a cluster's network: named checks, each PASS or FAIL with its evidence.

Before a network engineer turns up a data centre, the design is reviewed
against its brief: do the address ranges collide with anything, are they
big enough, does the MTU budget close, how many BGP sessions does each router
carry, does every prefix reach every router, and does a packet actually get
through. :func:`check_design` runs that review on a
:class:`~kubenet_lab.network.ClusterNetwork` (or a built
:class:`~kubenet_lab.cluster.Cluster`) against :class:`Requirements`, the
brief's numbers, and returns a :class:`DesignReport`: one line per check.

Every number comes from the component that would decide it on a real cluster:

================  ==============================================================================
check             evidence from
================  ==============================================================================
address-plan      :mod:`ipaddress` overlaps of pod, Service, rack and fabric-link ranges,
                  MetalLB pools and the ranges the brief says are already in use
pod-capacity      kube-controller-manager's :class:`~kubenet_lab.ipam.NodeCIDRAllocator` (podCIDRs
                  per ``--node-cidr-mask-size``) and the CNI's :class:`~kubenet_lab.ipam.HostLocal`
                  (pod IPs per podCIDR), or Calico's :class:`~kubenet_lab.ipam.BlockIPAM` blocks
service-capacity  kube-apiserver's :class:`~kubenet_lab.ipam.ServiceIPAllocator` (ClusterIPs)
rack-capacity     each rack subnet's host addresses, less the ToR's gateway ``.1``
mtu               :mod:`kubenet_lab.overlay.modes` (pod MTU + encapsulation ≤ underlay MTU),
                  then a full-size packet walked across the fabric
asn-plan          the AS numbers :class:`~kubenet_lab.bgp.fabric.Fabric` gives every router:
                  private (RFC 6996), none the brief reserves
bgp-sessions      ``Fabric.sessions()``: the most sessions any one router holds
bgp-routes        every node's prefixes in every router's FIB after convergence
reachability      packet walks (:meth:`Cluster.trace`), pod → pod and pod → ClusterIP
kube-proxy        rules the first packet of a connection is compared with, in kube-proxy's own
                  iptables rules for the brief's number of Services (nftables, IPVS: one lookup)
================  ==============================================================================

Four racks of two nodes, Calico in BGP mode with an AS per rack:

>>> racks = [{"name": f"rack-{i}", "subnet": f"10.10.{i}.0/27", "tor": {"name": f"tor-{i}", "asn": 65010 + i}}
...          for i in range(1, 5)]
>>> network = ClusterNetwork.build("10.64.0.0/16", "10.96.0.0/22", node_mask=24, cni="calico-bgp",
...                                racks=[Rack.from_object(r) for r in racks], bgp_design="per-rack-ebgp")
>>> report = check_design(network, Requirements(nodes=8, pods_per_node=110, services=500))
>>> report.passed
True
>>> print(report.check("bgp-sessions"))
PASS  bgp-sessions      per-rack-ebgp: 12 sessions; the most on one router: 4 (spine), bound 100

A design that ``ClusterNetwork.build`` would refuse outright (two ranges that
overlap) can still be reviewed, to list *every* problem at once: construct the
dataclass directly, ``ClusterNetwork(pod_cidrs=..., service_cidrs=...)``,
which skips ``build``'s checks. Chapter 09 (the capstone) uses this module.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .addresses import IPNetwork, parse_network
from .errors import InvalidValue, KubenetLabError, ScenarioError
from .network import API_VERSION, FABRIC_SUBNET, ClusterNetwork, Rack
from .tables import Table

if TYPE_CHECKING:
    from .bgp.fabric import Fabric
    from .cluster import Cluster

__all__ = ["Requirements", "Check", "DesignReport", "check_design", "sample_cluster", "load",
           "check_address_plan", "check_pod_capacity", "check_service_capacity", "check_rack_capacity",
           "check_mtu", "check_bgp", "check_reachability", "check_kube_proxy", "node_mask_table",
           "iptables_rules_per_packet", "CHECKS",
           "DEFAULT_MAX_PODS", "DEFAULT_MAX_SESSIONS", "DEFAULT_MAX_RULES", "REQUIREMENTS_KIND"]

#: kubelet's default ``--max-pods`` (KubeletConfiguration ``maxPods``).
DEFAULT_MAX_PODS = 110
#: Sessions one router may hold unless the brief says otherwise. Calico's documentation keeps its
#: node-to-node mesh to clusters of about 100 nodes, i.e. about 100 sessions per node (chapter 03 §4).
DEFAULT_MAX_SESSIONS = 100
#: Rules the first packet of a connection may be compared with unless the brief says otherwise: a
#: design bound of this course, not a kernel limit (chapter 04 §10 shows the cost growing with Services).
DEFAULT_MAX_RULES = 1000
#: Pod → pod pairs (and pods → each ClusterIP) walked by the reachability check, chosen with a seed.
DEFAULT_SAMPLE = 24
REQUIREMENTS_KIND = "DesignRequirements"
CHECKS = ("address-plan", "pod-capacity", "service-capacity", "rack-capacity", "mtu", "asn-plan", "bgp-sessions",
          "bgp-routes", "reachability", "kube-proxy")
# A probe pod per node and a Service in front of them: what sample_cluster adds.
PROBE_LABELS = {"app": "probe"}
PROBE_PORT = 80


def _count(obj: str, name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidValue(obj, name, value, f"must be a whole number of at least {minimum}")
    return value


@dataclass(frozen=True)
class Requirements:
    """The brief a design must meet: what the data centre needs, and what is already taken.

    Args:
        nodes: nodes the cluster must hold.
        pods_per_node: pods each node must run (kubelet ``maxPods``, 110 by default).
        services: Services the cluster must hold (each takes a ClusterIP).
        reserved: ``{name: CIDR}`` of ranges already in use elsewhere in the enterprise.
        allocation: the block every range of the design must come from (e.g. ``10.0.0.0/8``), or None.
        pod_mtu: the MTU the workloads need inside pods, or None.
        reserved_asns: AS numbers already in use (the WAN, the campus core...).
        max_sessions_per_router: the most BGP sessions one router may hold.
        max_rules_per_packet: the most kube-proxy rules one new connection may be compared with.
        sample: pod pairs the reachability check walks.
    """

    nodes: int
    pods_per_node: int = DEFAULT_MAX_PODS
    services: int = 0
    reserved: Mapping[str, IPNetwork] = field(default_factory=dict)
    allocation: IPNetwork | None = None
    pod_mtu: int | None = None
    reserved_asns: tuple[int, ...] = ()
    max_sessions_per_router: int = DEFAULT_MAX_SESSIONS
    max_rules_per_packet: int = DEFAULT_MAX_RULES
    sample: int = DEFAULT_SAMPLE

    def __post_init__(self) -> None:
        obj = "Requirements"
        _count(obj, "nodes", self.nodes, 1)
        _count(obj, "pods_per_node", self.pods_per_node, 1)
        _count(obj, "services", self.services)
        _count(obj, "max_sessions_per_router", self.max_sessions_per_router, 1)
        _count(obj, "max_rules_per_packet", self.max_rules_per_packet, 1)
        _count(obj, "sample", self.sample, 1)
        if self.pod_mtu is not None:
            _count(obj, "pod_mtu", self.pod_mtu, 68)
        if not isinstance(self.reserved, Mapping):
            raise InvalidValue(obj, "reserved", self.reserved, "must map names to CIDRs")
        reserved = {str(k): parse_network(v, obj=obj, field=f"reserved.{k}") for k, v in self.reserved.items()}
        object.__setattr__(self, "reserved", reserved)
        if self.allocation is not None:
            object.__setattr__(self, "allocation", parse_network(self.allocation, obj=obj, field="allocation"))
        object.__setattr__(self, "reserved_asns", tuple(_count(obj, "reserved_asns[]", a, 1)
                                                        for a in self.reserved_asns))

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Requirements:
        """Read a ``kubenet-lab.io/v1alpha1 DesignRequirements`` object (scenario readers ignore it).

        ``spec``: ``nodes``, ``podsPerNode``, ``services``, ``reserved: [{name, cidr}]``,
        ``allocation``, ``podMTU``, ``reservedASNs``, ``maxSessionsPerRouter``,
        ``maxRulesPerPacket``, ``sample``.
        """
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name", "?")
        if "nodes" not in spec:
            raise ScenarioError(f"{REQUIREMENTS_KIND} {name}", "spec.nodes", None, "must be set")
        reserved = spec.get("reserved") or []
        if not isinstance(reserved, list) or not all(isinstance(r, Mapping) and "name" in r and "cidr" in r
                                                     for r in reserved):
            raise ScenarioError(f"{REQUIREMENTS_KIND} {name}", "spec.reserved", reserved, "must be a list of {name, cidr}")
        return cls(nodes=spec["nodes"], pods_per_node=spec.get("podsPerNode", DEFAULT_MAX_PODS),
                   services=spec.get("services", 0), reserved={r["name"]: r["cidr"] for r in reserved},
                   allocation=spec.get("allocation"), pod_mtu=spec.get("podMTU"),
                   reserved_asns=tuple(spec.get("reservedASNs") or ()),
                   max_sessions_per_router=spec.get("maxSessionsPerRouter", DEFAULT_MAX_SESSIONS),
                   max_rules_per_packet=spec.get("maxRulesPerPacket", DEFAULT_MAX_RULES),
                   sample=spec.get("sample", DEFAULT_SAMPLE))

    @classmethod
    def observed(cls, cluster: Cluster) -> Requirements:
        """What a built cluster asks of its design: its own nodes and Services, kubelet's default maxPods."""
        return cls(nodes=max(1, len(cluster.nodes)), services=len(cluster.services))


@dataclass(frozen=True)
class Check:
    """One named check: passed or not, and the evidence in one line."""

    name: str
    passed: bool
    evidence: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<16}  {self.evidence}"


@dataclass(frozen=True)
class DesignReport:
    """The review: one :class:`Check` per line, in :data:`CHECKS` order."""

    title: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    def check(self, name: str) -> Check:
        """The check called ``name`` (one of :data:`CHECKS`)."""
        found = next((c for c in self.checks if c.name == name), None)
        if found is None:
            raise InvalidValue(f"DesignReport {self.title}", "check", name, "must be one of " + ", ".join(CHECKS))
        return found

    def table(self) -> Table:
        return Table(self.title, ("CHECK", "RESULT", "EVIDENCE"),
                     tuple((c.name, "PASS" if c.passed else "FAIL", c.evidence) for c in self.checks))

    def __str__(self) -> str:
        verdict = "design passes" if self.passed else f"{len(self.failed)} check(s) fail: {', '.join(self.failed)}"
        return "\n".join([f"{self.title}: {verdict}", *map(str, self.checks)])

    def _repr_html_(self) -> str:
        return self.table().html()


# -- the address plan ------------------------------------------------------------------------


def design_ranges(network: ClusterNetwork) -> list[tuple[str, IPNetwork]]:
    """Every range the design occupies, named as a reviewer would name it."""
    named = [("podCIDRs", c) for c in network.pod_cidrs] + [("serviceCIDRs", c) for c in network.service_cidrs]
    if network.racks:
        named += [(f"rack {r.name}", r.subnet) for r in network.racks]
        named.append(("fabric links", ipaddress.ip_network(FABRIC_SUBNET)))
    else:
        named.append(("node subnet", network.segment_subnet))
    for pool in network.load_balancer_pools:
        for first, last in pool.ranges:
            named += [(f"pool {pool.name}", n) for n in ipaddress.summarize_address_range(first, last)]
    return named


def check_address_plan(network: ClusterNetwork, requirements: Requirements) -> Check:
    """No two ranges of the design overlap, none overlaps a reserved range, all lie in the allocation.

    The fabric links (``FABRIC_SUBNET``, the ToR-spine /31s) are the package's fixed choice, so they
    must stay clear of everything but need not come from the allocation.
    """
    named = design_ranges(network)
    problems = []
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1:]:
            if name_a != name_b and a.version == b.version and a.overlaps(b):
                problems.append(f"{name_a} {a} overlaps {name_b} {b}")
        for name_r, r in requirements.reserved.items():
            if a.version == r.version and a.overlaps(r):
                problems.append(f"{name_a} {a} overlaps {name_r} {r} (in use)")
        allocation = requirements.allocation
        if (allocation is not None and name_a != "fabric links" and a.version == allocation.version
                and not a.subnet_of(allocation)):
            problems.append(f"{name_a} {a} is outside the allocation {allocation}")
    if problems:
        return Check("address-plan", False, "; ".join(dict.fromkeys(problems)))
    return Check("address-plan", True, f"{len(named)} ranges disjoint, clear of {len(requirements.reserved)} "
                                       "reserved ranges" + (f", inside {requirements.allocation}"
                                                            if requirements.allocation else ""))


def _host_local_capacity(cluster_cidr: IPNetwork, node_mask: int) -> tuple[int, int]:
    """(podCIDRs kube-controller-manager's :class:`~kubenet_lab.ipam.NodeCIDRAllocator` cuts from
    ``cluster_cidr`` at ``node_mask``, pod IPs the CNI's :class:`~kubenet_lab.ipam.HostLocal` hands
    out in one of them)."""
    from .ipam import HostLocal, NodeCIDRAllocator

    allocator = NodeCIDRAllocator(cluster_cidr, node_mask)
    return allocator.size, HostLocal(allocator.cidr_at(0)).size


def check_pod_capacity(network: ClusterNetwork, requirements: Requirements) -> Check:
    """Enough podCIDRs for the nodes, and enough pod IPs in each for the pods per node.

    host-local IPAM: kube-controller-manager cuts ``2^(node mask − cluster prefix)`` podCIDRs; the
    CNI's host-local plugin hands out every address of one but the network, the gateway ``.1`` and
    (IPv4) the broadcast: a /24 gives 253 pods. Calico IPAM: the pool holds ``2^(blockSize −
    prefix)`` blocks, a node needs ⌈pods / block addresses⌉ of them, at most ``maxBlocksPerHost``.
    """
    from .ipam import BlockIPAM

    nodes, pods = requirements.nodes, requirements.pods_per_node
    parts, ok = [], True
    for cidr in network.pod_cidrs:
        try:
            if network.ipam == "host-local":
                mask = network.node_mask(cidr.version)
                pod_cidrs, per_node = _host_local_capacity(cidr, mask)
                fits = pod_cidrs >= nodes and per_node >= pods
                parts.append(f"{cidr} at /{mask}: {pod_cidrs} podCIDRs for {nodes} nodes, "
                             f"{per_node} pod IPs each for {pods} pods")
            else:
                ipam = BlockIPAM(cidr)
                block = 1 << (cidr.max_prefixlen - ipam.block_size)
                blocks, needed = ipam.size // block, math.ceil(pods / block)
                fits = blocks >= nodes * needed and needed <= ipam.max_blocks_per_host
                parts.append(f"{cidr} in /{ipam.block_size} blocks: {blocks} blocks for {nodes} nodes × {needed} "
                             f"(⌈{pods}/{block}⌉, at most {ipam.max_blocks_per_host} per node)")
        except KubenetLabError as exc:
            fits = False
            parts.append(str(exc))
        ok = ok and fits
    return Check("pod-capacity", ok, "; ".join(parts))


def node_mask_table(cluster_cidr: object, requirements: Requirements, masks: range | None = None) -> Table:
    """The node-mask trade-off of one cluster CIDR (host-local IPAM): for each ``--node-cidr-mask-size``,
    the podCIDRs kube-controller-manager can hand out (nodes), the pod IPs host-local gives each, and
    whether ``requirements`` (nodes × pods per node) fit. ``masks`` defaults to the cluster's prefix
    and the eight lengths after it (at most /30).

    >>> print(node_mask_table("10.64.0.0/16", Requirements(nodes=64), range(24, 27)).text())
    10.64.0.0/16 cut at each node mask, for 64 nodes of 110 pods
    NODE MASK  NODES (podCIDRs)  PODS PER NODE  FITS
    /24        256               253            yes
    /25        512               125            yes
    /26        1,024             61             no
    """
    cidr = parse_network(cluster_cidr, obj="node_mask_table", field="cluster_cidr")
    if masks is None:
        masks = range(cidr.prefixlen, min(cidr.prefixlen + 9, cidr.max_prefixlen - 1))
    rows = []
    for mask in masks:
        pod_cidrs, pods = _host_local_capacity(cidr, mask)
        fits = pod_cidrs >= requirements.nodes and pods >= requirements.pods_per_node
        rows.append((f"/{mask}", f"{pod_cidrs:,}", f"{pods:,}", "yes" if fits else "no"))
    return Table(f"{cidr} cut at each node mask, for {requirements.nodes} nodes of {requirements.pods_per_node} pods",
                 ("NODE MASK", "NODES (podCIDRs)", "PODS PER NODE", "FITS"), tuple(rows))


def check_service_capacity(network: ClusterNetwork, requirements: Requirements) -> Check:
    """Enough ClusterIPs: kube-apiserver's allocator hands out 2^h − 2 (IPv4) or 2^h − 1 (IPv6)."""
    from .ipam import ServiceIPAllocator

    parts, ok = [], True
    for cidr in network.service_cidrs:
        try:
            size = ServiceIPAllocator(cidr).size
            ok = ok and size >= requirements.services
            parts.append(f"{cidr}: {size} ClusterIPs for {requirements.services} Services")
        except KubenetLabError as exc:
            ok = False
            parts.append(str(exc))
    return Check("service-capacity", ok, "; ".join(parts))


def nodes_per_rack(network: ClusterNetwork, requirements: Requirements) -> dict[str, int]:
    """The nodes each rack must hold: those it names, else the brief's nodes spread evenly."""
    if not network.racks:
        return {}
    spread = math.ceil(requirements.nodes / len(network.racks))
    return {r.name: len(r.nodes) or spread for r in network.racks}


def check_rack_capacity(network: ClusterNetwork, requirements: Requirements) -> Check:
    """Each rack subnet has a host address for the ToR's gateway ``.1`` and one per node."""
    if not network.racks:
        subnet = network.segment_subnet
        hosts = subnet.num_addresses - 2 - 1
        return Check("rack-capacity", hosts >= requirements.nodes,
                     f"one segment {subnet}: {hosts} host addresses besides the gateway for {requirements.nodes} nodes")
    parts, ok = [], True
    needs = nodes_per_rack(network, requirements)
    for rack in network.racks:
        need = needs[rack.name]
        hosts = rack.subnet.num_addresses - 2 - 1
        ok = ok and hosts >= need
        parts.append(f"{rack.name} {rack.subnet}: {hosts} for {need}")
    return Check("rack-capacity", ok, "host addresses besides the ToR's .1: " + ", ".join(parts))


# -- the datapath ----------------------------------------------------------------------------


def check_mtu(network: ClusterNetwork, requirements: Requirements, cluster: Cluster | None = None) -> Check:
    """Pod MTU + the encapsulation's overhead ≤ the underlay MTU, for the pods and the tunnel device;
    the pods get what the workloads need; and (with a cluster) a full-size packet crosses the fabric."""
    from .overlay.modes import IPV4_MIN_MTU

    mode = network.datapath
    overhead = mode.overhead(4)
    what = f"{mode.encapsulation.upper()} overhead {overhead}" if mode.encapsulation else "no encapsulation (0)"
    pod, tunnel = network.pod_mtu, network.tunnel_device_mtu
    problems = []
    if pod + overhead > network.mtu:
        problems.append(f"pod MTU {pod} + {what} = {pod + overhead} > underlay {network.mtu}")
    if mode.encapsulation and not mode.flow_based and tunnel + overhead > network.mtu:
        problems.append(f"tunnel device MTU {tunnel} + {what} = {tunnel + overhead} > underlay {network.mtu}")
    if pod < IPV4_MIN_MTU:
        problems.append(f"pod MTU {pod} < IPv4's minimum {IPV4_MIN_MTU}")
    if requirements.pod_mtu is not None and pod < requirements.pod_mtu:
        problems.append(f"pods get {pod}, the workloads need {requirements.pod_mtu}")
    evidence = f"{network.cni}: pod MTU {pod} + {what} = {pod + overhead} ≤ underlay {network.mtu}"
    if requirements.pod_mtu is not None:
        evidence += f"; workloads need {requirements.pod_mtu}"
    if cluster is not None:
        pair = _far_pair(cluster)
        if pair is not None:
            size = max(pod, requirements.pod_mtu or 0)
            try:
                walk = cluster.trace(pair[0], pair[1], size=size)
            except KubenetLabError as exc:
                return Check("mtu", False, "; ".join([*problems, f"the packet walk cannot run: {exc}"]))
            evidence += f"; a {size}-byte packet {pair[0]} → {pair[1]} with DF: {walk.outcome}"
            if walk.outcome != "delivered":
                problems.append(f"a {size}-byte packet {pair[0]} → {pair[1]} with DF is {walk.outcome}: {walk.reason}")
    return Check("mtu", not problems, "; ".join(problems) if problems else evidence)


def _probe_pods(cluster: Cluster) -> list:
    return [p for p in cluster.pods if p.ips and not p.host_network]


def _far_pair(cluster: Cluster) -> tuple[str, str] | None:
    """Two pods on different nodes, in different racks when there are racks (the longest path)."""
    pods = _probe_pods(cluster)
    rack = {n.name: n.rack for n in cluster.nodes}
    for a in pods:
        for b in reversed(pods):
            if a.node != b.node and (rack[a.node] != rack[b.node] or not cluster.network.racks):
                return a.key, b.key
    return None


def check_reachability(cluster: Cluster, requirements: Requirements, seed: int = 0) -> Check:
    """Walk a seeded sample of pod → pod pairs on different nodes, and each sampled pod to every ClusterIP."""
    pods = _probe_pods(cluster)
    pairs = [(a.key, b.key) for a in pods for b in pods if a.node != b.node]
    if not pairs:
        return Check("reachability", False, "no two pods on different nodes to walk between")
    rng = random.Random(seed)
    chosen = rng.sample(pairs, min(requirements.sample, len(pairs)))
    try:
        walks = [(src, dst, cluster.trace(src, dst)) for src, dst in chosen]
    except KubenetLabError as exc:
        return Check("reachability", False, f"the packet walk cannot run: {exc}")
    sources = sorted({src for src, _ in chosen})[: max(1, requirements.sample // 4)]
    services = [s for s in cluster.services if s.cluster_ips and s.ports]
    note = ""
    try:
        walks += [(src, s.key, cluster.trace(src, s.key, proto=s.ports[0].protocol.lower(), dport=s.ports[0].port))
                  for s in services for src in sources]
    except KubenetLabError as exc:
        # A Service datapath the walk does not model (IPVS, Cilium's eBPF) is a gap of the
        # simulator, not of the design: say so, and judge the pod-to-pod walks alone.
        note = f"; pod → ClusterIP not walked: {exc}"
    failed = [(src, dst, w) for src, dst, w in walks if w.outcome != "delivered"]
    to_pods, to_services = len(chosen), len(walks) - len(chosen)
    evidence = (f"{len(walks) - len(failed)} of {len(walks)} walks delivered ({to_pods} pod → pod of {len(pairs)} "
                f"pairs, {to_services} pod → ClusterIP){note}")
    if failed:
        src, dst, walk = failed[0]
        evidence += f"; first failure {src} → {dst}: {walk.outcome}, {walk.reason}"
    return Check("reachability", not failed, evidence)


# -- BGP ---------------------------------------------------------------------------------------


def check_bgp(cluster: Cluster, requirements: Requirements) -> tuple[Check, Check, Check]:
    """The asn-plan, bgp-sessions and bgp-routes checks, from one converged :class:`Fabric`."""
    from .bgp.fabric import Fabric

    design = cluster.network.bgp_design
    if design == "none":
        why = f"no BGP design: {cluster.network.cni} carries pod traffic, the fabric routes only the node subnets"
        return Check("asn-plan", True, why), Check("bgp-sessions", True, why), Check("bgp-routes", True, why)
    try:
        fabric = Fabric.from_cluster(cluster)
    except KubenetLabError as exc:
        failure = Check("asn-plan", False, str(exc))
        return failure, Check("bgp-sessions", False, "no fabric: " + failure.evidence), \
            Check("bgp-routes", False, "no fabric: " + failure.evidence)
    return _asn_plan(fabric, requirements), _sessions(fabric, design, requirements), _routes(fabric, cluster)


def _asn_plan(fabric: Fabric, requirements: Requirements) -> Check:
    by_asn: dict[int, list[str]] = {}
    for name, speaker in fabric.speakers.items():
        by_asn.setdefault(speaker.asn, []).append(name)
    taken = [f"AS {asn} ({', '.join(by_asn[asn][:3])}) is reserved" for asn in sorted(by_asn)
             if asn in requirements.reserved_asns]
    plan = ", ".join(f"{asn}: {names[0]}" + (f" +{len(names) - 1}" if len(names) > 1 else "")
                     for asn, names in sorted(by_asn.items()))
    return Check("asn-plan", not taken, "; ".join(taken) if taken else f"{len(by_asn)} private ASes, none reserved "
                                                                      f"({plan})")


def _sessions(fabric: Fabric, design: str, requirements: Requirements) -> Check:
    held = {name: len(speaker.peers) for name, speaker in fabric.speakers.items()}
    busiest = max(held, key=lambda n: (held[n], n))
    bound = requirements.max_sessions_per_router
    evidence = (f"{design}: {fabric.session_count} sessions; the most on one router: {held[busiest]} ({busiest}), "
                f"bound {bound}")
    return Check("bgp-sessions", held[busiest] <= bound, evidence)


def _routes(fabric: Fabric, cluster: Cluster) -> Check:
    """Every node prefix in every other router's FIB, or in the FIB of the router its default route
    points at (a rack-mate's prefix that eBGP's loop check dropped turns round at the ToR)."""
    fabric.converge()
    fibs = {name: {entry.prefix for entry in fabric.fib(name)} for name in fabric.speakers}
    owner_of = {speaker.router_id: name for name, speaker in fabric.speakers.items()}
    nodes = [n.name for n in cluster.nodes]
    missing, via_default, total = [], 0, 0
    for node in nodes:
        for prefix in fabric.speaker(node).originated:
            for router, speaker in fabric.speakers.items():
                if router == node:
                    continue
                total += 1
                if prefix in fibs[router]:
                    continue
                gateway = owner_of.get(speaker.gateway[0]) if speaker.gateway else None
                if gateway is not None and prefix in fibs[gateway] | set(fabric.speaker(gateway).originated):
                    via_default += 1
                else:
                    missing.append(f"{prefix} of {node} at {router}")
    evidence = (f"{total - len(missing)} of {total} (router, node prefix) pairs routed after convergence"
                + (f", {via_default} through the default route to the ToR" if via_default else ""))
    if missing:
        evidence += f"; missing: {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return Check("bgp-routes", not missing, evidence)


# -- kube-proxy ----------------------------------------------------------------------------------


def iptables_rules_per_packet(network: ClusterNetwork, services: int) -> tuple[int, int]:
    """(rules in the ruleset, rules evaluated) for a pod's first packet to the last of ``services``
    one-port Services with one endpoint each, in kube-proxy's iptables mode on one node.

    The rules are kube-proxy's own (:func:`~kubenet_lab.kubeproxy.iptables_restore`), walked with
    :meth:`~kubenet_lab.kubeproxy.Ruleset.walk`; ClusterIPs are taken in order from the design's
    Service CIDR (round again if it is too small: the count does not depend on the addresses).
    """
    from .kubeproxy import Flow, ProxierSettings, Ruleset, iptables_restore
    from .objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort

    vips, pods = network.service_cidrs[0], network.pod_cidrs[0]
    subnets = network.underlay_subnets() or (network.segment_subnet,)
    node_ip = subnets[0].network_address + 2
    usable = max(1, vips.num_addresses - 2)
    settings = ProxierSettings("node-1", node_ips=[str(node_ip)], cluster_cidrs=[str(c) for c in network.pod_cidrs])
    objects, slices = [], []
    for i in range(max(1, services)):
        name = f"svc-{i}"
        vip = vips.network_address + 1 + i % usable
        objects.append(Service(name=name, namespace="default", ports=(ServicePort(PROBE_PORT, 8080, name="http"),),
                               cluster_ips=(vip,)))
        slices.append(EndpointSlice(name=f"{name}-abcde", service=name, address_type=f"IPv{vips.version}",
                                    endpoints=(Endpoint((pods.network_address + 2 + i % 250,)),),
                                    ports=(EndpointPort(8080, name="http"),)))
    rules = Ruleset.parse(iptables_restore(objects, slices, settings))
    client = pods.network_address + 3
    walk = rules.walk(Flow(client, objects[-1].cluster_ips[0], "tcp", PROBE_PORT, in_interface="cni0"),
                      local=[node_ip])
    return len(rules), walk.evaluated


def check_kube_proxy(network: ClusterNetwork, requirements: Requirements) -> Check:
    """iptables mode compares a connection's first packet with one rule per Service port
    (``KUBE-SERVICES`` is a list); nftables (a verdict map) and IPVS (its service table) look the
    Service up in one step, whatever the count."""
    mode, services = network.kube_proxy_mode, requirements.services
    if mode != "iptables":
        lookup = "the service-ips verdict map" if mode == "nftables" else "the IPVS service table"
        return Check("kube-proxy", True, f"{mode}: one lookup in {lookup} for {services} Services")
    total, evaluated = iptables_rules_per_packet(network, services)
    bound = requirements.max_rules_per_packet
    return Check("kube-proxy", evaluated <= bound,
                 f"iptables, {services} Services: {total} rules; a first packet to the last Service is compared "
                 f"with {evaluated} ({'≤' if evaluated <= bound else '>'} bound {bound})")


# -- the whole review -----------------------------------------------------------------------------


def sample_cluster(network: ClusterNetwork, requirements: Requirements) -> Cluster:
    """The design built: the brief's nodes spread over the racks, a probe pod on each, a Service in front.

    Nodes are named ``<rack>-node-<i>`` (or ``node-<i>`` on one segment) and take the rack's
    addresses from ``.2`` (``.1`` is the ToR). Raises what the allocators raise when the design
    cannot hold them.
    """
    from .cluster import Cluster

    cluster = Cluster.from_network(network)
    if network.racks:
        placement = [(rack, f"{rack.name}-node-{i + 1}" if not rack.nodes else rack.nodes[i], i)
                     for rack, count in zip(network.racks, nodes_per_rack(network, requirements).values())
                     for i in range(count)]
    else:
        placement = [(None, f"node-{i + 1}", i) for i in range(requirements.nodes)]
    for rack, name, i in placement:
        subnet = rack.subnet if rack else network.segment_subnet
        ip = subnet.network_address + 2 + i
        if ip >= subnet.broadcast_address:
            raise InvalidValue(f"Node {name}", "ip", str(ip), f"must be a host address of {subnet}")
        cluster.add_node(name, ip=str(ip), rack=rack.name if rack else None)
        cluster.add_pod(f"probe-{name}", node=name, labels=PROBE_LABELS)
    cluster.add_service("probe", selector=PROBE_LABELS, port=PROBE_PORT)
    return cluster


def check_design(design: ClusterNetwork | Cluster, requirements: Requirements | None = None, *,
                 title: str | None = None, seed: int = 0) -> DesignReport:
    """Run every check of :data:`CHECKS` and return the report.

    ``design`` is a :class:`ClusterNetwork` (the cluster is then built with :func:`sample_cluster`)
    or a :class:`Cluster` with its own nodes and pods. Without ``requirements``, a cluster is held
    to its own size (:meth:`Requirements.observed`).
    """
    from .cluster import Cluster

    if isinstance(design, Cluster):
        network, cluster = design.network, design
        requirements = requirements or Requirements.observed(design)
    elif isinstance(design, ClusterNetwork):
        network, cluster = design, None
        if requirements is None:
            raise InvalidValue("check_design", "requirements", None, "must be given for a ClusterNetwork")
    else:
        raise InvalidValue("check_design", "design", type(design).__name__, "must be a ClusterNetwork or a Cluster")
    checks = [check_address_plan(network, requirements), check_pod_capacity(network, requirements),
              check_service_capacity(network, requirements), check_rack_capacity(network, requirements)]
    built_error = None
    if cluster is None:
        try:
            cluster = sample_cluster(network, requirements)
        except KubenetLabError as exc:
            built_error = f"the design cannot be built: {exc}"
    checks.append(check_mtu(network, requirements, cluster))
    if cluster is None:
        checks += [Check(name, False, built_error) for name in ("asn-plan", "bgp-sessions", "bgp-routes",
                                                                "reachability")]
    else:
        checks += [*check_bgp(cluster, requirements), check_reachability(cluster, requirements, seed)]
    checks.append(check_kube_proxy(network, requirements))
    return DesignReport(title or f"Design review of {network.name}", tuple(checks))


def load(path: str | Path) -> tuple[Cluster | ClusterNetwork, Requirements]:
    """Read a scenario for review: the cluster (or, without nodes, its ClusterNetwork) and its
    ``DesignRequirements`` object (or :meth:`Requirements.observed`, when it has none)."""
    from .scenario import cluster_from_objects, read_objects

    objects = read_objects(path)
    cluster = cluster_from_objects(objects)
    found = [o for o in objects if o.get("kind") == REQUIREMENTS_KIND and o.get("apiVersion") == API_VERSION]
    if len(found) > 1:
        raise ScenarioError(str(path), f"kind: {REQUIREMENTS_KIND}", len(found), "must appear at most once")
    requirements = Requirements.from_object(found[0]) if found else Requirements.observed(cluster)
    return (cluster if cluster.nodes else cluster.network), requirements

