#!/usr/bin/env python3
"""Kernel-lab set-up and tear-down times against the issue's targets (root only).

* 3 nodes, 6 pods, flannel VXLAN, 5 Services (with kube-proxy's rules): up < 5 s, down < 2 s;
* 20 nodes, 100 pods: up < 30 s.

    sudo .venv/bin/python benchmarks/bench_kernel_lab.py
"""

import sys
import time

from kubenet_lab import Cluster
from kubenet_lab.kernel import KernelLab, missing_requirements


def build(nodes: int, pods: int, services: int) -> Cluster:
    c = Cluster()
    for i in range(nodes):
        c.add_node(f"node-{i + 1}")
    for i in range(pods):
        c.add_pod(f"pod-{i}", node=f"node-{i % nodes + 1}", labels={"app": f"app{i % services}"}, ports={"http": 8080})
    for i in range(services):
        c.add_service(f"svc-{i}", selector={"app": f"app{i}"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    return c


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    reason = missing_requirements()
    if reason:
        print(f"skipped: {reason}")
        return 0
    rows = []
    for nodes, pods, services, up_target, down_target in ((3, 6, 5, 5.0, 2.0), (20, 100, 10, 30.0, None)):
        lab = KernelLab(build(nodes, pods, services))
        up = timed(lab.up)
        down = timed(lab.down)
        rows.append((f"{nodes} nodes, {pods} pods, {services} Services ({len(lab.commands)} commands)", "up", up, up_target))
        rows.append(("", "down", down, down_target))
    print(f"{'case':<52}{'step':<6}{'seconds':>9}{'target':>8}{'ratio':>7}  result")
    failed = False
    for case, step, value, target in rows:
        if target is None:
            print(f"{case:<52}{step:<6}{value:>9.2f}")
            continue
        ok = value < target
        failed |= not ok
        print(f"{case:<52}{step:<6}{value:>9.2f}{target:>8.0f}{value / target:>7.2f}  {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
