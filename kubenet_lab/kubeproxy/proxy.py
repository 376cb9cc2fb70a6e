"""KubeProxy: one node's kube-proxy, reading a :class:`~kubenet_lab.cluster.Cluster`.

The front door from a cluster to the rule generators: it takes the node's
name, IPs and podCIDRs and the cluster's pod CIDRs (as ``--cluster-cidr``)
from the cluster, any kube-proxy flag from keyword arguments, and reads the
cluster's Services and EndpointSlices afresh on every call, so it always
shows what kube-proxy would write *now*.

>>> from kubenet_lab import Cluster
>>> c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12")
>>> _ = c.add_node("node-1", ip="192.168.0.11")
>>> _ = c.add_pod("web-1", node="node-1", labels={"app": "web"})
>>> _ = c.add_service("web", selector={"app": "web"}, port=80)
>>> kp = KubeProxy(c, "node-1", masquerade_all=True)
>>> kp
<KubeProxy node-1: iptables, mark 0x00004000, --cluster-cidr 10.244.0.0/16>
>>> [line for line in kp.iptables_restore().splitlines() if line.startswith("-A KUBE-SEP")][1]
'-A KUBE-SEP-NRFUO7XKMWLPJJAE -m comment --comment default/web -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:80'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from .iptables import sync_proxy_rules
from .ipvs import DEFAULT_SCHEDULER, IPVSRules, ipset_restore, ipvsadm_list, sync_ipvs_rules
from .nftables import sync_nftables_rules
from .settings import ProxierSettings, check_family
from .state import ProxyState

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["KubeProxy"]


class KubeProxy:
    """The kube-proxy of ``node`` in ``cluster``; ``flags`` set any :class:`ProxierSettings` field."""

    def __init__(self, cluster: Cluster, node: str, **flags: object) -> None:
        self.cluster = cluster
        self.settings = ProxierSettings.for_node(cluster, node, **flags)

    @property
    def node(self) -> str:
        return self.settings.node_name

    def state(self, family: int | None = None) -> ProxyState:
        """What this kube-proxy knows for ``family`` (default: the cluster's first family)."""
        family = self.cluster.network.families[0] if family is None else check_family(f"KubeProxy {self.node}", family)
        return ProxyState.build(self.cluster.services, self.cluster.endpoint_slices(), self.settings, family)

    def iptables_restore(self, family: int | None = None, existing_nat_chains: Iterable[str] = ()) -> str:
        """The ``iptables-restore`` input of a full sync (``ip6tables-restore`` for ``family=6``)."""
        return sync_proxy_rules(self.state(family), self.settings, existing_nat_chains)

    def nft_ruleset(self, family: int | None = None) -> str:
        """The ``nft -f`` input of kube-proxy's nftables mode on a full sync (table ``ip``/``ip6 kube-proxy``).

        Unset ``nodeport_addresses`` means ``primary`` here, as in kube-proxy's nftables mode;
        the Service CIDRs are the cluster's.
        """
        settings = self.settings if self.settings.nodeport_addresses else replace(self.settings, nodeport_addresses="primary")
        return sync_nftables_rules(self.state(family), settings, self.cluster.network.service_cidrs)

    def ipvs_rules(self, family: int | None = None, scheduler: str = DEFAULT_SCHEDULER) -> IPVSRules:
        """What kube-proxy's IPVS mode programs for ``family``: virtual servers, ``kube-ipvs0``, ipsets, glue.

        IPVS mode puts NodePorts on every local address, so unless ``interface_addresses`` was
        given they are the node's own, as ``ip addr`` lists them (``cni0``, ``flannel.1``... too).
        """
        settings = self.settings
        if settings.interface_addresses is None:
            links = self.cluster.host(self.node).links
            found = ("127.0.0.1", "::1", *(a.split("/")[0] for link in links for a in link.addresses))
            settings = replace(settings, interface_addresses=found)
        return sync_ipvs_rules(self.state(family), settings, scheduler)

    def ipvsadm_ln(self, scheduler: str = DEFAULT_SCHEDULER) -> str:
        """``ipvsadm -Ln`` on this node in IPVS mode: the virtual servers of every family of the cluster."""
        return ipvsadm_list(vs for family in self.cluster.network.families
                            for vs in self.ipvs_rules(family, scheduler).virtual_servers)

    def ipset_restore(self, family: int | None = None) -> str:
        """The ``ipset restore`` input of IPVS mode for ``family`` (IPv6 sets are named ``KUBE-6-...``)."""
        return ipset_restore(self.ipvs_rules(family).ipsets)

    def kube_ipvs0_addresses(self, family: int | None = None) -> tuple:
        """The /32 (/128) addresses IPVS mode binds to the dummy device ``kube-ipvs0``."""
        return self.ipvs_rules(family).bound_addresses

    def __repr__(self) -> str:
        cidrs = ",".join(str(c) for c in self.settings.cluster_cidrs) or "unset"
        return f"<KubeProxy {self.node}: iptables, mark {self.settings.mark}, --cluster-cidr {cidrs}>"
