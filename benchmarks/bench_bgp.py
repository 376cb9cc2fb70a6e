"""BGP fabric simulation at cluster scale: 1,000 Calico nodes converging (issue 4 §6).

A script, not a test: ``python3 benchmarks/bench_bgp.py``. For each design it
builds the fabric from a 1,000-node cluster (timed apart, not counted against
the target), then times ``Fabric.converge()`` - every session coming up and
every podCIDR reaching every node - best of a few runs on fresh fabrics. Peak
memory is measured in a separate run under ``tracemalloc`` (which slows
Python down, so it is never timed). Exits 1 if a target is missed.

Cases (datapath.md §2.7):

* 2 route reflectors (node-0000 and node-0001, Calico ``routeReflectorClusterID``
  left per reflector): 1,997 sessions; each client's podCIDR reaches every other
  client through both reflectors, so about 2 million UPDATEs, twice the full
  mesh's - route reflection saves sessions, not messages;
* full mesh: 499,500 sessions, each node sending its podCIDR to 999 peers
  (999,000 UPDATEs).
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubenet_lab import Cluster  # noqa: E402
from kubenet_lab.bgp.fabric import Fabric  # noqa: E402

NODES = 1_000
CASES = [
    ("2 route reflectors", "route-reflectors", 1.0, 3),
    ("full mesh", "full-mesh", 10.0, 1),
]


def cluster() -> Cluster:
    """1,000 nodes on 172.16.0.0/16 with a /24 podCIDR each from 10.128.0.0/10."""
    c = Cluster("10.128.0.0/10", cni="calico-bgp", node_subnet="172.16.0.0/16")
    for i in range(NODES):
        c.add_node(f"node-{i:04d}", f"172.16.{i // 250}.{i % 250 + 1}")
    return c


def timed(c: Cluster, design: str) -> tuple[float, float, int, int]:
    start = time.perf_counter()
    fabric = Fabric.from_cluster(c, design)
    built = time.perf_counter()
    result = fabric.converge()
    done = time.perf_counter()
    assert all(len(s.loc_rib) == NODES for s in fabric.speakers.values()), "not converged"
    return built - start, done - built, result.messages, fabric.session_count


def peak_memory(c: Cluster, design: str) -> int:
    gc.collect()
    tracemalloc.start()
    Fabric.from_cluster(c, design).converge()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> int:
    c = cluster()
    rows = []
    for name, design, target, repeats in CASES:
        runs = [timed(c, design) for _ in range(repeats)]
        build = min(r[0] for r in runs)
        seconds = min(r[1] for r in runs)
        _, _, messages, sessions = runs[0]
        peak = peak_memory(c, design)
        rows.append((f"{NODES:,} nodes, {name}", f"{sessions:,}", f"{build:.2f}", f"{seconds:.2f}", f"{target:.1f}",
                     f"{seconds / target:.2f}", f"{messages:,}", f"{peak / 2**20:,.0f}",
                     "pass" if seconds <= target else "FAIL"))
    header = ("case", "sessions", "build s", "converge s", "target s", "ratio", "UPDATEs", "peak MiB", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return 0 if all(row[-1] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
