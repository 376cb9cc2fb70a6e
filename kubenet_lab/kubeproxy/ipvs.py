"""kube-proxy's IPVS mode: the virtual-server table, the ``kube-ipvs0`` addresses, the ipsets and the iptables glue.

In IPVS mode kube-proxy stops writing one chain per Service. It programs the
kernel's L4 load balancer (IPVS, the Linux Virtual Server) instead, exactly as
an F5 or an LVS director is configured:

* one **virtual server** per VIP:port:protocol (every ClusterIP, externalIP,
  LoadBalancer ingress IP, and every local address of the node for a NodePort) with the
  scheduler ``rr`` (``--ipvs-scheduler``), ``persistent <timeout>`` for
  ``sessionAffinity: ClientIP``;
* under it one **real server** per chosen endpoint, forwarding method ``Masq``
  (DNAT), weight 1;
* each ClusterIP (and each external/LB IP that is not already a node address)
  bound as a /32 to the dummy device ``kube-ipvs0``, so the node accepts the
  packet locally and IPVS sees it in ``LOCAL_IN``;
* **ipsets** (hash tables) holding the VIP:port pairs, so that a constant,
  small number of iptables rules can still masquerade, filter and accept:
  one ``-m set --match-set KUBE-CLUSTER-IP dst,dst`` rule replaces thousands
  of per-Service rules.

This module computes all four from the same :class:`~.state.ProxyState` the
iptables and nftables modes use, following ``syncProxyRules`` in
``pkg/proxy/ipvs/proxier.go`` and the set table in ``pkg/proxy/ipvs/ipset.go``
(kubernetes v1.33 line). Which endpoints a virtual server gets is
``syncEndpoint``: the Cluster pool of ``CategorizeEndpoints`` (so terminating
endpoints only as a fallback when none is ready), or for a Local traffic
policy the node's local endpoints, *falling back to the Cluster pool when the
node has none* (kubernetes PR 97081; the iptables mode drops such traffic).

Formats. The ipset text is what kube-proxy's ``ipset create ... -exist`` and
``ipset add ... -exist`` commands amount to, written for ``ipset restore``
(set options and entry syntax from ``pkg/proxy/ipvs/ipset/ipset.go``). The
virtual-server listing has no expected text upstream: its layout is
``ipvsadm -Ln``'s own (``print_title`` and ``print_service_entry`` in
ipvsadm.c: ``"%s  %s"`` protocol and address, the scheduler, ``persistent
%u``, and ``"  -> %-28s %-7s %-6d %-10u %-10u"`` per real server, whose
padding leaves trailing spaces). ipvsadm sorts services by address family,
protocol number, address and port, and real servers by address and port
(``ipvs_cmp_services``, ``ipvs_cmp_dests`` in libipvs), and it compares two
addresses by subtracting them as 32-bit integers: the sign of the wrapped
difference decides, so ``192.168.0.11`` sorts *before* ``10.96.0.10`` (their
difference exceeds 2³¹). That comparison is reproduced here; it is a consistent
order whenever the addresses of a listing fit in half the address space, as
they do in every cluster of this course. Connection counters are 0: nothing
has connected yet.

:func:`sync_ipvs_rules` returns all four as an :class:`IPVSRules`; :func:`ipvsadm_list`
and :func:`ipset_restore` print them; :func:`walk_first_packet` follows one packet
through them; :func:`graceful_termination` shows a departing endpoint draining.

>>> from kubenet_lab import Cluster
>>> from kubenet_lab.kubeproxy import KubeProxy
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> listing = KubeProxy(c, "node-1").ipvsadm_ln()
>>> print("\\n".join(line.rstrip() for line in listing.splitlines()[:7]))
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.0.11:30080 rr
  -> 10.244.0.2:8080              Masq    1      0          0
  -> 10.244.1.2:8080              Masq    1      0          0
  -> 10.244.2.2:8080              Masq    1      0          0

Introduced in chapter 05 (kube-proxy modes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cmp_to_key

from ..addresses import IPAddress
from ..errors import InvalidValue
from .endpoints import EndpointInfo, categorize_endpoints
from .serviceport import ServicePortInfo
from .settings import ProxierSettings
from .state import ProxyState

__all__ = [
    "RealServer",
    "VirtualServer",
    "IPSet",
    "IPVSRules",
    "sync_ipvs_rules",
    "ipvsadm_list",
    "ipset_restore",
    "graceful_termination",
    "IPVSWalk",
    "walk_first_packet",
    "DUMMY_DEVICE",
    "DEFAULT_SCHEDULER",
    "IPVS_JUMP_CHAINS",
]

# proxier.go: defaultDummyDevice, defaultScheduler.
DUMMY_DEVICE = "kube-ipvs0"
DEFAULT_SCHEDULER = "rr"
# IPVS schedulers whose ipvsadm listing carries no scheduler flags (mh sets the
# source-hash flag, whose listing is not modelled).
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf")
# The kernel's IP_VS_VERSION_CODE (1.2.1) and default connection table size (2^12).
IPVSADM_HEADER = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
)
_PROTOCOL_NUMBER = {"TCP": 6, "UDP": 17, "SCTP": 132}

# ipset.go: name, type and comment of every set, in kube-proxy's ipsetInfo order.
_SETS = (
    ("KUBE-LOOP-BACK", "hash:ip,port,ip", "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    ("KUBE-CLUSTER-IP", "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    ("KUBE-EXTERNAL-IP", "hash:ip,port", "Kubernetes service external ip + port for masquerade and filter purpose"),
    ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port", "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER", "hash:ip,port", "Kubernetes service lb portal"),
    ("KUBE-LOAD-BALANCER-FW", "hash:ip,port",
     "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port",
     "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "hash:ip,port,ip",
     "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net",
     "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    ("KUBE-NODE-PORT-TCP", "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port", "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    ("KUBE-NODE-PORT-UDP", "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port", "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    ("KUBE-NODE-PORT-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    ("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port", "Kubernetes health check node port"),
    ("KUBE-IPVS-IPS", "hash:ip", "Addresses on the ipvs interface"),
)
_NODE_PORT_SET = {"tcp": "KUBE-NODE-PORT-TCP", "udp": "KUBE-NODE-PORT-UDP", "sctp": "KUBE-NODE-PORT-SCTP-HASH"}
_NODE_PORT_LOCAL_SET = {"tcp": "KUBE-NODE-PORT-LOCAL-TCP", "udp": "KUBE-NODE-PORT-LOCAL-UDP",
                        "sctp": "KUBE-NODE-PORT-LOCAL-SCTP-HASH"}
# ipsetWithIptablesChain: (set, table, from chain, target, match type, protocol match), in order.
# The NodePort Local sets come before their plain sets: RETURN first, then masquerade.
_SET_RULES = (
    ("KUBE-LOOP-BACK", "nat", "KUBE-POSTROUTING", "MASQUERADE", "dst,dst,src", ""),
    ("KUBE-LOAD-BALANCER", "nat", "KUBE-SERVICES", "KUBE-LOAD-BALANCER", "dst,dst", ""),
    ("KUBE-LOAD-BALANCER-LOCAL", "nat", "KUBE-LOAD-BALANCER", "RETURN", "dst,dst", ""),
    ("KUBE-NODE-PORT-LOCAL-TCP", "nat", "KUBE-NODE-PORT", "RETURN", "dst", "tcp"),
    ("KUBE-NODE-PORT-TCP", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "tcp"),
    ("KUBE-NODE-PORT-LOCAL-UDP", "nat", "KUBE-NODE-PORT", "RETURN", "dst", "udp"),
    ("KUBE-NODE-PORT-UDP", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "udp"),
    ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "nat", "KUBE-NODE-PORT", "RETURN", "dst,dst", "sctp"),
    ("KUBE-NODE-PORT-SCTP-HASH", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst,dst", "sctp"),
    ("KUBE-LOAD-BALANCER-FW", "filter", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst", ""),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
)
# iptablesChains: the chains declared in each table's restore input, in order.
_NAT_CHAINS = ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ")
_FILTER_CHAINS = ("KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                  "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")
# iptablesJumpChain: (table, built-in chain, kube-proxy chain, comment), ensured with iptables -I.
IPVS_JUMP_CHAINS = (
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
    ("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "INPUT", "KUBE-IPVS-FILTER", "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER", "kubernetes ipvs access filter"),
)


def set_name(name: str, family: int) -> str:
    """The set's name for ``family``: IPv6 sets are ``KUBE-6-...``, cut at ipset's 31 characters.

    >>> set_name("KUBE-LOAD-BALANCER-SOURCE-CIDR", 6)
    'KUBE-6-LOAD-BALANCER-SOURCE-CID'
    """
    return name if family == 4 else ("KUBE-6-" + name[len("KUBE-"):])[:31]


def _address_port(address: IPAddress, port: int) -> str:
    """ipvsadm's numeric ``addr:port`` (IPv6 in brackets)."""
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


@dataclass(frozen=True)
class RealServer:
    """An IPVS destination: ``podIP:port``, forwarded by masquerading (DNAT), with a weight."""

    address: IPAddress
    port: int
    weight: int = 1

    def __str__(self) -> str:
        return _address_port(self.address, self.port)


@dataclass(frozen=True)
class VirtualServer:
    """An IPVS service: protocol, VIP and port, scheduler, persistence, and its real servers.

    ``service`` is the service port name (``ns/svc:port``) and ``kind`` which of
    its addresses this is (``cluster IP``, ``external IP``, ``load balancer``, ``node port``).
    """

    protocol: str
    address: IPAddress
    port: int
    scheduler: str = DEFAULT_SCHEDULER
    persistent: int = 0
    real_servers: tuple[RealServer, ...] = ()
    service: str = ""
    kind: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        """What the kernel keys virtual servers on."""
        return (self.protocol, str(self.address), self.port)

    def ipvsadm_order(self) -> tuple:
        """What ``ipvs_cmp_services`` compares: address family, protocol number, address, port."""
        return (self.address.version, _PROTOCOL_NUMBER[self.protocol], self.address, self.port)

    def __str__(self) -> str:
        """The service's lines of ``ipvsadm -Ln``."""
        vip = _address_port(self.address, self.port)
        line = f"{self.protocol}  {vip}"[:33] if self.address.version == 4 else f"{self.protocol}  {vip}"
        line += f" {self.scheduler}"
        if self.persistent:
            line += f" persistent {self.persistent}"
        lines = [line]
        for rs in sorted(self.real_servers, key=cmp_to_key(_cmp_dests)):
            name = str(rs)[:28] if rs.address.version == 4 else str(rs)
            lines.append(f"  -> {name:<28} {'Masq':<7} {rs.weight:<6d} {0:<10d} {0:<10d}")
        return "\n".join(lines)


@dataclass(frozen=True)
class IPSet:
    """One kernel ipset (a hash table or bitmap that one iptables rule can match in O(1))."""

    name: str
    set_type: str
    family: int
    comment: str
    entries: tuple[str, ...] = ()

    @property
    def create(self) -> str:
        """The ``create`` line, with the options kube-proxy's ``CreateSet`` passes."""
        if self.set_type == "bitmap:port":
            return f"create {self.name} bitmap:port range 0-65535"
        inet = "inet" if self.family == 4 else "inet6"
        return f"create {self.name} {self.set_type} family {inet} hashsize 1024 maxelem 65536"

    def __str__(self) -> str:
        return "\n".join([self.create] + [f"add {self.name} {entry}" for entry in self.entries])


@dataclass(frozen=True)
class IPVSRules:
    """Everything IPVS-mode kube-proxy programs for one IP family on one node."""

    family: int
    virtual_servers: tuple[VirtualServer, ...]
    bound_addresses: tuple[IPAddress, ...]
    ipsets: tuple[IPSet, ...]
    iptables_restore: str

    def ipset(self, name: str) -> IPSet:
        """The set called ``name`` (the IPv4 spelling is accepted for IPv6 sets)."""
        for s in self.ipsets:
            if s.name in (name, set_name(name, self.family)):
                return s
        raise InvalidValue("IPVSRules", "ipsets", name, "must name one of kube-proxy's ipsets")

    def virtual_server(self, protocol: str, address: str, port: int) -> VirtualServer:
        """The virtual server of ``protocol address:port``."""
        key = (protocol.upper(), str(ipaddress.ip_address(address)), port)
        for vs in self.virtual_servers:
            if vs.key == key:
                return vs
        raise InvalidValue("IPVSRules", "virtual_servers", f"{key[0]} {key[1]}:{key[2]}", "is not a virtual server")


def _c_address_cmp(a: IPAddress, b: IPAddress) -> int:
    """libipvs' address comparison: ``ntohl(a) - ntohl(b)`` as a C ``int``, 32 bits at a time.

    >>> _c_address_cmp(ipaddress.ip_address("192.168.0.11"), ipaddress.ip_address("10.96.0.10")) < 0
    True
    """
    words = 1 if a.version == 4 else 4
    x, y = int(a), int(b)
    for i in reversed(range(words)):
        r = ((((x >> (32 * i)) - (y >> (32 * i))) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        if r:
            return r
    return 0


def _cmp_services(v: VirtualServer, w: VirtualServer) -> int:
    (fa, pa, aa, qa), (fb, pb, ab, qb) = v.ipvsadm_order(), w.ipvsadm_order()
    return (fa - fb) or (pa - pb) or _c_address_cmp(aa, ab) or (qa - qb)


def _cmp_dests(r: RealServer, s: RealServer) -> int:
    return _c_address_cmp(r.address, s.address) or (r.port - s.port)


def ipvsadm_list(virtual_servers: Iterable[VirtualServer]) -> str:
    """``ipvsadm -Ln``: the header, then every virtual server in ipvsadm's sort order."""
    ordered = sorted(sorted(virtual_servers, key=lambda vs: (vs.address.version, int(vs.address))),
                     key=cmp_to_key(_cmp_services))
    return IPVSADM_HEADER + "".join(str(vs) + "\n" for vs in ordered)


def ipset_restore(ipsets: Iterable[IPSet]) -> str:
    """The ``ipset restore`` input: each set's ``create`` line, then its ``add`` lines."""
    return "".join(str(s) + "\n" for s in ipsets)


def _endpoints_for(state: ProxyState, sp: ServicePortInfo, only_node_local: bool) -> tuple[EndpointInfo, ...]:
    """``syncEndpoint``: the Cluster pool, or the local pool (falling back to the Cluster pool)."""
    pools = categorize_endpoints(state.endpoints.get(sp.name, ()), sp)
    if only_node_local and pools.local:
        return pools.local
    return pools.cluster


def _node_addresses(settings: ProxierSettings, family: int) -> list[IPAddress]:
    """``GetAllLocalAddressesExcept(kube-ipvs0)``: the node's own addresses, no loopback or IPv6 link-local."""
    found = {str(ip): ip for ip in settings.all_interface_addresses()
             if ip.version == family and not ip.is_loopback and not (family == 6 and ip.is_link_local)}
    return sorted(found.values())


def _nodeport_ips(settings: ProxierSettings, family: int) -> list[IPAddress]:
    """Where NodePort virtual servers go: every node address, or those in ``--nodeport-addresses``."""
    npa = settings.nodeport_addresses_for(family)
    if npa.match_all:
        return _node_addresses(settings, family)
    return [ip for ip in npa.node_ips(settings.all_interface_addresses()) if not ip.is_loopback]


def sync_ipvs_rules(state: ProxyState, settings: ProxierSettings, scheduler: str = DEFAULT_SCHEDULER) -> IPVSRules:
    """IPVS-mode ``syncProxyRules`` on a full sync: virtual servers, ``kube-ipvs0``, ipsets, iptables glue."""
    if scheduler not in SCHEDULERS:
        raise InvalidValue("kube-proxy", "ipvs.scheduler", scheduler, f"must be one of {', '.join(SCHEDULERS)}")
    family = state.family
    entries: dict[str, set[str]] = {name: set() for name, _, _ in _SETS}
    servers: dict[tuple, VirtualServer] = {}
    bound: dict[str, IPAddress] = {}
    node_addresses = {str(ip) for ip in _node_addresses(settings, family)}
    node_ip = settings.node_ip(family)
    nodeport_ips = _nodeport_ips(settings, family) if any(sp.node_port for sp in state.service_ports) else []
    lb_no_node_access: list[tuple[str, str, int]] = []

    def virtual_server(sp: ServicePortInfo, address: IPAddress, port: int, kind: str, only_local: bool) -> None:
        rs = tuple(RealServer(ipaddress.ip_address(ep.ip), ep.port) for ep in _endpoints_for(state, sp, only_local))
        vs = VirtualServer(sp.name.protocol, address, port, scheduler,
                           sp.sticky_max_age_seconds if sp.session_affinity_client_ip else 0, rs, str(sp.name), kind)
        servers[vs.key] = vs  # the kernel keys on protocol, address, port: a later sync of the same key wins

    for sp in state.service_ports:
        proto = sp.protocol
        for ep in state.endpoints.get(sp.name, ()):
            if ep.is_local:  # hairpin: a pod reaching itself through its own Service
                entries["KUBE-LOOP-BACK"].add(f"{ep.ip},{proto}:{ep.port},{ep.ip}")
        entries["KUBE-CLUSTER-IP"].add(f"{sp.cluster_ip},{proto}:{sp.port}")
        virtual_server(sp, sp.cluster_ip, sp.port, "cluster IP", sp.internal_policy_local)
        bound[str(sp.cluster_ip)] = sp.cluster_ip

        for ip in sp.external_ips:
            entries["KUBE-EXTERNAL-IP-LOCAL" if sp.external_policy_local else "KUBE-EXTERNAL-IP"].add(
                f"{ip},{proto}:{sp.port}")
            virtual_server(sp, ip, sp.port, "external IP", sp.external_policy_local)
            if str(ip) not in node_addresses:
                bound[str(ip)] = ip

        for ip in sp.load_balancer_vips:
            entry = f"{ip},{proto}:{sp.port}"
            entries["KUBE-LOAD-BALANCER"].add(entry)
            if sp.external_policy_local:
                entries["KUBE-LOAD-BALANCER-LOCAL"].add(entry)
            if sp.load_balancer_source_ranges:
                entries["KUBE-LOAD-BALANCER-FW"].add(entry)
                for cidr in sp.load_balancer_source_ranges:
                    entries["KUBE-LOAD-BALANCER-SOURCE-CIDR"].add(f"{entry},{cidr}")
                if node_ip is not None and any(node_ip in cidr for cidr in sp.load_balancer_source_ranges):
                    entries["KUBE-LOAD-BALANCER-SOURCE-IP"].add(f"{entry},{ip}")
                else:  # the node itself must not reach the VIP either (issue 119656)
                    lb_no_node_access.append((str(ip), proto, sp.port))
            virtual_server(sp, ip, sp.port, "load balancer", sp.external_policy_local)
            if str(ip) not in node_addresses:
                bound[str(ip)] = ip

        if sp.node_port:
            if not nodeport_ips:  # kube-proxy skips the rest of this service port, health check included
                continue
            port_entries = ([str(sp.node_port)] if proto != "sctp"
                            else [f"{ip},{proto}:{sp.node_port}" for ip in nodeport_ips])
            entries[_NODE_PORT_SET[proto]].update(port_entries)
            if sp.external_policy_local:
                entries[_NODE_PORT_LOCAL_SET[proto]].update(port_entries)
            for ip in nodeport_ips:  # node addresses are not bound to kube-ipvs0: they are local already
                virtual_server(sp, ip, sp.node_port, "node port", sp.external_policy_local)

        if sp.health_check_node_port:
            entries["KUBE-HEALTH-CHECK-NODE-PORT"].add(str(sp.health_check_node_port))

    entries["KUBE-IPVS-IPS"] = set(bound)
    ipsets = tuple(IPSet(set_name(name, family), set_type, family, comment, tuple(sorted(entries[name])))
                   for name, set_type, comment in _SETS)
    glue = _iptables_restore(family, {s.name: s for s in ipsets}, settings, lb_no_node_access)
    return IPVSRules(family=family, virtual_servers=tuple(servers.values()),
                     bound_addresses=tuple(sorted(bound.values())), ipsets=ipsets, iptables_restore=glue)


def _iptables_restore(family: int, sets: dict[str, IPSet], settings: ProxierSettings,
                      lb_no_node_access: list[tuple[str, str, int]]) -> str:
    """``writeIptablesRules``: the constant glue around the sets, as ``iptables-restore`` input."""
    mark = settings.mark
    detector = settings.local_detector(family)

    def s(name: str) -> IPSet:
        return sets[set_name(name, family)]

    def match(name: str, match_type: str) -> str:
        return f'-m comment --comment "{s(name).comment}" -m set --match-set {s(name).name} {match_type}'

    nat = [f"-A KUBE-SERVICES -s {'127.0.0.0/8' if family == 4 else '::1/128'} -j RETURN"]
    filt: list[str] = []
    for name, table, chain, target, match_type, proto in _SET_RULES:
        if s(name).entries:
            (nat if table == "nat" else filt).append(
                f"-A {chain}{f' -p {proto}' if proto else ''} {match(name, match_type)} -j {target}")
    if s("KUBE-CLUSTER-IP").entries:
        if settings.masquerade_all:
            nat.append(f"-A KUBE-SERVICES {match('KUBE-CLUSTER-IP', 'dst,dst')} -j KUBE-MARK-MASQ")
        elif detector.implemented:
            nat.append(f"-A KUBE-SERVICES {match('KUBE-CLUSTER-IP', 'dst,dst')} "
                       f"{' '.join(detector.if_not_local)} -j KUBE-MARK-MASQ")
        else:  # no pod CIDR known: masquerade node traffic that picked a VIP of kube-ipvs0 as source
            nat.append(f"-A KUBE-SERVICES {match('KUBE-CLUSTER-IP', 'src,dst')} -j KUBE-MARK-MASQ")
    for name in ("KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL"):
        if s(name).entries:
            rule = f"-A KUBE-SERVICES {match(name, 'dst,dst')}"
            if name == "KUBE-EXTERNAL-IP":
                nat.append(f"{rule} -j KUBE-MARK-MASQ")
            nat.append(f"{rule} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
            nat.append(f"{rule} -m addrtype --dst-type LOCAL -j ACCEPT")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    filt.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
    for ip, proto, port in lb_no_node_access:
        filt.append(f"-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP")
    for name in ("KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER"):  # acceptIPVSTraffic
        if s(name).entries:
            nat.append(f"-A KUBE-SERVICES -m set --match-set {s(name).name} dst,dst -j ACCEPT")
    filt += [
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A KUBE-NODE-PORT {match('KUBE-HEALTH-CHECK-NODE-PORT', 'dst')} -j ACCEPT",
    ]
    for name in ("KUBE-LOAD-BALANCER", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL"):
        filt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {s(name).name} dst,dst -j RETURN")
    filt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {s('KUBE-HEALTH-CHECK-NODE-PORT').name} dst -j RETURN")
    filt.append(f"-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {s('KUBE-IPVS-IPS').name} dst "
                "-j REJECT")
    nat += [
        f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if settings.random_fully else ""),
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
    ]
    lines = ["*nat", *(f":{c} - [0:0]" for c in _NAT_CHAINS), *nat, "COMMIT",
             "*filter", *(f":{c} - [0:0]" for c in _FILTER_CHAINS), *filt, "COMMIT"]
    return "\n".join(lines) + "\n"


def graceful_termination(before: IPVSRules, after: IPVSRules) -> IPVSRules:
    """``after``, with the real servers that left a TCP virtual server kept at weight 0.

    kube-proxy never deletes a real server outright: its GracefulTerminationManager
    sets the weight to 0 (no new connections are scheduled to it) and deletes it
    once its active and inactive connection counts reach 0, checking every minute.
    UDP and SCTP real servers are deleted at once (``expire_nodest_conn`` ends their
    flows). This assumes every departed TCP real server still carries connections.
    """
    old = {vs.key: vs for vs in before.virtual_servers}
    servers = []
    for vs in after.virtual_servers:
        kept = vs.real_servers
        if vs.protocol == "TCP" and vs.key in old:
            now = {(r.address, r.port) for r in kept}
            kept += tuple(replace(r, weight=0) for r in old[vs.key].real_servers if (r.address, r.port) not in now)
        servers.append(replace(vs, real_servers=kept))
    return replace(after, virtual_servers=tuple(servers))


# -- one packet through the glue and the virtual-server table -------------------------------------


@dataclass(frozen=True)
class IPVSWalk:
    """The first packet of a connection in IPVS mode: what decided it and how many rules it met.

    ``evaluated`` counts every iptables rule the packet is compared with (the jumps from the
    built-in chains included; a ``-m set`` match is one hash lookup, one rule) plus one for
    the IPVS service-table lookup; ``steps`` are ``(table, chain, rule)`` of the rules that
    matched; ``virtual_server`` and ``real_server`` the IPVS decision (None: not a VIP).
    """

    evaluated: int
    steps: tuple[tuple[str, str, str], ...]
    virtual_server: VirtualServer | None
    real_server: RealServer | None
    verdict: str
    masquerade: bool


def walk_first_packet(rules: IPVSRules, src: str, dst: str, protocol: str, port: int, *,
                      local: Iterable[object] = ()) -> IPVSWalk:
    """Walk a new connection's first packet, arriving from a pod, through IPVS mode's hooks.

    The order is the kernel's: nat PREROUTING (jump to ``KUBE-SERVICES``); routing (local
    if ``dst`` is one of ``local`` or bound to ``kube-ipvs0``); for local packets filter
    INPUT (priority 0: ``KUBE-IPVS-FILTER``, ``KUBE-PROXY-FIREWALL``, ``KUBE-NODE-PORT``,
    each jump prepended by kube-proxy so the last one ensured comes first), then IPVS at
    LOCAL_IN (priority ``NF_IP_PRI_NAT_SRC - 1``, after the filter, before source NAT):
    one hash lookup of the virtual-server table, then the scheduler picks a real server
    (reported: the first in ipvsadm's order; ``rr`` really starts from the first one
    kube-proxy added, in Go map order) and the DNATed packet leaves through LOCAL_OUT
    (filter OUTPUT: ``KUBE-IPVS-OUT-FILTER``) and nat POSTROUTING (``KUBE-POSTROUTING``);
    other packets go through filter FORWARD (``KUBE-PROXY-FIREWALL``, ``KUBE-FORWARD``) and
    nat POSTROUTING. Each base chain is assumed to hold only kube-proxy's jumps, as in the
    iptables walk.
    """
    proto = protocol.lower()
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    local_ips = {str(ipaddress.ip_address(str(a))) for a in local} | {str(a) for a in rules.bound_addresses}
    sets = {s.name: s for s in rules.ipsets}
    chains: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in rules.iptables_restore.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            chains.setdefault((table, line.split()[1]), []).append(line)
    state = {"evaluated": 0, "mark": False, "masquerade": False}
    steps: list[tuple[str, str, str]] = []
    chosen: list[VirtualServer | None] = [None]

    def in_set(name: str, how: str) -> bool:
        s = sets[name]
        ends = {"src": str(src_ip), "dst": str(dst_ip)}
        if s.set_type == "bitmap:port":
            return str(port) in s.entries
        if s.set_type == "hash:ip":
            return ends[how.split(",")[0]] in s.entries
        first, _, third = (how.split(",") + ["", ""])[:3]
        key = f"{ends[first]},{proto}:{port}"
        if s.set_type == "hash:ip,port":
            return key in s.entries
        if s.set_type == "hash:ip,port,ip":
            return f"{key},{ends[third]}" in s.entries
        return any(e.startswith(key + ",") and src_ip in ipaddress.ip_network(e.split(",")[2]) for e in s.entries)

    def matches(words: list[str]) -> bool:
        i, negate = 0, False
        while i < len(words):
            w = words[i]
            if w == "!":
                negate = True
            elif w in ("-s", "-p", "--match-set", "--dst-type", "--src-type", "--mark", "--ctstate", "--vaddr",
                       "--physdev-is-in"):
                if w == "-s":
                    ok = src_ip in ipaddress.ip_network(words[i + 1])
                elif w == "-p":
                    ok = words[i + 1] == proto
                elif w == "--match-set":
                    ok = in_set(words[i + 1], words[i + 2])
                    i += 1
                elif w == "--dst-type":
                    ok = str(dst_ip) in local_ips
                elif w == "--src-type":
                    ok = str(src_ip) in local_ips
                elif w == "--mark":
                    ok = state["mark"]
                elif w == "--ctstate":
                    ok = "NEW" in words[i + 1].split(",")
                elif w == "--vaddr":
                    vs = chosen[0]
                    ok = vs is not None and vs.key == (words[i + 3].upper(), words[i + 1], int(words[i + 5]))
                    i += 4
                else:  # --physdev-is-in: a pod's packet routed from cni0, not bridged
                    ok, i = False, i - 1
                if ok == negate:
                    return False
                negate = False
                i += 1
            elif w == "-j":
                return True
            i += 1
        return True

    def run(table: str, chain: str) -> str | None:
        """Run a chain; return a terminal verdict, "RETURN", or None at its end."""
        for rule in chains.get((table, chain), []):
            state["evaluated"] += 1
            words = rule.split()
            if not matches(words[2:]):
                continue
            steps.append((table, chain, rule))
            target = words[words.index("-j") + 1]
            if target == "MARK":
                state["mark"] = "--or-mark" in words
            elif target == "MASQUERADE":
                state["masquerade"] = True
                return "ACCEPT"
            elif target in ("ACCEPT", "DROP", "REJECT", "RETURN"):
                return target
            else:
                verdict = run(table, target)
                if verdict in ("ACCEPT", "DROP", "REJECT"):
                    return verdict
        return None

    def hook(table: str, chain: str, targets: Iterable[str]) -> str:
        for target in targets:  # kube-proxy's jump rules, the only rules of the built-in chain
            state["evaluated"] += 1
            steps.append((table, chain, f"-A {chain} -j {target}"))
            verdict = run(table, target)
            if verdict in ("ACCEPT", "DROP", "REJECT"):
                return verdict
        return "ACCEPT"

    real_server = None
    verdict = hook("nat", "PREROUTING", ["KUBE-SERVICES"])
    if str(dst_ip) in local_ips:
        verdict = hook("filter", "INPUT", ["KUBE-IPVS-FILTER", "KUBE-PROXY-FIREWALL", "KUBE-NODE-PORT"])
        if verdict == "ACCEPT":
            state["evaluated"] += 1  # the IPVS service table: one hash lookup
            key = (protocol.upper(), str(dst_ip), port)
            vs = next((v for v in rules.virtual_servers if v.key == key), None)
            chosen[0] = vs
            if vs is not None and vs.real_servers:
                real_server = sorted(vs.real_servers, key=cmp_to_key(_cmp_dests))[0]
                verdict = hook("filter", "OUTPUT", ["KUBE-IPVS-OUT-FILTER"])
                if verdict == "ACCEPT":
                    verdict = hook("nat", "POSTROUTING", ["KUBE-POSTROUTING"])
            elif vs is not None:
                verdict = "DROP"  # a virtual server without real servers: IPVS drops the packet
    else:
        verdict = hook("filter", "FORWARD", ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD"])
        if verdict == "ACCEPT":
            verdict = hook("nat", "POSTROUTING", ["KUBE-POSTROUTING"])
    return IPVSWalk(state["evaluated"], tuple(steps), chosen[0], real_server, verdict, state["masquerade"])
