#!/usr/bin/env python3
"""Packet-walk and VTEP-table speed against the overlay issue's targets.

* one cross-node trace on a 100-node flannel cluster: under 5 ms median. Measured cold
  (the topology rebuilt before every trace, so the namespaces the walk crosses are built
  too) and warm; scapy bytes are built lazily and timed separately;
* the VTEP tables (routes, neighbours, FDB) of a 1,000-node cluster: under 1 s. Measured
  for one node's tables (1,000 rows of each) and for all 1,000 nodes (a million rows each),
  which is what building "all the tables" at once costs.

Prints a table with each figure's ratio to its target; exits non-zero if a target is missed.

    .venv/bin/python benchmarks/bench_trace.py
"""

import sys

from report import median_of, report

from kubenet_lab import Cluster


def build(nodes: int) -> Cluster:
    c = Cluster(pod_cidr="10.0.0.0/8", service_cidr="172.16.0.0/16", node_subnet="192.168.0.0/16")
    for i in range(nodes):
        c.add_node(f"node-{i}", ip=f"192.168.{i // 250}.{i % 250 + 1}")
        c.add_pod(f"pod-{i}", node=f"node-{i}")
    return c


def median_ms(action, runs: int) -> float:
    return median_of(action, runs) * 1000


def main() -> int:
    rows = []
    c100 = build(100)

    def cold():
        c100._changed()
        c100.trace("pod-0", "pod-99", proto="tcp", dport=80)

    rows.append(("trace, 100 nodes, cold", median_ms(cold, 50), 5.0))
    rows.append(("trace, 100 nodes, warm", median_ms(lambda: c100.trace("pod-0", "pod-99", proto="tcp", dport=80), 50), 5.0))
    walk = c100.trace("pod-0", "pod-99", proto="tcp", dport=80)
    rows.append(("  + scapy bytes of its 3 wire hops", median_ms(lambda: [bytes(h.state.to_scapy()) for h in walk.wire_hops], 20), None))
    c1000 = build(1000)

    def one_node():
        c1000._changed()
        host = c1000.host("node-0")
        assert len(host.fdb) == 999

    rows.append(("VTEP tables, 1,000 nodes, one node", median_ms(one_node, 5), 1000.0))

    def all_nodes():
        c1000._changed()
        topology = c1000.topology()
        assert sum(len(topology[f"node-{i}"].fdb) for i in range(1000)) == 999_000

    rows.append(("VTEP tables, 1,000 nodes, every node", median_ms(all_nodes, 1), 1000.0))
    return report(rows, unit="median ms", digits=2)


if __name__ == "__main__":
    sys.exit(main())
