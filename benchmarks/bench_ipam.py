"""IPAM at cluster scale: 5,000 nodes, 150,000 pods (30 per node).

A script, not a test: ``python3 benchmarks/bench_ipam.py``. Each case runs three
times from a fresh allocator and the best time counts (``time.perf_counter``).
It prints one row per case and exits with status 1 if any case misses its
target.

Cases:

* node CIDRs: kube-controller-manager hands 5,000 /24s out of 10.0.0.0/8
  (65,536 slots; a /12 would have only 4,096);
* host-local: the same 5,000 node CIDRs, then one HostLocal per node and 30
  pod addresses from each;
* Calico: the same 5,000 node CIDRs (kubeadm clusters often allocate them even
  though Calico ignores them), then 30 pods per node from one BlockIPAM over
  10.0.0.0/8 with the default /26 blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import best_of, report  # noqa: E402

from kubenet_lab.ipam import BlockIPAM, HostLocal, NodeCIDRAllocator  # noqa: E402

NODES = 5_000
PODS_PER_NODE = 30
CLUSTER_CIDR = "10.0.0.0/8"
REPEATS = 3

NODE_NAMES = [f"node-{n:04d}" for n in range(NODES)]
POD_NAMES = [[f"pod-{n:04d}-{p:02d}" for p in range(PODS_PER_NODE)] for n in range(NODES)]


def node_cidrs() -> list:
    cidrs = NodeCIDRAllocator(CLUSTER_CIDR, 24)
    return [cidrs.allocate() for _ in NODE_NAMES]


def host_local() -> None:
    for subnet, pods in zip(node_cidrs(), POD_NAMES):
        ipam = HostLocal(subnet)
        for pod in pods:
            ipam.allocate(pod)


def calico() -> None:
    node_cidrs()
    ipam = BlockIPAM(CLUSTER_CIDR)
    for node in NODE_NAMES:
        for _ in range(PODS_PER_NODE):
            ipam.allocate(node)


CASES = [
    (f"{NODES:,} node CIDRs (/24 from {CLUSTER_CIDR})", node_cidrs, 0.05),
    (f"{NODES:,} node CIDRs + {NODES * PODS_PER_NODE:,} pod IPs, host-local", host_local, 1.0),
    (f"{NODES:,} node CIDRs + {NODES * PODS_PER_NODE:,} pod IPs, Calico /26 blocks", calico, 1.0),
]


def main() -> int:
    return report([(name, best_of(function, REPEATS)[0], target) for name, function, target in CASES], unit="seconds")


if __name__ == "__main__":
    sys.exit(main())
