"""kube-proxy's iptables chain names: the fixed ones, and the hashed per-Service ones.

kube-proxy's iptables mode builds a small tree of user-defined chains in the
``nat`` and ``filter`` tables. Read as a load balancer configuration:

==========================  ======  ==============================================================
chain                       table   what it is, in network terms
==========================  ======  ==============================================================
``KUBE-SERVICES``           nat     the VIP table: one rule per ClusterIP / externalIP / LB VIP and
                                    port, jumping to that Service's chain (entered from PREROUTING
                                    and OUTPUT, i.e. before routing)
``KUBE-NODEPORTS``          nat     the static PAT table: one rule per NodePort, matched on any
                                    local address (the last rule of KUBE-SERVICES jumps here)
``KUBE-SVC-<hash>``         nat     a server pool with Cluster policy: a random pick among all
                                    ready endpoints, each rule a ``-m statistic`` coin toss
``KUBE-SVL-<hash>``         nat     the same pool restricted to this node's endpoints (``Local``
                                    traffic policy: no second hop, client source kept)
``KUBE-EXT-<hash>``         nat     traffic to an "external" destination (NodePort, externalIP,
                                    LB VIP): decides masquerade, then picks SVC or SVL
``KUBE-FW-<hash>``          nat     ``loadBalancerSourceRanges``: an ACL in front of the LB VIP
``KUBE-SEP-<hash>``         nat     one real server: DNAT to ``podIP:targetPort``
``KUBE-MARK-MASQ``          nat     set the masquerade bit in the packet mark (fwmark)
``KUBE-POSTROUTING``        nat     SNAT (masquerade) marked packets on their way out
``KUBE-SERVICES``           filter  REJECT traffic to Services that have no endpoints at all
``KUBE-EXTERNAL-SERVICES``  filter  REJECT/DROP external traffic the nat table could not serve
``KUBE-NODEPORTS``          filter  ACCEPT the health-check NodePort of eTP=Local LoadBalancers
``KUBE-FORWARD``            filter  let masqueraded and established Service traffic be forwarded
``KUBE-PROXY-FIREWALL``     filter  DROP LB traffic that KUBE-FW-* did not let through
``KUBE-FIREWALL``           filter  kubelet's anti-martian rule: nothing from outside to 127/8
==========================  ======  ==============================================================

The per-Service names carry a hash because iptables chain names are limited to
28 characters: ``KUBE-SVC-`` plus the first 16 characters of the RFC 4648
base32 encoding of the SHA-256 of ``"<namespace>/<name>:<port name>" +
"<protocol>"`` (``portProtoHash`` in ``pkg/proxy/iptables/proxier.go``); the
endpoint chain adds the endpoint ``ip:port`` to the hashed text. The same hash
names all four chains of one Service port.

>>> service_port_chain_hash("ns1/svc1:p80", "tcp")
'XPGD46QRK7WJZT7O'
>>> service_chain("ns1/svc1:p80", "tcp"), firewall_chain("ns1/svc1:p80", "tcp")
('KUBE-SVC-XPGD46QRK7WJZT7O', 'KUBE-FW-XPGD46QRK7WJZT7O')
>>> endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80")
'KUBE-SEP-SXIVWICOYRO3J4NJ'

Introduced in chapter 04.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "KUBE_SERVICES",
    "KUBE_EXTERNAL_SERVICES",
    "KUBE_NODEPORTS",
    "KUBE_POSTROUTING",
    "KUBE_MARK_MASQ",
    "KUBE_FORWARD",
    "KUBE_PROXY_FIREWALL",
    "KUBE_FIREWALL",
    "SERVICE_CHAIN_PREFIXES",
    "service_port_chain_hash",
    "service_chain",
    "local_service_chain",
    "external_chain",
    "firewall_chain",
    "endpoint_chain",
    "is_service_chain",
]

# The fixed chains (kubeServicesChain ... kubeletFirewallChain in proxier.go).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"

# Chains with these prefixes are per-Service; kube-proxy deletes any it finds that
# the current sync did not write (isServiceChainName).
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")


# RFC 4648 base32, two characters (10 bits) at a time.
_BASE32_PAIRS = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"]


def _hash16(text: str) -> str:
    # base32 turns every 5 bytes into 8 characters, so the first 10 bytes (80 bits) of the
    # digest give exactly the first 16 characters kube-proxy keeps. Same result as
    # base64.b32encode(digest[:10]), twice as fast: chain names are hashed by the 10,000.
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    pairs = _BASE32_PAIRS
    return (pairs[n >> 70] + pairs[n >> 60 & 1023] + pairs[n >> 50 & 1023] + pairs[n >> 40 & 1023]
            + pairs[n >> 30 & 1023] + pairs[n >> 20 & 1023] + pairs[n >> 10 & 1023] + pairs[n & 1023])


def service_port_chain_hash(service_port_name: str, protocol: str) -> str:
    """``portProtoHash``: 16 base32 characters of SHA-256(``service_port_name + protocol``).

    ``service_port_name`` is ``namespace/name`` plus ``:port-name`` when the port
    is named; ``protocol`` is lower case (``tcp``, ``udp``, ``sctp``).

    >>> service_port_chain_hash("ns2/svc2:p80", "tcp")
    'GNZBNJ2PO5MGZ6GT'
    """
    return _hash16(service_port_name + protocol)


def service_chain(service_port_name: str, protocol: str) -> str:
    """``KUBE-SVC-<hash>``: the Service port's pool of endpoints for Cluster traffic policy."""
    return "KUBE-SVC-" + _hash16(service_port_name + protocol)


def local_service_chain(service_port_name: str, protocol: str) -> str:
    """``KUBE-SVL-<hash>``: the pool of this node's endpoints, for Local traffic policy."""
    return "KUBE-SVL-" + _hash16(service_port_name + protocol)


def external_chain(service_port_name: str, protocol: str) -> str:
    """``KUBE-EXT-<hash>``: where NodePort, externalIP and LB VIP traffic goes first."""
    return "KUBE-EXT-" + _hash16(service_port_name + protocol)


def firewall_chain(service_port_name: str, protocol: str) -> str:
    """``KUBE-FW-<hash>``: the loadBalancerSourceRanges ACL in front of the LB VIPs."""
    return "KUBE-FW-" + _hash16(service_port_name + protocol)


def endpoint_chain(service_port_name: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-<hash>``: one endpoint's DNAT; ``endpoint`` is ``ip:port`` (``[ipv6]:port``).

    >>> endpoint_chain("ns4/svc4:p80", "tcp", "10.180.0.4:80")
    'KUBE-SEP-UKSFD7AGPMPPLUHC'
    """
    return "KUBE-SEP-" + _hash16(service_port_name + protocol + endpoint)


def is_service_chain(chain: str) -> bool:
    """Whether ``chain`` is one of kube-proxy's per-Service chains (and so may be garbage-collected).

    >>> is_service_chain("KUBE-SEP-UKSFD7AGPMPPLUHC"), is_service_chain("KUBE-SERVICES")
    (True, False)
    """
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
