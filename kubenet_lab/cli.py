"""The ``kubenet-lab`` command.

    kubenet-lab show SCENARIO [MORE ...]     nodes, podCIDRs, pods and services of a scenario
    kubenet-lab trace SCENARIO SRC DST [--dport N] [--proto tcp|udp|icmp] [--size N] [--pcap FILE]
                                             walk one packet, one hop a line
    kubenet-lab lab check SCENARIO           build it in network namespaces, probe, compare with the walks
    kubenet-lab lab up SCENARIO | status | down PREFIX | down --all
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


def _lab(args: argparse.Namespace) -> int:
    import subprocess

    from .cluster import Cluster
    from .kernel import KernelLab, missing_requirements
    from .kernel.plan import PREFIX_PATTERN

    if args.action == "status":
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        labs: dict[str, int] = {}
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            prefix = name.split("-", 1)[0]
            if PREFIX_PATTERN.match(prefix) and "-" in name:
                labs[prefix] = labs.get(prefix, 0) + 1
        for prefix, count in sorted(labs.items()):
            print(f"{prefix}  {count} namespaces")
        print(f"{len(labs)} lab(s) up")
        return 0
    if args.action == "down":
        if args.all:
            removed = KernelLab.cleanup_all()
        elif args.target and PREFIX_PATTERN.match(args.target):
            listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            removed = [l.split()[0] for l in listing.splitlines() if l.startswith(args.target + "-")]
            for name in removed:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        else:
            print("kubenet-lab: error: lab down needs a lab prefix such as knl1a2b3c (see 'lab status') or --all",
                  file=sys.stderr)
            return 2
        print(f"{len(removed)} namespace(s) removed")
        return 0
    reason = missing_requirements()
    if reason:
        print(f"kubenet-lab: {reason}", file=sys.stderr)
        return 2
    if not args.target:
        print("kubenet-lab: error: lab up/check needs a scenario file", file=sys.stderr)
        return 2
    cluster = Cluster.load(args.target)
    if args.action == "up":
        lab = KernelLab(cluster)
        lab.up()
        print(f"lab {lab.prefix} is up: {len(lab.commands)} commands; 'ip netns list | grep {lab.prefix}' shows it; "
              f"'kubenet-lab lab down {lab.prefix}' removes it")
        return 0
    return _lab_check(cluster)


def _lab_check(cluster) -> int:
    """Every pod -> pod and pod -> node probe of the scenario, walked and replayed in the kernel."""
    from .kernel import KernelLab

    pods = [p for p in cluster.pods if p.ips and not p.host_network and p.node]
    probes = [(a.key, str(b.ip), b.key) for a in pods for b in pods if a is not b]
    probes += [(a.key, str(n.ip), n.name) for a in pods for n in cluster.nodes]
    agree = 0
    with KernelLab(cluster) as lab:
        for number, (src, dst_ip, dst_name) in enumerate(probes, 1):
            verdict = lab.verify(cluster.trace(src, dst_ip))
            agree += verdict.agrees
            print(f"[{number}/{len(probes)}] {src} -> {dst_name} ({dst_ip}): {verdict}", flush=True)
    print(f"{len(probes)} probes, {agree} agree")
    return 0 if agree == len(probes) else 1


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
    lab = commands.add_parser("lab", help="the kernel lab: a scenario in real network namespaces (root)")
    lab.add_argument("action", choices=("up", "check", "status", "down"))
    lab.add_argument("target", nargs="?", help="scenario file (up, check) or lab prefix (down)")
    lab.add_argument("--all", action="store_true", help="with down: remove every kubenet-lab lab's namespaces")
    lab.set_defaults(run=_lab)
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
