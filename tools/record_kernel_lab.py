#!/usr/bin/env python3
"""Record what the kernel lab observes for a chapter's scenario (run as root), for readers without root.

    sudo .venv/bin/python tools/record_kernel_lab.py                       # chapter 10's recording
    sudo .venv/bin/python tools/record_kernel_lab.py SCENARIO OUT.json     # another scenario

It brings the scenario up in network namespaces, asks the probes chapter 10 shows
(:func:`kubenet_lab.kernel.record.select_probes`), reads node-1's tables from inside its
namespace, tears everything down, and writes the observations as JSON. Then it replays the file
against the simulator and exits non-zero if any probe disagrees, so a recording that proves the
simulator wrong is never committed silently. Re-run it after changing what the lab builds or what
the chapter probes, then refresh the notebook (tools/refresh_notebooks.py).
"""

import sys
from pathlib import Path

from kubenet_lab import Cluster
from kubenet_lab.kernel.lab import missing_requirements
from kubenet_lab.kernel.record import record, replay, select_probes

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "three-node-vxlan.yaml"
OUT = ROOT / "notebooks" / "data" / "kernel-lab-three-node-vxlan.json"
CAPTURE = ("web-1", "web-3")  # the walk whose underlay frames chapter 10 shows
NODES = ("node-1", "node-2", "node-3")


def main(argv: list[str]) -> int:
    reason = missing_requirements()
    if reason:
        print(f"record_kernel_lab: {reason}", file=sys.stderr)
        return 2
    scenario, out = (Path(argv[0]), Path(argv[1])) if len(argv) == 2 else (SCENARIO, OUT)
    cluster = Cluster.load(scenario)
    chosen = select_probes(cluster, include=(CAPTURE,))
    recording, lines = record(cluster, chosen, nodes=NODES)
    for line in lines:
        print(line)
    recording.save(out)
    report = replay(cluster, recording, chosen, capture=CAPTURE, nodes=NODES)
    print(f"{out}: {len(recording.probes)} probes, tables of {', '.join(NODES)}; replayed: "
          f"{len(report.probes)} probes, {report.agree} agree")
    return 0 if report.agree == len(report.probes) and all(line.agrees for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
