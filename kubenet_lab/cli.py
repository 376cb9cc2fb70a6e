"""The ``kubenet-lab`` command.

    kubenet-lab show SCENARIO [MORE ...]     nodes, podCIDRs, pods and services of a scenario
    kubenet-lab trace SCENARIO SRC DST [--dport N] [--proto tcp|udp|icmp] [--size N] [--pcap FILE]
                                             walk one packet, one hop a line
    kubenet-lab student SRC OUT              learner copies of the notebooks in SRC, solutions removed

Bad input is reported in one line naming the object, field and value, with
exit status 2 (the convention of argparse and most Unix tools for usage errors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import KubenetLabError

__all__ = ["main"]


def _show(args: argparse.Namespace) -> int:
    from .cluster import Cluster

    cluster = Cluster.load(*args.scenario)
    print(f"Scenario {cluster.network.name}: pods {','.join(map(str, cluster.network.pod_cidrs))}, "
          f"services {','.join(map(str, cluster.network.service_cidrs))}, cni {cluster.network.cni}, "
          f"ipam {cluster.network.ipam}, kube-proxy {cluster.network.kube_proxy_mode}")
    print()
    print(cluster)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from .cluster import Cluster

    walk = Cluster.load(args.scenario).trace(args.src, args.dst, dport=args.dport, proto=args.proto, size=args.size,
                                             df=not args.no_df)
    print(walk)
    if args.pcap:
        print(f"{len(walk.wire_hops)} on-wire packets written to {walk.to_pcap(args.pcap)}")
    return 0


def _student(args: argparse.Namespace) -> int:
    from .student import write_learner_copies

    written = write_learner_copies(Path(args.source), Path(args.out))
    for path, regions in written:
        print(f"{path}: {regions} solution region(s) replaced")
    print(f"{len(written)} notebook(s) written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubenet-lab", description="Kubernetes networking for network engineers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = commands.add_parser("show", help="print the node/podCIDR/pod/service tables of a scenario")
    show.add_argument("scenario", nargs="+", help="scenario file(s): YAML or JSON; several are read as one")
    show.set_defaults(run=_show)
    trace = commands.add_parser("trace", help="walk one packet through a scenario's datapath, one hop a line")
    trace.add_argument("scenario", help="scenario file (YAML or JSON)")
    trace.add_argument("src", help="the sending pod or node")
    trace.add_argument("dst", help="the destination pod, node or IP address")
    trace.add_argument("--dport", type=int, help="destination port (tcp, udp)")
    trace.add_argument("--proto", choices=("icmp", "tcp", "udp"), default="icmp")
    trace.add_argument("--size", type=int, help="IP packet length in bytes")
    trace.add_argument("--no-df", action="store_true", help="send without the don't-fragment bit")
    trace.add_argument("--pcap", help="write the on-wire packets to this pcap file")
    trace.set_defaults(run=_trace)
    student = commands.add_parser("student", help="write learner copies of notebooks with solutions removed")
    student.add_argument("source", help="folder of solution notebooks (*.ipynb)")
    student.add_argument("out", help="folder to write the learner copies to")
    student.set_defaults(run=_student)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KubenetLabError as exc:
        print(f"kubenet-lab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
