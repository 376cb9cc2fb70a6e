"""kube-proxy's nftables mode: the ``nft -f`` input of a full sync, as kube-proxy's own tests dump it.

The same distributed L4 load balancer as :mod:`.iptables`, written for
nftables. Where the iptables mode walks a list of rules per packet (one
``KUBE-SERVICES`` rule per VIP:port), nftables looks the packet up in a
**verdict map** (vmap): a hash table whose key is built from the packet and
whose value is a verdict such as ``goto service-...``. One lookup finds the
Service, however many Services there are. Everything lives in one table per
family, ``ip kube-proxy`` (``ip6 kube-proxy``), so other tools' tables are
never touched and ``nft delete table ip kube-proxy`` removes it all.

In load-balancer words, for one Service port:

* ``service-ips`` (``daddr . l4proto . dport : verdict``) is the VIP table:
  the ClusterIP, each externalIP and each LB ingress IP, mapped to the
  Service's chain (``nat-prerouting`` and ``nat-output`` jump to ``services``,
  which does the lookup);
* ``service-nodeports`` (``l4proto . dport : verdict``) is the static PAT
  table, consulted only for packets to one of the node's own addresses
  (``nodeport-ips``, from ``--nodeport-addresses``; default: the node's
  primary IPs, never localhost);
* ``service-<hash>-<ns>/<name>/<proto>/<port>`` is the server pool:
  ``numgen random mod n vmap { 0 : goto endpoint-A , 1 : goto endpoint-B }``
  draws one number per new connection, so each endpoint gets exactly 1/n;
* ``endpoint-<hash>-...`` is one real server: ``dnat to podIP:port``
  (conntrack un-DNATs the replies, so the client only ever sees the VIP);
* ``external-...`` handles external destinations (masquerade for
  ``externalTrafficPolicy: Cluster``; keep the client source and use the
  ``local-...`` pool for ``Local``), ``firewall-...`` is the
  ``loadBalancerSourceRanges`` ACL (via the ``firewall-ips`` vmap), and
  ``affinity-...`` sets (with a timeout per element) remember ClientIP
  stickiness;
* ``no-endpoint-services`` / ``no-endpoint-nodeports`` map VIPs and NodePorts
  without endpoints to ``goto reject-chain`` (ICMP unreachable) or ``drop``;
  ``cluster-ips-check`` rejects unused ports of a ClusterIP and drops
  traffic to unallocated addresses in the Service CIDRs;
* ``mark-for-masquerade`` sets the masquerade bit in the packet mark and
  ``masquerading`` (postrouting) masquerades marked packets.

The text is what ``knftables.Fake.Dump()`` prints after kube-proxy's full sync
(``syncProxyRules`` in ``pkg/proxy/nftables/proxier.go``), the form
``TestOverallNFTablesRules`` compares against (v1.34 development line): only
``add`` commands, the state rather than the commands that got there. It is
ordered so that ``nft -f`` accepts it in one transaction: the table, its sets
and maps, every chain, the affinity sets, then the rules, then the elements
(an element ``goto``-ing a chain needs the chain first). kube-proxy itself
also sends ``flush`` commands, to replace what an earlier sync wrote.

>>> import ipaddress
>>> from kubenet_lab.objects import Service, ServicePort, EndpointSlice, Endpoint, EndpointPort
>>> svc = Service(name="web", namespace="default", ports=(ServicePort(80, 8080, name="http"),),
...               cluster_ips=(ipaddress.ip_address("10.96.0.20"),))
>>> eps = EndpointSlice(name="web-abcde", service="web", address_type="IPv4",
...                     endpoints=(Endpoint((ipaddress.ip_address("10.244.1.2"),)),),
...                     ports=(EndpointPort(8080, name="http"),))
>>> settings = ProxierSettings("node-1", node_ips=["192.168.0.11"], cluster_cidrs=["10.244.0.0/16"],
...                            nodeport_addresses="primary")
>>> text = nft_ruleset([svc], [eps], settings, service_cidrs=["10.96.0.0/12"])
>>> print("\\n".join(line for line in text.splitlines() if "default/web" in line))
add chain ip kube-proxy service-SUSTUHLJ-default/web/tcp/http
add chain ip kube-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080
add rule ip kube-proxy service-SUSTUHLJ-default/web/tcp/http ip daddr 10.96.0.20 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-SUSTUHLJ-default/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 }
add rule ip kube-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 ip saddr 10.244.1.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 meta l4proto tcp dnat to 10.244.1.2:8080
add element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http }

Introduced in chapter 05 (kube-proxy modes).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping

from ..addresses import parse_network
from ..objects import EndpointSlice, Service
from .endpoints import EndpointInfo, categorize_endpoints
from .localdetect import LocalTrafficDetector
from .serviceport import ServicePortInfo
from .settings import ProxierSettings, check_family
from .state import ProxyState

__all__ = [
    "nft_ruleset",
    "sync_nftables_rules",
    "hash_and_truncate",
    "service_port_chain_name_base",
    "endpoint_chain_name_base",
    "KUBE_PROXY_TABLE",
    "BASE_CHAINS",
]

# Every object lives in this table (kubeProxyTable), so names need no "KUBE-" prefix.
KUBE_PROXY_TABLE = "kube-proxy"

# The base chains, hooked into netfilter (v1.34 test's baseRules): name, type, hook, priority.
# The filter chains that look at pre-DNAT destinations run just before DNAT (-100).
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

# The jumps from base chains into kube-proxy's top-level chains, in the order each base
# chain holds them (nftablesJumpChains).
_JUMPS = (
    ("filter-prerouting-pre-dnat", "ct state new", "firewall-check"),
    ("filter-output-pre-dnat", "ct state new", "firewall-check"),
    ("filter-input", "ct state new", "nodeport-endpoints-check"),
    ("filter-input", "ct state new", "service-endpoints-check"),
    ("filter-forward", "ct state new", "service-endpoints-check"),
    ("filter-forward", "ct state new", "cluster-ips-check"),
    ("filter-output", "ct state new", "service-endpoints-check"),
    ("filter-output", "ct state new", "cluster-ips-check"),
    ("nat-prerouting", "", "services"),
    ("nat-output", "", "services"),
    ("nat-postrouting", "", "masquerading"),
)

_REGULAR_CHAINS = ("services", "service-endpoints-check", "nodeport-endpoints-check", "firewall-check",
                   "cluster-ips-check", "mark-for-masquerade", "masquerading")
_REJECT_CHAIN = "reject-chain"

# knftables.NameLengthMax (256) minus the longest prefix ("endpoint-", "affinity-", ...: 16).
_CHAIN_NAME_BASE_LENGTH_MAX = 256 - 16


def hash_and_truncate(name: str) -> str:
    """``hashAndTruncate``: 8 base32 characters of SHA-256(``name``), a dash, then ``name``.

    The hash keeps names that differ in one digit visually distinct and keeps a
    name unique if it ever has to be cut to 240 characters (ending ``...``).

    >>> hash_and_truncate("ns1/svc1/tcp/p80")
    'ULMVA6XW-ns1/svc1/tcp/p80'
    """
    text = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8] + "-" + name
    if len(text) > _CHAIN_NAME_BASE_LENGTH_MAX:
        text = text[:_CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return text


def service_port_chain_name_base(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """``servicePortChainNameBase``: ``<hash>-<ns>/<name>/<proto>/<port name>``.

    Unlike the iptables mode the readable name is kept (nft names may be 256
    characters and contain ``/``); ``service-``, ``local-``, ``external-`` and
    ``firewall-`` are prefixed to it.

    >>> service_port_chain_name_base("ns2", "svc2", "tcp", "p80")
    '42NFTM6N-ns2/svc2/tcp/p80'
    """
    return hash_and_truncate(f"{namespace}/{name}/{protocol}/{port_name}")


def endpoint_chain_name_base(namespace: str, name: str, protocol: str, port_name: str, endpoint: EndpointInfo) -> str:
    """``servicePortEndpointChainNameBase``: the service part, ``__``, then ``<ip>/<port>``.

    IPv6 colons become dots (``:`` is not allowed in an nft name).

    >>> endpoint_chain_name_base("ns1", "svc1", "tcp", "p80", EndpointInfo("10.180.0.1", 80))
    '5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'
    """
    return hash_and_truncate(f"{namespace}/{name}/{protocol}/{port_name}__{endpoint.ip.replace(':', '.')}/{endpoint.port}")


def nft_ruleset(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice], settings: ProxierSettings,
                family: int = 4, *, service_cidrs: Iterable[object] = (),
                health_check_node_ports: Mapping[str, int] | None = None) -> str:
    """The ``nft -f`` input of a full sync for ``family`` (table ``ip kube-proxy`` or ``ip6 kube-proxy``).

    ``service_cidrs`` are the cluster's Service CIDRs (``--service-cluster-ip-range``;
    kube-proxy reads them from the ServiceCIDR objects): traffic to an unallocated
    address in them is dropped. ``settings.nodeport_addresses`` says where NodePorts
    answer; kube-proxy's nftables mode defaults it to ``primary``.
    """
    check_family("nft_ruleset", family)
    state = ProxyState.build(services, endpoint_slices, settings, family, health_check_node_ports)
    return sync_nftables_rules(state, settings, service_cidrs)


def _nft_detector(words: tuple[str, ...], ip: str) -> str:
    """The local-traffic detector's iptables words (``! -s 10.0.0.0/8``) in nft (``ip saddr != 10.0.0.0/8``)."""
    negated = words[0] == "!"
    option, value = words[-2:]
    if option == "-s":
        return f"{ip} saddr {'!= ' if negated else ''}{value}"
    # "-i br0" or "-i veth+": nft spells the interface-name wildcard "*" and quotes it.
    value = f'"{value[:-1]}*"' if value.endswith("+") else value
    return f"iifname {'!= ' if negated else ''}{value}"


def sync_nftables_rules(state: ProxyState, settings: ProxierSettings, service_cidrs: Iterable[object] = ()) -> str:
    """``syncProxyRules`` on a full sync: the ``add`` commands for ``state`` on ``settings``' node."""
    family = state.family
    ip = "ip" if family == 4 else "ip6"
    addr_type = "ipv4_addr" if family == 4 else "ipv6_addr"
    no_localhost = "ip daddr != 127.0.0.0/8" if family == 4 else "ip6 daddr != ::1"
    mark = settings.mark
    detector = settings.local_detector(family)
    cidrs = [c for c in (parse_network(c, obj="nft_ruleset", field="service_cidrs", strict=False)
                         for c in service_cidrs) if c.version == family]
    nodeports = settings.nodeport_addresses_for(family)
    prefix = f"{ip} {KUBE_PROXY_TABLE}"

    sets = [f'add set {prefix} cluster-ips {{ type {addr_type} ; comment "Active ClusterIPs" ; }}']
    if not nodeports.match_all:
        sets.append(f'add set {prefix} nodeport-ips {{ type {addr_type} ; comment "IPs that accept NodePort traffic" ; }}')
    triple = f"{addr_type} . inet_proto . inet_service : verdict"
    pair = "inet_proto . inet_service : verdict"
    maps = [
        f'add map {prefix} firewall-ips {{ type {triple} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }}',
        f'add map {prefix} no-endpoint-nodeports {{ type {pair} ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }}',
        f'add map {prefix} no-endpoint-services {{ type {triple} ; comment "vmap to drop or reject packets to services with no endpoints" ; }}',
        f'add map {prefix} service-ips {{ type {triple} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {prefix} service-nodeports {{ type {pair} ; comment "NodePort traffic" ; }}',
    ]
    chains = [f"add chain {prefix} {name} {{ type {kind} hook {hook} priority {priority} ; }}"
              for name, kind, hook, priority in BASE_CHAINS]
    chains += [f"add chain {prefix} {name}" for name in _REGULAR_CHAINS]
    chains.append(f'add chain {prefix} {_REJECT_CHAIN} {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}')
    affinity_sets: list[str] = []
    rules: list[str] = []
    elements: list[str] = []

    def rule(chain: str, text: str) -> None:
        rules.append(f"add rule {prefix} {chain} {text}")

    def element(container: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        note = f' comment "{comment}"' if comment is not None else ""
        elements.append(f"add element {prefix} {container} {{ {key}{note}{'' if value is None else ' : ' + value} }}")

    # Fixed content (setupNFTables).
    for source, extra, target in _JUMPS:
        rule(source, f"{extra} jump {target}".strip())
    rule("mark-for-masquerade", f"mark set mark or {mark}")
    rule("masquerading", f"mark and {mark} == 0 return")
    rule("masquerading", f"mark set mark xor {mark}")
    rule("masquerading", "masquerade fully-random")
    rule("cluster-ips-check", f'{ip} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"')
    if cidrs:
        rule("cluster-ips-check", f'{ip} daddr {{ {",".join(str(c) for c in cidrs)} }} drop '
                                  'comment "Drop traffic to unallocated ClusterIPs"')
    rule(_REJECT_CHAIN, "reject")
    rule("service-endpoints-check", f"{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    rule("firewall-check", f"{ip} daddr . meta l4proto . th dport vmap @firewall-ips")
    rule("services", f"{ip} daddr . meta l4proto . th dport vmap @service-ips")
    if nodeports.match_all:
        rule("nodeport-endpoints-check", f"{no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports")
        rule("services", f"fib daddr type local {no_localhost} meta l4proto . th dport vmap @service-nodeports")
    else:
        rule("nodeport-endpoints-check", f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
        rule("services", f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
        for address in nodeports.node_ips(settings.all_interface_addresses()):
            if not address.is_loopback:  # "localhost NodePorts are not supported"
                element("nodeport-ips", str(address))

    for sp in state.service_ports:
        _service_port(sp, state.endpoints.get(sp.name, ()), settings, ip, addr_type, detector,
                      chains, affinity_sets, rule, element)

    lines = [f'add table {prefix} {{ comment "rules for kube-proxy" ; }}', *sets, *maps, *chains,
             *affinity_sets, *rules, *elements]
    return "\n".join(lines) + "\n"


def _service_port(sp: ServicePortInfo, endpoints: tuple[EndpointInfo, ...], settings: ProxierSettings, ip: str,
                  addr_type: str, detector: LocalTrafficDetector, chains: list[str], affinity_sets: list[str],
                  rule: Callable[[str, str], None], element: Callable[..., None]) -> None:
    """The chains, rules and map elements of one service port (the body of syncProxyRules' loop)."""
    prefix = f"{ip} {KUBE_PROXY_TABLE}"
    proto = sp.protocol
    name = str(sp.name)
    base = service_port_chain_name_base(sp.name.namespace, sp.name.name, proto, sp.name.port)
    cluster_policy_chain = "service-" + base
    local_policy_chain = "local-" + base
    external_traffic_chain = "external-" + base
    firewall_chain = "firewall-" + base
    pools = categorize_endpoints(endpoints, sp)
    has_endpoints = pools.has_any
    endpoint_bases = {ep.endpoint: endpoint_chain_name_base(sp.name.namespace, sp.name.name, proto, sp.name.port, ep)
                      for ep in pools.reachable}

    uses_cluster_policy_chain = bool(pools.cluster) and sp.uses_cluster_endpoints
    uses_local_policy_chain = bool(pools.local) and sp.uses_local_endpoints
    internal_traffic_chain, has_internal_endpoints = cluster_policy_chain, has_endpoints
    if sp.internal_policy_local:
        internal_traffic_chain, has_internal_endpoints = local_policy_chain, has_endpoints and bool(pools.local)
    external_policy_chain, has_external_endpoints = cluster_policy_chain, has_endpoints
    if sp.external_policy_local:
        external_policy_chain, has_external_endpoints = local_policy_chain, has_endpoints and bool(pools.local)
    # Built even without externally usable endpoints: the pod and node short circuits need it.
    uses_external_traffic_chain = has_endpoints and sp.externally_accessible
    uses_firewall_chain = bool(sp.load_balancer_vips) and bool(sp.load_balancer_source_ranges)

    # No endpoints at all: reject (ICMP unreachable). Endpoints elsewhere only: drop.
    internal_verdict = external_verdict = f"goto {_REJECT_CHAIN}" if not has_endpoints else "drop"

    for chain, used in ((cluster_policy_chain, uses_cluster_policy_chain), (local_policy_chain, uses_local_policy_chain),
                        (external_traffic_chain, uses_external_traffic_chain), (firewall_chain, uses_firewall_chain)):
        if used:
            chains.append(f"add chain {prefix} {chain}")
    chains.extend(f"add chain {prefix} endpoint-{endpoint_bases[ep.endpoint]}" for ep in pools.reachable)

    # The VIPs: ClusterIP, externalIPs, LoadBalancer ingress IPs; and the NodePort.
    port = sp.port
    cluster_ip = str(sp.cluster_ip)
    element("cluster-ips", cluster_ip)
    if has_internal_endpoints:
        element("service-ips", f"{cluster_ip} . {proto} . {port}", f"goto {internal_traffic_chain}")
    else:
        element("no-endpoint-services", f"{cluster_ip} . {proto} . {port}", internal_verdict, name)
    for external_ip in sp.external_ips:
        if has_endpoints:
            element("service-ips", f"{external_ip} . {proto} . {port}", f"goto {external_traffic_chain}")
        if not has_external_endpoints:
            element("no-endpoint-services", f"{external_ip} . {proto} . {port}", external_verdict, name)
    for vip in sp.load_balancer_vips:
        if has_endpoints:
            element("service-ips", f"{vip} . {proto} . {port}", f"goto {external_traffic_chain}")
        if uses_firewall_chain:
            element("firewall-ips", f"{vip} . {proto} . {port}", f"goto {firewall_chain}")
    if not has_external_endpoints:
        for vip in sp.load_balancer_vips:
            element("no-endpoint-services", f"{vip} . {proto} . {port}", external_verdict, name)
    if sp.node_port:
        # NodePorts are not subject to loadBalancerSourceRanges.
        if has_endpoints:
            element("service-nodeports", f"{proto} . {sp.node_port}", f"goto {external_traffic_chain}")
        if not has_external_endpoints:
            element("no-endpoint-nodeports", f"{proto} . {sp.node_port}", external_verdict, name)

    # Masquerade ClusterIP traffic from outside the pod network (it may have been routed here).
    if has_internal_endpoints:
        if settings.masquerade_all:
            rule(internal_traffic_chain, f"{ip} daddr {cluster_ip} jump mark-for-masquerade")
        elif detector.implemented:
            rule(internal_traffic_chain, f"{ip} daddr {cluster_ip} {_nft_detector(detector.if_not_local, ip)} "
                                         "jump mark-for-masquerade")

    # External destinations.
    if uses_external_traffic_chain:
        if not sp.external_policy_local:
            rule(external_traffic_chain, "jump mark-for-masquerade")
        else:
            if detector.implemented:
                rule(external_traffic_chain, f"{_nft_detector(detector.if_local, ip)} goto {cluster_policy_chain} "
                                             'comment "short-circuit pod traffic"')
            rule(external_traffic_chain, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            rule(external_traffic_chain, f"fib saddr type local goto {cluster_policy_chain} "
                                         'comment "short-circuit local traffic"')
        if has_external_endpoints:
            rule(external_traffic_chain, f"goto {external_policy_chain}")

    # loadBalancerSourceRanges: drop what no range allows (the node itself is let through
    # via the VIP as source when a range covers the node IP: LB VIPs often loop back locally).
    if uses_firewall_chain:
        node_ip = settings.node_ip(sp.cluster_ip.version)
        sources = [str(c) for c in sp.load_balancer_source_ranges]
        if node_ip is not None and any(node_ip in c for c in sp.load_balancer_source_ranges):
            sources += [str(v) for v in sp.load_balancer_vips]
        rule(firewall_chain, f"{ip} saddr != {{ {' , '.join(sources)} }} drop")

    affinity = sp.session_affinity_client_ip
    if affinity:
        for ep in pools.reachable:
            affinity_sets.append(f"add set {prefix} affinity-{endpoint_bases[ep.endpoint]} {{ type {addr_type} ; "
                                 f"flags dynamic,timeout ; timeout {sp.sticky_max_age_seconds}s ; }}")

    # The pools: sticky sessions first, then one random draw over the endpoints.
    for chain, used, pool in ((cluster_policy_chain, uses_cluster_policy_chain, pools.cluster),
                              (local_policy_chain, uses_local_policy_chain, pools.local)):
        if not used:
            continue
        if affinity:
            for ep in pool:
                base_name = endpoint_bases[ep.endpoint]
                rule(chain, f"{ip} saddr @affinity-{base_name} goto endpoint-{base_name}")
        entries = " , ".join(f"{i} : goto endpoint-{endpoint_bases[ep.endpoint]}" for i, ep in enumerate(pool))
        rule(chain, f"numgen random mod {len(pool)} vmap {{ {entries} }}")

    # The real servers; hairpin traffic (a pod reaching itself via the VIP) is masqueraded.
    for ep in pools.reachable:
        base_name = endpoint_bases[ep.endpoint]
        rule("endpoint-" + base_name, f"{ip} saddr {ep.ip} jump mark-for-masquerade")
        if affinity:
            rule("endpoint-" + base_name, f"update @affinity-{base_name} {{ {ip} saddr }}")
        rule("endpoint-" + base_name, f"meta l4proto {proto} dnat to {ep.endpoint}")
