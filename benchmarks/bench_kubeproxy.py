"""kube-proxy's iptables mode at scale: 10,000 Services with 5 endpoints each.

A script, not a test: ``python3 benchmarks/bench_kubeproxy.py``. It builds
10,000 ClusterIP Services (one TCP port each) and their EndpointSlices (50,000
endpoints spread over 100 nodes) as kubenet_lab objects, then times the full
sync kube-proxy would write on one node: ``iptables_restore(...)``, best of
three (``time.perf_counter``). With 50,000 endpoints kube-proxy is in
large-cluster mode (over 1,000), so its per-endpoint rules carry no comments.

As root, with ``ip`` and the iptables tools installed, it also loads that text
into a fresh network namespace (``knl-bench-<pid>-<random>``, created and
deleted by the script for each load; the host's rules are never touched) with
kube-proxy's flags ``--noflush --counters``, once with each backend present:
``iptables-legacy-restore`` (the kernel's x_tables) and ``iptables-nft-restore``
(the same rules translated to nf_tables, what ``iptables`` is on current
distributions and so what kube-proxy's iptables mode uses there). The nft
backend slows down sharply with tens of thousands of chains, so each load
waits at most ``--load-timeout`` seconds (default 120). It prints how the
generation time compares with each load, and exits with status 1 if
generation misses its target.

It also times one packet walk through each mode's ruleset for those objects, a pod's
first packet to the ClusterIP of the Service written last (median of 101 walks, every
branch followed for the exact odds): the iptables walk (:mod:`kubenet_lab.kubeproxy.netfilter`)
and the nftables walk (:mod:`kubenet_lab.kubeproxy.nftwalk`), each with a 1 ms target (the
iptables walk reaches a Service's rules through an index of KUBE-SERVICES by destination, while
still counting every rule the kernel would try in order).

The rule count is checked against the count kube-proxy's structure gives (proxier.go): per
ClusterIP Service port one KUBE-SERVICES rule, one KUBE-SVC masquerade rule and one rule per
endpoint; per endpoint two KUBE-SEP rules (hairpin mark, DNAT); plus kube-proxy's fixed rules.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import best_of, median_of, report, table  # noqa: E402

from kubenet_lab.kubeproxy import ProxierSettings, iptables_restore, nft_ruleset  # noqa: E402
from kubenet_lab.kubeproxy.netfilter import Flow, Ruleset  # noqa: E402
from kubenet_lab.kubeproxy.nftwalk import NftRuleset  # noqa: E402
from kubenet_lab.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort  # noqa: E402

SERVICES = 10_000
ENDPOINTS_PER_SERVICE = 5
NODES = 100
REPEATS = 3
TARGET_SECONDS = 1.0
WALK_RUNS = 101
WALK_TARGET_MS = 1.0
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


def build_objects() -> tuple[list[Service], list[EndpointSlice]]:
    services, slices = [], []
    first_service, first_pod = int(SERVICE_CIDR.network_address) + 10, int(POD_CIDR.network_address) + 2
    for i in range(SERVICES):
        name = f"svc-{i:05d}"
        services.append(Service(name=name, namespace="bench", ports=(ServicePort(80, 8080, name="http"),),
                                cluster_ips=(ipaddress.ip_address(first_service + i),)))
        endpoints = tuple(
            Endpoint(addresses=(ipaddress.ip_address(first_pod + i * ENDPOINTS_PER_SERVICE + j),),
                     node_name=f"node-{(i * ENDPOINTS_PER_SERVICE + j) % NODES:03d}")
            for j in range(ENDPOINTS_PER_SERVICE))
        slices.append(EndpointSlice(name=f"{name}-abcde", service=name, namespace="bench", address_type="IPv4",
                                    endpoints=endpoints, ports=(EndpointPort(8080, name="http"),)))
    return services, slices


SETTINGS = ProxierSettings("node-000", node_ips=["192.168.0.10"], cluster_cidrs=["10.244.0.0/16"])


def generate(services, slices) -> str:
    return iptables_restore(services, slices, SETTINGS)


def walk_milliseconds(services, slices, rules: str) -> list[tuple[str, float, float | None]]:
    """Median milliseconds of one walk through each mode's ruleset, to the last Service's ClusterIP."""
    flow = Flow("10.244.0.2", services[-1].cluster_ips[0], "tcp", 80, in_interface="cni0")
    local = [str(a) for a in SETTINGS.node_ips]
    nft_settings = replace(SETTINGS, nodeport_addresses="primary")  # the nftables mode's default
    walks = [("iptables", Ruleset.parse(rules), WALK_TARGET_MS),
             ("nftables", NftRuleset.parse(nft_ruleset(services, slices, nft_settings, service_cidrs=[SERVICE_CIDR])),
              WALK_TARGET_MS)]
    rows = []
    for mode, ruleset, target in walks:
        result = ruleset.walk(flow, local=local)
        assert result.dnat is not None, f"the {mode} walk missed the Service"
        seconds = median_of(lambda: ruleset.walk(flow, local=local), WALK_RUNS)  # noqa: B023
        rows.append((f"{mode} walk, one packet ({result.evaluated:,} rules evaluated)", seconds * 1000, target))
    return rows


def kernel_load_seconds(rules: str, tool: str, timeout: float) -> float | str:
    """Seconds for ``tool`` to load ``rules`` into a fresh namespace, or why it was not measured."""
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in ("ip", tool) if shutil.which(t) is None]
    if missing:
        return "missing " + ", ".join(missing)
    namespace = f"knl-bench-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    try:
        start = time.perf_counter()
        try:
            done = subprocess.run(["ip", "netns", "exec", namespace, tool, "--noflush", "--counters"],
                                  input=rules, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"> {timeout:.0f} s (stopped)"
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return f"failed: {done.stderr.strip()[:200]}"
        return seconds
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="longest wait for one iptables-restore load (default 120)")
    args = parser.parse_args()
    services, slices = build_objects()
    seconds, rules = best_of(generate, REPEATS, services, slices)
    lines = rules.splitlines()
    rule_count = sum(line.startswith("-A ") for line in lines)
    chain_count = sum(line.startswith(":") for line in lines)
    case = f"{SERVICES:,} Services x {ENDPOINTS_PER_SERVICE} endpoints: generate"
    status = report([(case, seconds, TARGET_SECONDS)], unit="seconds")
    print()
    status |= report(walk_milliseconds(services, slices, rules), unit="ms")
    print(f"\nruleset: {rule_count:,} rules in {chain_count:,} chains, {len(rules) / 1e6:.1f} MB of iptables-restore input")
    endpoints = SERVICES * ENDPOINTS_PER_SERVICE
    structural = SERVICES * (1 + 1 + ENDPOINTS_PER_SERVICE) + 2 * endpoints
    print(f"kube-proxy's structure: {SERVICES:,} x (1 + 1 + {ENDPOINTS_PER_SERVICE}) + 2 x {endpoints:,} = "
          f"{structural:,} per-Service rules, + {rule_count - structural} fixed\n")
    loads = [("generate (kubenet_lab, best of 3)", f"{seconds:.3f}", "1.00")]
    for tool in ("iptables-legacy-restore", "iptables-nft-restore"):
        load = kernel_load_seconds(rules, tool, args.load_timeout)
        if isinstance(load, str):
            ratio = f"< {seconds / args.load_timeout:.4f}" if load.startswith(">") else "-"
            loads.append((f"{tool} into a fresh namespace", load, ratio))
        else:
            loads.append((f"{tool} into a fresh namespace", f"{load:.3f}", f"{seconds / load:.2f}"))
    table(("step", "seconds", "generate / step"), loads)
    return status


if __name__ == "__main__":
    sys.exit(main())
