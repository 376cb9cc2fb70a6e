"""The ``kubenet-lab`` command.

    kubenet-lab show SCENARIO [MORE ...]     nodes, podCIDRs, pods and services of a scenario
    kubenet-lab trace SCENARIO SRC DST [--dport N] [--proto tcp|udp|icmp] [--size N] [--pcap FILE]
                                             walk one packet, one hop a line
    kubenet-lab proxy-rules FILE --node NAME [kube-proxy flags]
                                             what kube-proxy feeds iptables-restore on that node
                                             (--proxy-mode nftables: nft -f; ipvs: ipvsadm -Ln,
                                             kube-ipvs0, ipset restore and iptables-restore)
    kubenet-lab lab check SCENARIO           build it in network namespaces, probe, compare with the walks
    kubenet-lab lab up SCENARIO | status | down PREFIX | down --all
    kubenet-lab student SRC OUT              learner copies of the notebooks in SRC, solutions removed
    kubenet-lab design-check SCENARIO        review a scenario's design, one PASS/FAIL line per check;
                                             exit status 1 if any check fails
    kubenet-lab bgp speak --local-as ASN --router-id ID --peer ADDR[:PORT] --peer-as ASN
                [--local-address ADDR[:PORT]] [--passive] [--announce PREFIX ...] [--next-hop ADDR]
                [--hold-time S] [--once] [--timeout S] [--json]
                                             a real BGP session (RFC 4271), one line per state
                                             change and per route received or withdrawn

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
    from .cluster import Cluster
    from .kernel import KernelLab, missing_requirements
    from .kernel.lab import lab_namespaces, remove_namespaces
    from .kernel.plan import PREFIX_PATTERN

    if args.action == "status":
        labs: dict[str, int] = {}
        for name in lab_namespaces():
            prefix = name.split("-", 1)[0]
            labs[prefix] = labs.get(prefix, 0) + 1
        for prefix, count in sorted(labs.items()):
            print(f"{prefix}  {count} namespaces")
        print(f"{len(labs)} lab(s) up")
        return 0
    if args.action == "down":
        if args.all:
            removed = KernelLab.cleanup_all()
        elif args.target and PREFIX_PATTERN.match(args.target):
            removed = remove_namespaces(lab_namespaces(args.target))
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
        lab.up(progress=_progress_bar)
        print(f"lab {lab.prefix} is up: {len(lab.commands)} commands; 'ip netns list | grep {lab.prefix}' shows it; "
              f"'kubenet-lab lab down {lab.prefix}' removes it")
        return 0
    return _lab_check(cluster)


def _progress_bar(done: int, total: int) -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 40
    filled = width * done // total
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} commands", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def _lab_check(cluster) -> int:
    from .kernel.check import run_check

    total, agree = run_check(cluster, report=lambda line: print(line, flush=True))
    print(f"{total} probes, {agree} agree")
    return 0 if agree == total else 1


def _proxy_rules(args: argparse.Namespace) -> int:
    from .cluster import Cluster
    from .errors import InvalidValue

    if args.ipvs_scheduler != "rr" and args.proxy_mode != "ipvs":
        raise InvalidValue("kubenet-lab proxy-rules", "--ipvs-scheduler", args.ipvs_scheduler,
                           "is only used with --proxy-mode ipvs")
    cluster = Cluster.load(*args.file)
    flags: dict = {"masquerade_all": args.masquerade_all, "masquerade_bit": args.iptables_masquerade_bit,
                   "localhost_nodeports": not args.no_localhost_nodeports, "nfacct": args.nfacct}
    if args.node_ip:
        flags["node_ips"] = tuple(args.node_ip.split(","))
    if args.cluster_cidr:
        flags["cluster_cidrs"] = tuple(args.cluster_cidr.split(","))
    if args.nodeport_addresses:
        flags["nodeport_addresses"] = tuple(args.nodeport_addresses.split(","))
    proxy = cluster.kube_proxy(args.node, **flags)
    families = cluster.network.families
    if args.proxy_mode == "ipvs":
        outputs = [_ipvs_sections(proxy, families, args.ipvs_scheduler)]
    else:
        render = proxy.iptables_restore if args.proxy_mode == "iptables" else proxy.nft_ruleset
        outputs = [render(family) for family in families]  # all computed before anything is printed
    for ignored in proxy.state(families[0]).ignored:
        print(f"kubenet-lab: warning: {ignored}", file=sys.stderr)
    for family, text in zip(families, outputs):  # IPVS mode: one text with a section per table
        if len(families) > 1 and args.proxy_mode == "iptables":
            print(f"# {'iptables' if family == 4 else 'ip6tables'}-restore input (IPv{family})")
        sys.stdout.write(text)
    return 0


def _ipvs_sections(proxy, families, scheduler: str) -> str:
    """IPVS mode as four sections: the virtual servers, kube-ipvs0, the ipsets, the iptables glue."""
    from .kubeproxy.ipvs import ipset_restore, ipvsadm_list

    rules = {family: proxy.ipvs_rules(family, scheduler) for family in families}  # one sync per family
    sections = ["# ipvsadm -Ln\n" + ipvsadm_list(vs for r in rules.values() for vs in r.virtual_servers)]
    for family, r in rules.items():
        addresses = "".join(f"{ip}/{32 if family == 4 else 128}\n" for ip in r.bound_addresses)
        sections.append(f"# addresses on kube-ipvs0 (IPv{family})\n{addresses}")
        sections.append(f"# ipset restore input (IPv{family})\n" + ipset_restore(r.ipsets))
        tool = "iptables" if family == 4 else "ip6tables"
        sections.append(f"# {tool}-restore input (IPv{family})\n{r.iptables_restore}")
    return "\n".join(sections)


def _student(args: argparse.Namespace) -> int:
    from .student import write_learner_copies

    written = write_learner_copies(Path(args.source), Path(args.out))
    for path, regions in written:
        print(f"{path}: {regions} solution region(s) replaced")
    print(f"{len(written)} notebook(s) written to {args.out}")
    return 0


def _design_check(args: argparse.Namespace) -> int:
    from .design import check_design, load

    report = check_design(*load(args.scenario))
    print(report)
    return 0 if report.passed else 1


def _bgp(args: argparse.Namespace) -> int:
    """``bgp speak``: run one session until SIGINT/SIGTERM, or with --once until the first full exchange."""
    import json
    import signal
    import threading

    from .bgp.session import BGPSession, State

    def show(event) -> None:
        print(json.dumps(event.to_json()) if args.json else str(event), flush=True)

    timers = {name: value for name, value in (("hold_time", args.hold_time), ("connect_retry_time", args.connect_retry))
              if value is not None}
    session = BGPSession(local_as=args.local_as, router_id=args.router_id, peer=args.peer, peer_as=args.peer_as,
                         local_address=args.local_address, passive=args.passive, announce=args.announce,
                         next_hop=args.next_hop, auto_restart=not args.once, on_event=show, **timers)
    stopped = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stopped.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        session.start()
        if not args.once:
            while not stopped.wait(1.0):
                pass
            return 0
        deadline = args.timeout
        done = session.wait_for(lambda: session.exchange_complete or session.state is State.IDLE or stopped.is_set(),
                                deadline)
        if session.exchange_complete:
            return 0
        last = next((e for e in reversed(session.events) if e.reason), None)
        why = f"session went to Idle: {last.reason}" if done and last else \
            f"no full exchange within {deadline:g} s (state {session.state.value}" + \
            (f": {last.reason})" if last else ")")
        print(f"kubenet-lab: error: bgp speak {session.peer_address}: {why}", file=sys.stderr)
        return 1
    finally:
        session.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    proxy = commands.add_parser("proxy-rules", help="the iptables-restore (or nft -f) input kube-proxy writes on a node")
    proxy.add_argument("file", nargs="+", help="scenario or kubectl dump (YAML/JSON); several are read as one")
    proxy.add_argument("--node", required=True, help="the node whose kube-proxy to show")
    proxy.add_argument("--node-ip", help="override the node's IPs (comma-separated)")
    proxy.add_argument("--cluster-cidr", help="kube-proxy --cluster-cidr (default: the scenario's pod CIDRs)")
    proxy.add_argument("--service-cidr", help="accepted for kube-proxy compatibility; the scenario defines it")
    proxy.add_argument("--proxy-mode", default="iptables", choices=("iptables", "nftables", "ipvs"))
    proxy.add_argument("--ipvs-scheduler", default="rr", help="kube-proxy --ipvs-scheduler (IPVS mode)")
    proxy.add_argument("--masquerade-all", action="store_true")
    proxy.add_argument("--iptables-masquerade-bit", type=int, default=14)
    proxy.add_argument("--nodeport-addresses", help="CIDRs, or 'primary' (comma-separated)")
    proxy.add_argument("--no-localhost-nodeports", action="store_true")
    proxy.add_argument("--nfacct", action="store_true", help="add nfacct counters as kube-proxy can")
    proxy.set_defaults(run=_proxy_rules)
    lab = commands.add_parser("lab", help="the kernel lab: a scenario in real network namespaces (root)")
    lab.add_argument("action", choices=("up", "check", "status", "down"))
    lab.add_argument("target", nargs="?", help="scenario file (up, check) or lab prefix (down)")
    lab.add_argument("--all", action="store_true", help="with down: remove every kubenet-lab lab's namespaces")
    lab.set_defaults(run=_lab)
    student = commands.add_parser("student", help="write learner copies of notebooks with solutions removed")
    student.add_argument("source", help="folder of solution notebooks (*.ipynb)")
    student.add_argument("out", help="folder to write the learner copies to")
    student.set_defaults(run=_student)
    design = commands.add_parser("design-check", help="review a scenario's network design against its requirements")
    design.add_argument("scenario", help="scenario file, with a DesignRequirements object or held to its own size")
    design.set_defaults(run=_design_check)
    bgp = commands.add_parser("bgp", help="speak BGP-4 over TCP with a real router (BIRD, FRR, GoBGP)")
    bgp.add_argument("action", choices=("speak",))
    bgp.add_argument("--local-as", type=int, required=True, help="our AS (4-octet ASNs allowed)")
    bgp.add_argument("--router-id", required=True, help="our BGP Identifier, an IPv4 address")
    bgp.add_argument("--peer", required=True, help="neighbour ADDR[:PORT] ([v6]:PORT); default port 179")
    bgp.add_argument("--peer-as", type=int, required=True, help="the neighbour's AS (remote-as)")
    bgp.add_argument("--local-address", help="ADDR[:PORT] to bind; with --passive where to listen (port 179)")
    bgp.add_argument("--passive", action="store_true", help="wait for the neighbour to connect")
    bgp.add_argument("--announce", nargs="+", action="extend", default=[], metavar="PREFIX",
                     help="prefixes to announce once Established")
    bgp.add_argument("--next-hop", action="append", default=[], metavar="ADDR",
                     help="NEXT_HOP for announced prefixes (default: our address on the session); once per family")
    bgp.add_argument("--hold-time", type=int, help="Hold Time to offer, 0 or >= 3 s (default 90, RFC 4271 §10)")
    bgp.add_argument("--connect-retry", type=float, help="ConnectRetryTime in s (default 5, as Calico sets it)")
    bgp.add_argument("--once", action="store_true",
                     help="exit 0 after the first full exchange (End-of-RIB, or 3 s quiet after Established)")
    bgp.add_argument("--timeout", type=float, default=60.0, help="with --once: give up after S seconds (default 60)")
    bgp.add_argument("--json", action="store_true", help="print JSON lines")
    bgp.set_defaults(run=_bgp)
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
