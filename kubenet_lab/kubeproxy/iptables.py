"""kube-proxy's iptables mode: the exact ``iptables-restore`` input of a full sync.

Every node's kube-proxy turns Services into NAT rules, a distributed L4 load
balancer built from netfilter. For one Service port it writes, in the ``nat`` table:

1. in ``KUBE-SERVICES``, one rule per VIP (ClusterIP, externalIP, LB ingress
   IP) matching ``-d VIP --dport port``: the classifier;
2. in ``KUBE-NODEPORTS``, one rule per NodePort: static PAT on any local address;
3. a ``KUBE-SVC-*`` chain (the pool) whose rules pick an endpoint with
   ``-m statistic --mode random --probability p``: with n endpoints the first
   rule matches with 1/n, the next with 1/(n-1) of what is left, ..., the last
   always, so every endpoint gets exactly 1/n of new connections;
4. a ``KUBE-SEP-*`` chain per endpoint: ``-j DNAT --to-destination podIP:port``;
   conntrack then un-DNATs the replies, so the client only ever sees the VIP;
5. masquerading (SNAT to the node's address, PAT on the source port) where the
   reply would otherwise bypass this node: traffic from outside the pod network
   (``KUBE-MARK-MASQ`` sets a bit in the packet mark, ``KUBE-POSTROUTING``
   masquerades marked packets), and hairpin traffic (a pod reaching itself
   through its own Service);
6. ``KUBE-EXT-*`` (external destinations: masquerade, or keep the client
   source for ``externalTrafficPolicy: Local``), ``KUBE-SVL-*`` (the pool of
   this node's endpoints) and ``KUBE-FW-*`` (``loadBalancerSourceRanges`` ACL).

and in the ``filter`` table the REJECTs for Services without endpoints, DROPs
for Local-policy Services without local endpoints, the source-range DROPs and
the forwarding ACCEPTs. :mod:`kubenet_lab.kubeproxy.chains` lists every chain.

The text is what ``syncProxyRules`` in ``pkg/proxy/iptables/proxier.go``
(v1.33/v1.34) feeds to ``iptables-restore --noflush --counters`` on a full
sync: ``*filter``, chain declarations, rules, ``COMMIT``, then the same for
``*nat``. kube-proxy visits service ports in Go map order, so the rules of
different Services are interleaved at random on a real node; here they come
in input order. Only the order of rules within a chain matters to netfilter,
and kube-proxy's own tests compare outputs after sorting by chain.

>>> import ipaddress
>>> from kubenet_lab.objects import Service, ServicePort, EndpointSlice, Endpoint, EndpointPort
>>> svc = Service(name="web", namespace="default", ports=(ServicePort(80, 8080, name="http"),),
...               cluster_ips=(ipaddress.ip_address("10.96.0.20"),))
>>> eps = EndpointSlice(name="web-abcde", service="web", address_type="IPv4",
...                     endpoints=(Endpoint((ipaddress.ip_address("10.244.1.2"),)),),
...                     ports=(EndpointPort(8080, name="http"),))
>>> settings = ProxierSettings("node-1", node_ips=["192.168.0.11"], cluster_cidrs=["10.244.0.0/16"])
>>> text = iptables_restore([svc], [eps], settings)
>>> print("\\n".join(line for line in text.splitlines() if "default/web" in line))
-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.2:8080" -j KUBE-SEP-UIQK3OSOSTRHRPBX
-A KUBE-SEP-UIQK3OSOSTRHRPBX -m comment --comment default/web:http -s 10.244.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-UIQK3OSOSTRHRPBX -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.1.2:8080
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..objects import EndpointSlice, Service
from .chains import (
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    endpoint_chain,
    is_service_chain,
    service_port_chain_hash,
)
from .endpoints import EndpointInfo, categorize_endpoints
from .settings import ProxierSettings, check_family
from .state import ProxyState

__all__ = [
    "iptables_restore",
    "sync_proxy_rules",
    "probability",
    "NFACCT_CT_STATE_INVALID_DROPPED",
    "NFACCT_LOCALHOST_NODEPORTS_ACCEPTED",
]

# nfacct counter names (pkg/proxy/metrics: IPTablesCTStateInvalidDroppedNFAcctCounter,
# LocalhostNodePortAcceptedNFAcctCounter).
NFACCT_CT_STATE_INVALID_DROPPED = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NODEPORTS_ACCEPTED = "localhost_nps_accepted_pkts"

_NODEPORTS_COMMENT = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


def probability(n: int) -> str:
    """``computeProbability``: ``1/n`` printed as Go's ``%0.10f`` (ten decimals, correctly rounded).

    >>> probability(2), probability(3), probability(100001)
    ('0.5000000000', '0.3333333333', '0.0000099999')
    """
    return f"{1.0 / n:.10f}"


def iptables_restore(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
                     settings: ProxierSettings, family: int = 4, *,
                     health_check_node_ports: Mapping[str, int] | None = None,
                     existing_nat_chains: Iterable[str] = ()) -> str:
    """The ``iptables-restore`` input (``ip6tables-restore`` for ``family=6``) of a full sync.

    ``services`` and ``endpoint_slices`` are :mod:`kubenet_lab.objects` values;
    ``settings`` is the node's kube-proxy configuration. ``health_check_node_ports``
    maps ``namespace/name`` to ``spec.healthCheckNodePort``. ``existing_nat_chains``
    are the chains ``iptables-save -t nat`` shows before the sync: kube-proxy
    flushes and deletes (``-X``) the per-Service ones it no longer writes.
    """
    check_family("iptables_restore", family)
    state = ProxyState.build(services, endpoint_slices, settings, family, health_check_node_ports)
    return sync_proxy_rules(state, settings, existing_nat_chains)


def _comment(text: str) -> str:
    return f'"{text}"'


def sync_proxy_rules(state: ProxyState, settings: ProxierSettings, existing_nat_chains: Iterable[str] = ()) -> str:
    """``syncProxyRules`` on a full sync: the restore input for ``state`` on ``settings``' node."""
    family = state.family
    mark = settings.mark
    detector = settings.local_detector(family)
    if_local = " ".join(detector.if_local)
    if_not_local = " ".join(detector.if_not_local)
    localhost_nodeports = settings.localhost_nodeports_for(family)
    node_ip = settings.node_ip(family)
    large = state.large_cluster
    masquerade_all = settings.masquerade_all

    filter_chains = [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]
    filter_rules: list[str] = []
    nat_chains = [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]
    nat_rules = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if settings.random_fully else ""),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    if family == 4 and localhost_nodeports:
        # The anti-martian rule kubelet also writes: route_localnet=1 (needed for NodePorts on
        # 127.0.0.1) must not let outside hosts reach services bound to localhost.
        filter_chains.append(KUBE_FIREWALL)
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
            "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    nodeport_localhost_counter = family == 4 and localhost_nodeports and settings.nfacct
    active_nat_chains: set[str] = set()

    for sp in state.service_ports:
        proto = sp.protocol
        name = str(sp.name)
        chain_hash = service_port_chain_hash(name, proto)
        cluster_policy_chain = "KUBE-SVC-" + chain_hash
        local_policy_chain = "KUBE-SVL-" + chain_hash
        external_traffic_chain = "KUBE-EXT-" + chain_hash
        firewall = "KUBE-FW-" + chain_hash
        pools = categorize_endpoints(state.endpoints.get(sp.name, ()), sp)
        has_endpoints = pools.has_any

        uses_cluster_policy_chain = bool(pools.cluster) and sp.uses_cluster_endpoints
        uses_local_policy_chain = bool(pools.local) and sp.uses_local_endpoints
        internal_traffic_chain = cluster_policy_chain
        has_internal_endpoints = has_endpoints
        if sp.internal_policy_local:
            internal_traffic_chain = local_policy_chain
            has_internal_endpoints = has_internal_endpoints and bool(pools.local)
        external_policy_chain = cluster_policy_chain
        has_external_endpoints = has_endpoints
        if sp.external_policy_local:
            external_policy_chain = local_policy_chain
            has_external_endpoints = has_external_endpoints and bool(pools.local)
        # Built even without externally usable endpoints: the short circuits for pods and
        # for the node itself still work then.
        uses_external_traffic_chain = has_endpoints and sp.externally_accessible
        uses_firewall_chain = has_endpoints and bool(sp.load_balancer_vips) and bool(sp.load_balancer_source_ranges)
        load_balancer_traffic_chain = firewall if uses_firewall_chain else external_traffic_chain

        if not has_endpoints:
            internal_filter = external_filter = "REJECT"
            internal_filter_comment = external_filter_comment = _comment(f"{name} has no endpoints")
        else:
            internal_filter = external_filter = "DROP"
            internal_filter_comment = external_filter_comment = _comment(f"{name} has no local endpoints")

        match = f"-m {proto} -p {proto}"
        cluster_ip = str(sp.cluster_ip)
        port = sp.port
        cluster_ip_match = f"-m comment --comment {_comment(name + ' cluster IP')} {match} -d {cluster_ip} --dport {port}"

        # The VIP: ClusterIP.
        if has_internal_endpoints:
            nat_rules.append(f"-A {KUBE_SERVICES} {cluster_ip_match} -j {internal_traffic_chain}")
        else:
            filter_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {internal_filter_comment} {match} "
                                f"-d {cluster_ip} --dport {port} -j {internal_filter}")

        # externalIPs.
        for external_ip in sp.external_ips:
            if has_endpoints:
                nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_comment(name + ' external IP')} "
                                 f"{match} -d {external_ip} --dport {port} -j {external_traffic_chain}")
            if not has_external_endpoints:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_filter_comment} "
                                    f"{match} -d {external_ip} --dport {port} -j {external_filter}")

        # LoadBalancer ingress IPs.
        for vip in sp.load_balancer_vips:
            if has_endpoints:
                nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_comment(name + ' loadbalancer IP')} "
                                 f"{match} -d {vip} --dport {port} -j {load_balancer_traffic_chain}")
            if uses_firewall_chain:
                filter_rules.append(f"-A {KUBE_PROXY_FIREWALL} -m comment --comment "
                                    f"{_comment(f'{name} traffic not accepted by {firewall}')} "
                                    f"{match} -d {vip} --dport {port} -j DROP")
        if not has_external_endpoints:
            for vip in sp.load_balancer_vips:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_filter_comment} "
                                    f"{match} -d {vip} --dport {port} -j {external_filter}")

        # NodePort: not subject to loadBalancerSourceRanges.
        if sp.node_port:
            if has_endpoints:
                if nodeport_localhost_counter:
                    nat_rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} -d 127.0.0.0/8 "
                                     f"--dport {sp.node_port} -m nfacct --nfacct-name "
                                     f"{NFACCT_LOCALHOST_NODEPORTS_ACCEPTED} -j {external_traffic_chain}")
                nat_rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} "
                                 f"--dport {sp.node_port} -j {external_traffic_chain}")
            if not has_external_endpoints:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_filter_comment} "
                                    f"-m addrtype --dst-type LOCAL {match} --dport {sp.node_port} -j {external_filter}")

        # The health-check NodePort of an eTP=Local LoadBalancer, answered by kube-proxy itself.
        if sp.health_check_node_port:
            filter_rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {_comment(name + ' health check node port')} "
                                f"-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT")

        # Masquerade ClusterIP traffic from outside the pod network.
        if has_internal_endpoints:
            if masquerade_all:
                nat_rules.append(f"-A {internal_traffic_chain} {cluster_ip_match} -j {KUBE_MARK_MASQ}")
            elif detector.implemented:
                nat_rules.append(f"-A {internal_traffic_chain} {cluster_ip_match} {if_not_local} -j {KUBE_MARK_MASQ}")

        # External destinations.
        if uses_external_traffic_chain:
            nat_chains.append(external_traffic_chain)
            active_nat_chains.add(external_traffic_chain)
            if not sp.external_policy_local:
                nat_rules.append(f"-A {external_traffic_chain} -m comment --comment "
                                 f"{_comment(f'masquerade traffic for {name} external destinations')} -j {KUBE_MARK_MASQ}")
            else:
                if detector.implemented:
                    nat_rules.append(f"-A {external_traffic_chain} -m comment --comment "
                                     f"{_comment(f'pod traffic for {name} external destinations')} "
                                     f"{if_local} -j {cluster_policy_chain}")
                nat_rules.append(f"-A {external_traffic_chain} -m comment --comment "
                                 f"{_comment(f'masquerade LOCAL traffic for {name} external destinations')} "
                                 f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}")
                nat_rules.append(f"-A {external_traffic_chain} -m comment --comment "
                                 f"{_comment(f'route LOCAL traffic for {name} external destinations')} "
                                 f"-m addrtype --src-type LOCAL -j {cluster_policy_chain}")
            if has_external_endpoints:
                nat_rules.append(f"-A {external_traffic_chain} -j {external_policy_chain}")

        # loadBalancerSourceRanges.
        if uses_firewall_chain:
            nat_chains.append(firewall)
            active_nat_chains.add(firewall)
            prefix = f"-A {firewall} -m comment --comment {_comment(name + ' loadbalancer IP')}"
            allow_from_node = False
            for cidr in sp.load_balancer_source_ranges:
                nat_rules.append(f"{prefix} -s {cidr} -j {external_traffic_chain}")
                allow_from_node = allow_from_node or (node_ip is not None and node_ip in cidr)
            if allow_from_node:
                # A node reaching an LB VIP that is also a local address loops back with the VIP as source.
                for vip in sp.load_balancer_vips:
                    nat_rules.append(f"{prefix} -s {vip} -j {external_traffic_chain}")
            nat_rules.append(f"-A {firewall} -m comment --comment "
                             f"{_comment(f'other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL')}")

        # The pools and their endpoints.
        chains = {ep.endpoint: endpoint_chain(name, proto, ep.endpoint) for ep in pools.reachable}
        if uses_cluster_policy_chain:
            nat_chains.append(cluster_policy_chain)
            active_nat_chains.add(cluster_policy_chain)
            _service_to_endpoint_rules(nat_rules, name, sp.session_affinity_client_ip, sp.sticky_max_age_seconds,
                                       cluster_policy_chain, pools.cluster, chains, large)
        if uses_local_policy_chain:
            nat_chains.append(local_policy_chain)
            active_nat_chains.add(local_policy_chain)
            _service_to_endpoint_rules(nat_rules, name, sp.session_affinity_client_ip, sp.sticky_max_age_seconds,
                                       local_policy_chain, pools.local, chains, large)
        comment = "" if large else f" -m comment --comment {name}"
        affinity = " -m recent --name {} --set" if sp.session_affinity_client_ip else ""
        for ep in pools.reachable:
            chain = chains[ep.endpoint]
            nat_chains.append(chain)
            active_nat_chains.add(chain)
            # Hairpin: a pod reaching itself through the VIP must be masqueraded, or it would
            # answer its own address directly and the client would drop the reply.
            nat_rules.append(f"-A {chain}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}")
            nat_rules.append(f"-A {chain}{comment}{affinity.format(chain)} {match} "
                             f"-j DNAT --to-destination {ep.endpoint}")

    # Stale per-Service chains: declared (which flushes them), then deleted.
    for chain in sorted(set(existing_nat_chains) - active_nat_chains):
        if is_service_chain(chain):
            nat_chains.append(chain)
            nat_rules.append(f"-X {chain}")

    # The NodePort tail call: the last rule of KUBE-SERVICES.
    nodeport_addresses = settings.nodeport_addresses_for(family)
    if nodeport_addresses.match_all:
        destinations = "-m addrtype --dst-type LOCAL"
        if family == 6:
            destinations += " ! -d ::1/128"
        elif not localhost_nodeports:
            destinations += " ! -d 127.0.0.0/8"
        nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_NODEPORTS_COMMENT} {destinations} -j {KUBE_NODEPORTS}")
    else:
        for ip in nodeport_addresses.node_ips(settings.all_interface_addresses()):
            if ip.is_loopback and (family == 6 or not localhost_nodeports):
                continue
            nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_NODEPORTS_COMMENT} -d {ip} -j {KUBE_NODEPORTS}")

    # Forwarding: drop conntrack-INVALID packets (unless the kernel is liberal about TCP
    # windows), accept marked (masqueraded) and established Service traffic.
    if not settings.conntrack_tcp_be_liberal:
        counter = f" -m nfacct --nfacct-name {NFACCT_CT_STATE_INVALID_DROPPED}" if settings.nfacct else ""
        filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{counter} -j DROP")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                        f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    lines = ["*filter"]
    lines.extend(f":{chain} - [0:0]" for chain in filter_chains)
    lines.extend(filter_rules)
    lines.append("COMMIT")
    lines.append("*nat")
    lines.extend(f":{chain} - [0:0]" for chain in nat_chains)
    lines.extend(nat_rules)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _service_to_endpoint_rules(nat_rules: list[str], name: str, affinity: bool, sticky_seconds: int, chain: str,
                               endpoints: tuple[EndpointInfo, ...], chains: dict[str, str], large: bool) -> None:
    """``writeServiceToEndpointRules``: sticky-session checks, then the 1/n, 1/(n-1), ... coin tosses."""
    def comment(ep: EndpointInfo) -> str:
        return "" if large else f' -m comment --comment "{name} -> {ep.endpoint}"'

    if affinity:
        for ep in endpoints:
            target = chains[ep.endpoint]
            nat_rules.append(f"-A {chain}{comment(ep)} -m recent --name {target} --rcheck --seconds {sticky_seconds} "
                             f"--reap -j {target}")
    last = len(endpoints) - 1
    for i, ep in enumerate(endpoints):
        statistic = f" -m statistic --mode random --probability {probability(len(endpoints) - i)}" if i < last else ""
        nat_rules.append(f"-A {chain}{comment(ep)}{statistic} -j {chains[ep.endpoint]}")
