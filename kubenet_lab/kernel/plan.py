"""The kernel lab's plan: the exact iproute2 / sysctl / iptables / nft / bird commands that realise a topology.

:func:`plan` is pure: it turns the cluster's
:class:`~kubenet_lab.overlay.topology.Topology` into a list of commands and
runs none of them. The lab (:mod:`kubenet_lab.kernel.lab`) executes the list;
a notebook can print it to see how a node is really built, and tests check it
without root (the dry-run twin).

Naming scheme. Every network namespace the lab creates is called
``<prefix>-<slug>``, where the prefix is ``knl`` plus six hex digits unique to
one lab, so nothing of the host or of another lab is ever touched:

==============  ===========================  ==========================================
slug            namespace                    holds
==============  ===========================  ==========================================
``n-<node>``    a node's root namespace      eth0, cni0 / pod veths, the tunnel device
``p-<pod>``     a pod (namespace-name)       eth0
``r-<router>``  a ToR or the spine           rack port, uplink, spine ports
``s-<n>``       an L2 switch (a bridge)      one port per member of an underlay segment
==============  ===========================  ==========================================

Interfaces keep the names the topology gives them (``eth0``, ``cni0``,
``flannel.1``, ``cali…``), since each lives in its own namespace.

kube-proxy's rules go in as kube-proxy writes them: ``iptables-restore --noflush`` (plus its
jumps from the built-in chains) in iptables mode, ``nft -f`` in nftables mode. In a BGP-routed
scenario the routers' BGP routes are not in the plan: BIRD 2, started last in each router's
namespace, learns them (:mod:`kubenet_lab.kernel.bird`).

What the lab cannot build here it reports instead of faking: Cilium's
datapath is eBPF programs the lab does not load, and IP-in-IP needs the
kernel's ``ipip`` module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..overlay.topology import BGP_PROTOS, Topology

__all__ = ["Command", "LabNames", "plan", "unsupported_reason", "PREFIX_PATTERN"]

PREFIX_PATTERN = re.compile(r"^knl[0-9a-f]{6}$")


@dataclass(frozen=True)
class Command:
    """One command of the plan: its argv, and the lab namespace it acts in (for the safety check)."""

    argv: tuple[str, ...]
    netns: str
    stdin: str | None = None

    def __str__(self) -> str:
        return " ".join(self.argv) + (" <<EOF ... EOF" if self.stdin else "")


class LabNames:
    """The lab's names for the topology's namespaces, all under one prefix."""

    def __init__(self, prefix: str):
        if not PREFIX_PATTERN.match(prefix):
            raise ValueError(f"lab prefix must match {PREFIX_PATTERN.pattern} (got {prefix!r})")
        self.prefix = prefix

    def netns(self, namespace: str, kind: str) -> str:
        if kind == "pod":
            slug = "p-" + namespace[len("pod:"):].replace("/", "-")
        else:
            slug = {"node": "n-", "router": "r-"}[kind] + namespace
        return f"{self.prefix}-{slug}"[:255]

    def switch(self, index: int) -> str:
        return f"{self.prefix}-s-{index}"


def unsupported_reason(topology: Topology) -> str | None:
    """Why this topology cannot be realised by the lab, or None."""
    mode = topology.mode
    if mode.flow_based:
        return f"{mode.cni}: Cilium's datapath is eBPF programs (bpf_lxc, bpf_host) that the lab does not load"
    return None


def _ip(netns: str, *args: str) -> Command:
    return Command(("ip", "-n", netns, *args), netns)


def _exec(netns: str, *args: str, stdin: str | None = None) -> Command:
    return Command(("ip", "netns", "exec", netns, *args), netns, stdin)


def plan(topology: Topology, prefix: str, kube_proxy: dict[str, str] | None = None, *,
         proxy_mode: str = "iptables", bird: dict[str, str] | None = None) -> list[Command]:
    """Every command that builds ``topology`` in network namespaces named under ``prefix``.

    ``kube_proxy`` maps node names to their kube-proxy's ruleset. In ``proxy_mode`` "iptables" it is
    the ``iptables-restore`` input, loaded as kube-proxy loads it (``--noflush``), followed by its
    jumps from the built-in chains; in "nftables" it is the ``nft -f`` input of table
    ``ip kube-proxy``, whose base chains hook themselves in.

    ``bird`` maps the routers that run BIRD 2 (a BGP-routed scenario) to their run directory,
    holding ``<router>.conf`` (:mod:`kubenet_lab.kernel.bird`); those namespaces get no routes
    with ``proto bird`` or ``proto bgp`` from the plan: BIRD, started last, learns them.
    """
    from ..kubeproxy.hooks import hook_rules

    names = LabNames(prefix)
    commands: list[Command] = []
    kinds = topology.kinds
    netns = {name: names.netns(name, kind) for name, kind in kinds.items()}
    for name in kinds:
        commands.append(Command(("ip", "netns", "add", netns[name]), netns[name]))
        commands.append(_ip(netns[name], "link", "set", "lo", "up"))
        forward = "0" if kinds[name] == "pod" else "1"
        commands.append(_exec(netns[name], "sysctl", "-qw", f"net.ipv4.ip_forward={forward}",
                              "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"))
    created: set[tuple[str, str]] = set()
    # Links first: veth pairs, bridges and switches, following the L2 segments.
    for index, (segment, members) in enumerate(sorted(topology.segments.items())):
        if segment.startswith("bridge:"):
            node = segment.split(":", 1)[1]
            commands.append(_ip(netns[node], "link", "add", "cni0", "type", "bridge"))
            created.add((node, "cni0"))
            for ns, ifname in members:
                if ns == node:
                    continue
                peer_ns, peer_if = topology.interfaces(ns)[ifname].peer
                commands.append(_ip(netns[ns], "link", "add", ifname, "type", "veth", "peer", "name", peer_if,
                                    "netns", netns[peer_ns]))
                commands.append(_ip(netns[peer_ns], "link", "set", peer_if, "master", "cni0"))
                # the bridge plugin's hairpinMode: a pod may reach itself through its Service's VIP
                commands.append(_ip(netns[peer_ns], "link", "set", peer_if, "type", "bridge_slave", "hairpin", "on"))
                created.update({(ns, ifname), (peer_ns, peer_if)})
        elif len(members) == 2 and not segment.startswith("underlay"):
            (a_ns, a_if), (b_ns, b_if) = members
            commands.append(_ip(netns[a_ns], "link", "add", a_if, "type", "veth", "peer", "name", b_if,
                                "netns", netns[b_ns]))
            created.update(members)
        else:  # a shared L2 segment: a bridge in a switch namespace, one veth per member
            switch = names.switch(index)
            commands.append(Command(("ip", "netns", "add", switch), switch))
            commands.append(_ip(switch, "link", "add", "br0", "type", "bridge"))
            commands.append(_ip(switch, "link", "set", "br0", "up"))
            for port, (ns, ifname) in enumerate(members):
                commands.append(_ip(netns[ns], "link", "add", ifname, "type", "veth", "peer", "name", f"p{port}",
                                    "netns", switch))
                commands.append(_ip(switch, "link", "set", f"p{port}", "master", "br0", "up"))
                created.add((ns, ifname))
    # Then every namespace's own devices, addresses and tables.
    for name in kinds:
        ns, target = topology[name], netns[name]
        for iface in ns.interfaces.values():
            if (name, iface.name) not in created:
                if iface.kind in ("vxlan", "geneve"):
                    # Bound to eth0 the kernel caps the device at eth0's MTU less the overhead; a device
                    # with a bigger MTU is one created without `dev`, the misconfiguration it reproduces.
                    lower = ns.interfaces["eth0"].mtu - topology.mode.overhead(4)
                    bound = ("dev", "eth0") if iface.mtu <= lower else ()
                    commands.append(_ip(target, "link", "add", iface.name, "type", iface.kind, "id", str(iface.vni),
                                        "dstport", str(iface.port), "local", str(iface.local), *bound, "nolearning"))
                elif iface.kind == "ipip":
                    commands.append(_ip(target, "link", "add", iface.name, "type", "ipip"))
                else:
                    continue
            if iface.mac:
                commands.append(_ip(target, "link", "set", "dev", iface.name, "address", iface.mac))
            commands.append(_ip(target, "link", "set", "dev", iface.name, "mtu", str(iface.mtu), "up"))
            for address in iface.addresses:
                commands.append(_ip(target, "addr", "add", str(address), "dev", iface.name))
            if iface.proxy_arp:
                commands.append(_exec(target, "sysctl", "-qw", f"net.ipv4.conf.{iface.name}.proxy_arp=1"))
        # Routes that need no gateway first: the kernel refuses a gateway it cannot reach.
        for route in sorted(ns.routes, key=lambda r: r.via is not None):
            if bird and name in bird and route.proto in BGP_PROTOS:
                continue
            commands.append(_ip(target, "route", "replace", *str(route).split()))
        for entry in ns.neighbors:
            commands.append(_ip(target, "neigh", "replace", str(entry.ip), "lladdr", entry.lladdr, "dev", entry.dev,
                                "nud", "permanent"))
        for entry in ns.fdb:
            commands.append(Command(("bridge", "-n", target, "fdb", "append", entry.mac, "dev", entry.dev, "dst",
                                     str(entry.dst), "self", "permanent"), target))
        if kube_proxy and name in kube_proxy and proxy_mode == "nftables":
            commands.append(_exec(target, "nft", "-f", "-", stdin=kube_proxy[name]))
        elif kube_proxy and name in kube_proxy:
            commands.append(_exec(target, "iptables-restore", "--noflush", stdin=kube_proxy[name]))
            commands.append(_exec(target, "iptables-restore", "--noflush", stdin=hook_rules()))
        if ns.masquerade:
            rules = [f"-A POSTROUTING -s {source} ! -d {source} -o eth0 -j MASQUERADE" for source, _, _ in ns.masquerade]
            commands.append(_exec(target, "iptables-restore", "--noflush",
                                  stdin="*nat\n:POSTROUTING ACCEPT [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"))
    # BIRD last, once every address and connected route it peers over exists; it daemonises,
    # writing its pid where the lab's teardown finds it.
    for name, run_dir in sorted((bird or {}).items()):
        commands.append(_exec(netns[name], "bird", "-c", f"{run_dir}/{name}.conf", "-s", f"{run_dir}/{name}.ctl",
                              "-P", f"{run_dir}/{name}.pid"))
    return commands


def is_lab_command(command: Command, prefix: str) -> bool:
    """The safety rule: a command names a lab namespace as its target, never the host's."""
    argv = command.argv
    if not command.netns.startswith(prefix + "-"):
        return False
    if argv[:3] == ("ip", "netns", "add") or argv[:3] == ("ip", "netns", "exec"):
        return argv[3] == command.netns
    if argv[0] in ("ip", "bridge") and argv[1] == "-n":
        return argv[2] == command.netns
    return False

