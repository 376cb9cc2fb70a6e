"""BGP fabric simulation at cluster scale: 1,000 Calico nodes converging (issue 4 §6).

A script, not a test: ``.venv/bin/python benchmarks/bench_bgp.py``. For each design it
builds the fabric from a 1,000-node cluster (timed apart, not counted against
the target), then times ``Fabric.converge()`` - every session coming up and
every podCIDR reaching every node - best of a few runs on fresh fabrics, in
wall-clock seconds (the figure held against the target) and in CPU seconds of
this process (what the machine's other work cannot inflate). Peak memory is
measured in a separate run under ``tracemalloc`` (which slows Python down, so it
is never timed). Exits 1 if a target is missed.

Cases (datapath.md §2.7):

* 2 route reflectors (node-0000 and node-0001, Calico ``routeReflectorClusterID``
  left per reflector): 1,997 sessions; each client's podCIDR reaches every other
  client through both reflectors, so about 2 million UPDATEs, twice the full
  mesh's - route reflection saves sessions, not messages;
* full mesh: 499,500 sessions, each node sending its podCIDR to 999 peers
  (999,000 UPDATEs).

Where the time goes (route reflectors, measured with the run split by function,
about 0.75 s in all): the decision process over the dirty prefixes
(``Tables.decide``) about 40 %, a quarter of it in ``best_path`` for the three
distinct candidate sets per prefix; applying UPDATEs to the Adj-RIBs-In
(``speaker.deliver``) about a third; building UPDATEs (``Speaker.outgoing``) about
12 %; turning UPDATEs into paths about 8 %. Most of what remains is building the
thousand-entry dicts of one prefix (Adj-RIB-In, dirty set, Loc-RIB), a million
entries per table in all. The step that goes from 1.2 s to 0.8 s: a fan-out's
receivers all hold one candidate tuple, which is applied and decided once; the
few careful receivers (reflectors) are found in one pass; a Loc-RIB change that
keeps the best path exports nothing.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import report, table  # noqa: E402

from kubenet_lab import Cluster  # noqa: E402
from kubenet_lab.bgp.fabric import Fabric  # noqa: E402

NODES = 1_000
CASES = [
    ("2 route reflectors", "route-reflectors", 1.0, 5),
    ("full mesh", "full-mesh", 10.0, 1),
]


def cluster() -> Cluster:
    """1,000 nodes on 172.16.0.0/16 with a /24 podCIDR each from 10.128.0.0/10."""
    c = Cluster("10.128.0.0/10", cni="calico-bgp", node_subnet="172.16.0.0/16")
    for i in range(NODES):
        c.add_node(f"node-{i:04d}", f"172.16.{i // 250}.{i % 250 + 1}")
    return c


def timed(c: Cluster, design: str) -> tuple[float, float, float, int, int]:
    """(build s, converge wall s, converge CPU s, UPDATEs, sessions) of one fresh fabric."""
    start = time.perf_counter()
    fabric = Fabric.from_cluster(c, design)
    built = time.perf_counter()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fabric.converge()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not all(len(s.loc_rib) == NODES for s in fabric.speakers.values()):
        raise RuntimeError(f"{design}: not converged")
    return built - start, wall, cpu, result.messages, fabric.session_count


def peak_memory(c: Cluster, design: str) -> int:
    gc.collect()
    tracemalloc.start()
    Fabric.from_cluster(c, design).converge()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> int:
    c = cluster()
    details, verdicts = [], []
    for name, design, target, repeats in CASES:
        runs = [timed(c, design) for _ in range(repeats)]
        build, wall, cpu = (min(r[i] for r in runs) for i in range(3))
        _, _, _, messages, sessions = runs[0]
        case = f"{NODES:,} nodes, {name}"
        details.append((case, f"{sessions:,}", f"{messages:,}", f"{build:.2f}", f"{cpu:.2f}",
                        f"{peak_memory(c, design) / 2**20:,.0f}"))
        verdicts.append((f"{case}, converge (wall)", wall, target))
    table(("case", "sessions", "UPDATEs", "build s", "converge CPU s", "peak MiB"), details)
    print()
    return report(verdicts, unit="seconds", digits=2)


if __name__ == "__main__":
    sys.exit(main())
