"""Checkers for chapter 09, the capstone: "Design a data centre's cluster network".

Each checker puts the learner's piece of the design into the brief's data
centre (:data:`RACK_SUBNETS`, :data:`REQUIREMENTS`, the same as
``scenarios/capstone-datacentre.yaml``) and runs the design review's own check
on it (:mod:`kubenet_lab.design`); the hint quotes the review's evidence. No
answer is stored: a piece passes when the review passes it.

>>> check_kube_proxy_mode("iptables")
Traceback (most recent call last):
...
AssertionError: 09.5: not yet. With one rule per Service in KUBE-SERVICES, a new connection's first packet is compared with 2514 rules (> bound 1000). Which modes find the Service in one lookup?
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_network

from ..design import (Requirements, check_address_plan, check_bgp, check_design, check_kube_proxy, check_mtu,
                      check_pod_capacity, check_service_capacity, iptables_rules_per_packet, sample_cluster)
from ..errors import KubenetLabError
from ..network import API_VERSION, CNI_MODES, KIND, KUBE_PROXY_MODES, ClusterNetwork, Rack
from . import passed, require

__all__ = ["REQUIREMENTS", "RACK_SUBNETS", "UNDERLAY_MTU", "DRAFT", "racks", "design_network", "review",
           "check_pod_plan", "check_service_cidr", "check_cni", "check_bgp_plan", "check_kube_proxy_mode",
           "check_capstone"]

#: The brief (scenarios/capstone-datacentre.yaml's DesignRequirements).
REQUIREMENTS = Requirements(
    nodes=64, pods_per_node=110, services=2500, pod_mtu=1500, allocation="10.0.0.0/8",
    reserved={"campus and WAN": "10.0.0.0/12", "legacy data centre": "10.16.0.0/14",
              "VPN client pools": "10.96.0.0/11", "branch offices": "10.240.0.0/12"},
    reserved_asns=(65000, 65001, 65002, 65003, 65004), max_sessions_per_router=32, max_rules_per_packet=1000)
#: The data centre team's rack subnets, one ToR each; the ToRs' AS numbers are the learner's to choose.
RACK_SUBNETS = {f"rack-{i}": f"10.20.{i}.0/26" for i in range(1, 5)}
UNDERLAY_MTU = 1500
# The MTU check walks a full-size packet across a smaller build of the data centre (two nodes a rack).
SMALL = Requirements(nodes=8, pod_mtu=REQUIREMENTS.pod_mtu)


def racks(tor_asns: Mapping[str, int] | None = None) -> list[dict]:
    """The brief's racks in scenario spelling, each ToR with its AS from ``tor_asns`` (by rack) if given."""
    out = []
    for i, (name, subnet) in enumerate(RACK_SUBNETS.items(), start=1):
        tor = {"name": f"tor-{i}"}
        if tor_asns and name in tor_asns:
            tor["asn"] = tor_asns[name]
        out.append({"name": name, "subnet": subnet, "tor": tor})
    return out


#: The scenario's draft design (kubeadm's and Calico's defaults, a full mesh); checkers take from it the
#: pieces they do not grade.
DRAFT = {"podCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/12"], "nodeCIDRMaskSize": 26,
         "cni": "calico-bgp", "ipam": "host-local", "kubeProxy": {"mode": "iptables"},
         "underlay": {"mtu": UNDERLAY_MTU, "racks": racks({f"rack-{i}": 65000 + i for i in range(1, 5)})},
         "bgp": {"design": "full-mesh", "asn": 64512}}


def design_network(spec: Mapping, *, name: str = "capstone") -> ClusterNetwork:
    """A ClusterNetwork from a spec in scenario spelling; ``underlay`` defaults to the brief's racks and MTU."""
    spec = {"underlay": {"mtu": UNDERLAY_MTU, "racks": racks()}, **spec}
    return ClusterNetwork.from_object({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                                       "spec": spec})


def review(spec: object):
    """The full design review of a capstone spec, or a line saying why there is none yet."""
    if not isinstance(spec, Mapping):
        return f"No design to review yet (got {spec!r}): answer the exercises above first."
    try:
        return check_design(design_network(spec), REQUIREMENTS, title="Design review of the capstone")
    except KubenetLabError as exc:
        return f"The design cannot be built: {exc}"


def _brief_racks() -> tuple[Rack, ...]:
    return tuple(Rack.from_object(r) for r in racks())


def _one_ipv4(exercise: str, value: object, what: str):
    require(exercise, isinstance(value, str), f"Give {what} as a string such as '10.1.0.0/16', not {value!r}.")
    try:
        cidr = ip_network(value)
    except ValueError:
        cidr = None
    require(exercise, cidr is not None and cidr.version == 4, f"{value!r} is not an IPv4 CIDR with no host bits set.")
    return cidr


def check_pod_plan(answer: object) -> None:
    """09.1: ``{"podCIDRs": [cidr], "nodeCIDRMaskSize": n}`` clear of the reserved ranges, room for 64 × 110."""
    require("09.1", isinstance(answer, Mapping) and isinstance(answer.get("podCIDRs"), list)
            and len(answer["podCIDRs"]) == 1 and "nodeCIDRMaskSize" in answer,
            f"Give a dict like {{'podCIDRs': ['10.x.0.0/16'], 'nodeCIDRMaskSize': 24}}, not {answer!r}.")
    cidr = _one_ipv4("09.1", answer["podCIDRs"][0], "the pod CIDR")
    mask = answer["nodeCIDRMaskSize"]
    require("09.1", isinstance(mask, int) and not isinstance(mask, bool) and cidr.prefixlen <= mask <= 30,
            f"nodeCIDRMaskSize must be a prefix length from /{cidr.prefixlen} to /30, not {mask!r}.")
    # Only the pod ranges: the Service CIDR is exercise 09.2's.
    pods_only = ClusterNetwork(pod_cidrs=(cidr,), service_cidrs=(), node_cidr_mask_size=mask, racks=_brief_racks())
    plan = check_address_plan(pods_only, REQUIREMENTS)
    require("09.1", plan.passed, f"The pod CIDR must come from 10.0.0.0/8 and avoid what is in use. The review says: "
                                 f"{plan.evidence}")
    capacity = check_pod_capacity(pods_only, REQUIREMENTS)
    require("09.1", capacity.passed,
            "A node's podCIDR must hold 110 pods besides network, gateway and broadcast, and the cluster CIDR one "
            f"podCIDR per node. The review says: {capacity.evidence}")
    passed("09.1", "a pod CIDR and node mask for 64 nodes of 110 pods")


def check_service_cidr(answer: object) -> None:
    """09.2: one Service CIDR clear of the reserved ranges, with a ClusterIP for each of 2,500 Services."""
    cidr = _one_ipv4("09.2", answer, "the Service CIDR")
    services_only = ClusterNetwork(pod_cidrs=(), service_cidrs=(cidr,), racks=_brief_racks())
    plan = check_address_plan(services_only, REQUIREMENTS)
    require("09.2", plan.passed, f"kubeadm's default 10.96.0.0/12 is taken here; pick a free range. The review says: "
                                 f"{plan.evidence}")
    capacity = check_service_capacity(services_only, REQUIREMENTS)
    require("09.2", capacity.passed,
            f"An IPv4 Service CIDR of 2^h addresses holds 2^h − 2 ClusterIPs. The review says: {capacity.evidence}")
    passed("09.2", "a Service CIDR for 2,500 Services")


def check_cni(answer: object) -> None:
    """09.3: a CNI whose pods get the 1500 bytes the workloads need on a 1500-byte underlay."""
    require("09.3", answer in CNI_MODES, f"Give one of {', '.join(CNI_MODES)}, not {answer!r}.")
    spec = {**DRAFT, "cni": answer, "ipam": "calico" if answer.startswith("calico") else "host-local",
            "bgp": {"design": "none"}}
    network = design_network(spec)
    mtu = check_mtu(network, SMALL, sample_cluster(network, SMALL))
    require("09.3", mtu.passed, "Every tunnel takes its headers out of the underlay's 1500 bytes, and there are no "
                                f"jumbo frames here. The review says: {mtu.evidence}")
    passed("09.3", "no encapsulation: pods keep the underlay's 1500 bytes")


def check_bgp_plan(answer: object) -> None:
    """09.4: ``{"design", "asn", "torASNs": {rack: AS}}``: sessions within the ToRs' bound, private AS
    numbers none of which is in use, and every node prefix in every router's FIB."""
    require("09.4", isinstance(answer, Mapping) and {"design", "asn", "torASNs"} <= set(answer)
            and isinstance(answer["torASNs"], Mapping),
            f"Give a dict like {{'design': ..., 'asn': ..., 'torASNs': {{'rack-1': ..., ...}}}}, not {answer!r}.")
    require("09.4", answer["design"] in ("full-mesh", "route-reflectors", "per-rack-ebgp"),
            f"design must be full-mesh, route-reflectors or per-rack-ebgp, not {answer['design']!r}.")
    spec = {**DRAFT, "nodeCIDRMaskSize": 24, "bgp": {"design": answer["design"], "asn": answer["asn"]},
            "underlay": {"mtu": UNDERLAY_MTU, "racks": racks(answer["torASNs"])}}
    try:
        cluster = sample_cluster(design_network(spec), REQUIREMENTS)
    except KubenetLabError as exc:
        raise AssertionError(f"09.4: not yet. The design cannot be built: {exc}") from None
    asn_plan, sessions, routes = check_bgp(cluster, REQUIREMENTS)
    require("09.4", sessions.passed or answer["design"] == "per-rack-ebgp",
            f"A router may hold at most 32 sessions. The review says: {sessions.evidence}. Which design keeps "
            "every router's sessions local to its rack?")
    require("09.4", asn_plan.passed, "Pick private AS numbers (64512-65534, RFC 6996), a different one per ToR, "
                                     f"none in use and none the nodes use. The review says: {asn_plan.evidence}")
    require("09.4", sessions.passed, f"The review says: {sessions.evidence}")
    require("09.4", routes.passed, f"Every router needs every node's prefix. The review says: {routes.evidence}")
    passed("09.4", "an AS per rack: every router's sessions stay within its rack")


def check_kube_proxy_mode(answer: object) -> None:
    """09.5: a kube-proxy mode whose cost per new connection does not grow with 2,500 Services."""
    require("09.5", answer in KUBE_PROXY_MODES, f"Give one of {', '.join(KUBE_PROXY_MODES)}, not {answer!r}.")
    network = design_network({**DRAFT, "kubeProxy": {"mode": answer}})
    verdict = check_kube_proxy(network, REQUIREMENTS)
    if not verdict.passed:
        _, evaluated = iptables_rules_per_packet(network, REQUIREMENTS.services)
        require("09.5", False,
                f"With one rule per Service in KUBE-SERVICES, a new connection's first packet is compared with "
                f"{evaluated} rules (> bound {REQUIREMENTS.max_rules_per_packet}). Which modes find the Service in "
                "one lookup?")
    passed("09.5", "a kube-proxy mode that scales with the Services")


def check_capstone(answer: object) -> None:
    """09.6: the whole design, every check of the review passing."""
    report = review(answer)
    require("09.6", not isinstance(report, str), str(report))
    require("09.6", report.passed, "Fix the failing checks: " + "; ".join(
        f"{c.name}: {c.evidence}" for c in report.checks if not c.passed))
    passed("09.6", "the data centre's design passes every check")
