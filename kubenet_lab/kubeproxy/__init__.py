"""kube-proxy: how every node turns Services into NAT rules, exactly as kube-proxy writes them.

A Service is a virtual IP in front of a pool of pods. No device owns that VIP:
every node's kube-proxy programs its kernel so that a connection to
``ClusterIP:port`` (or to ``nodeIP:nodePort``, an externalIP, a LoadBalancer
VIP) is DNATed to one endpoint, ``podIP:targetPort``, and masqueraded where
the reply would otherwise take another path. This package re-implements
kube-proxy's three modes (``pkg/proxy/{iptables,nftables,ipvs}/proxier.go``,
v1.33/v1.34), checked against kube-proxy's own unit tests:

==========================  ====================================================================
module                      kube-proxy concept
==========================  ====================================================================
:mod:`.chains`              chain names: ``KUBE-SERVICES`` ... and the hashed ``KUBE-SVC-`` etc.
:mod:`.settings`            the flags: ``--cluster-cidr``, ``--masquerade-all``, ...
:mod:`.localdetect`         ``--detect-local-mode``: which traffic comes from pods
:mod:`.nodeportaddresses`   ``--nodeport-addresses``: where NodePorts answer
:mod:`.serviceport`         the ServicePortMap: one VIP:port per Service port and family
:mod:`.endpoints`           the EndpointsMap and ``CategorizeEndpoints`` (traffic policies)
:mod:`.state`               both maps for one family: what one sync starts from
:mod:`.iptables`            ``syncProxyRules``: the ``iptables-restore`` input
:mod:`.nftables`            the nftables mode's ``syncProxyRules``: the ``nft -f`` input (table kube-proxy)
:mod:`.ipvs`                IPVS mode: virtual/real servers (``ipvsadm -Ln``), ``kube-ipvs0``, ipsets, glue
:mod:`.hooks`               the jumps kube-proxy inserts into the built-in chains
:mod:`.netfilter`           a packet's walk through the iptables rules, as netfilter evaluates them
:mod:`.nftwalk`             the same walk through the nftables rules (verdict maps, ``numgen``)
:mod:`.diff`                what one sync changes: chains and rules added and deleted
:mod:`.proxy`               :class:`KubeProxy`: the same, for one node of a Cluster
==========================  ====================================================================

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> rules = KubeProxy(c, "node-1").iptables_restore()
>>> rules.splitlines()[0], rules.splitlines()[-1]
('*filter', 'COMMIT')

Introduced in chapter 04 (ClusterIP) and used again in chapters 05 and 06.
"""

from .chains import endpoint_chain, service_port_chain_hash
from .endpoints import CategorizedEndpoints, EndpointInfo, categorize_endpoints
from .iptables import iptables_restore, probability, sync_proxy_rules
from .diff import RulesetDiff, ruleset_diff
from .localdetect import LocalTrafficDetector
from .netfilter import Flow, Ruleset
from .ipvs import IPVSRules, sync_ipvs_rules
from .nftables import nft_ruleset, sync_nftables_rules
from .nftwalk import NftRuleset
from .nodeportaddresses import NodePortAddresses
from .proxy import KubeProxy
from .serviceport import Ignored, ServicePortInfo, ServicePortName
from .settings import ProxierSettings
from .state import ProxyState

__all__ = [
    "KubeProxy",
    "ProxierSettings",
    "ProxyState",
    "iptables_restore",
    "sync_proxy_rules",
    "nft_ruleset",
    "NftRuleset",
    "sync_ipvs_rules",
    "IPVSRules",
    "Ruleset",
    "Flow",
    "ruleset_diff",
    "RulesetDiff",
    "sync_nftables_rules",
    "probability",
    "service_port_chain_hash",
    "endpoint_chain",
    "ServicePortName",
    "ServicePortInfo",
    "EndpointInfo",
    "CategorizedEndpoints",
    "categorize_endpoints",
    "LocalTrafficDetector",
    "NodePortAddresses",
    "Ignored",
]
