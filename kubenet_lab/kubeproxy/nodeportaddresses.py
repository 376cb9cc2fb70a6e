"""``--nodeport-addresses``: on which of the node's own addresses NodePorts answer.

A NodePort is a static PAT entry on every node: ``<node address>:<nodePort>``
is translated to one of the Service's endpoints. By default (no flag) kube-proxy's
iptables mode matches *any* local address (``-m addrtype --dst-type LOCAL``),
including 127.0.0.1 when ``--iptables-localhost-nodeports`` is on. With
``--nodeport-addresses`` it writes one rule per local address inside the given
CIDRs instead; the special value ``primary`` means the node's primary IP of
each family. This mirrors ``pkg/proxy/util/nodeport_addresses.go``.

>>> npa = NodePortAddresses.for_family(4, ())
>>> npa.match_all, npa.contains_ipv4_loopback
(True, True)
>>> npa = NodePortAddresses.for_family(4, ("192.168.0.0/24", "2001:db8::/64"))
>>> npa.cidrs, npa.match_all
((IPv4Network('192.168.0.0/24'),), False)
>>> [str(ip) for ip in npa.node_ips(["127.0.0.1", "192.168.0.2", "192.168.1.2"])]
['192.168.0.2']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..addresses import IPAddress, IPNetwork, parse_network

__all__ = ["NodePortAddresses", "NODEPORT_ADDRESSES_PRIMARY"]

# The special --nodeport-addresses value (kubeproxyconfig.NodePortAddressesPrimary).
NODEPORT_ADDRESSES_PRIMARY = "primary"
_ZERO = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
_ZERO_TEXT = ("0.0.0.0/0", "::/0")  # IsZeroCIDR compares the text
_IPV4_LOOPBACK_START = ipaddress.ip_address("127.0.0.0")


@dataclass(frozen=True)
class NodePortAddresses:
    """The CIDRs of one family that NodePorts listen on (``NewNodePortAddresses``)."""

    cidrs: tuple[IPNetwork, ...]
    match_all: bool
    contains_ipv4_loopback: bool

    @classmethod
    def for_family(cls, family: int, cidrs: Iterable[object]) -> NodePortAddresses:
        """Keep the CIDRs of ``family``; none left means "all addresses" (``0.0.0.0/0`` or ``::/0``).

        As in kube-proxy, host bits are ignored (``192.168.0.1/24`` is ``192.168.0.0/24``)
        and the exact text ``0.0.0.0/0`` or ``::/0`` switches to "match all", ignoring
        any CIDR after it.
        """
        kept: list[IPNetwork] = []
        loopback = False
        match_all = False
        parsed = [(c, parse_network(c, obj="ProxierSettings", field="nodeport_addresses", strict=False)) for c in cidrs]
        mine = [(text, cidr) for text, cidr in parsed if cidr.version == family]
        for text, cidr in mine or [(str(_ZERO[family]), _ZERO[family])]:
            if cidr.version == 4 and (cidr.network_address.is_loopback or _IPV4_LOOPBACK_START in cidr):
                loopback = True
            if str(text).strip() in _ZERO_TEXT:
                kept, match_all = [cidr], True
                break
            kept.append(cidr)
        return cls(cidrs=tuple(kept), match_all=match_all, contains_ipv4_loopback=loopback)

    def node_ips(self, interface_addresses: Iterable[object]) -> list[IPAddress]:
        """``GetNodeIPs``: the node's addresses inside these CIDRs, each once, sorted."""
        found: dict[str, IPAddress] = {}
        for cidr in self.cidrs:
            for address in interface_addresses:
                ip = ipaddress.ip_address(address) if isinstance(address, str) else address
                if ip.version == cidr.version and ip in cidr:
                    found[str(ip)] = ip
        return sorted(found.values())
