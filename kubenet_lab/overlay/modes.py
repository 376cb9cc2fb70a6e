"""What each CNI's datapath is: encapsulation, device, VNI, UDP port, overhead.

One place that knows the real defaults, each with its source (see
``shared/reference/datapath.md`` §1 for the full account):

=================  ===========  ==============  =====  =====  =========================================
cni                encap        device          VNI    port   source
=================  ===========  ==============  =====  =====  =========================================
flannel-vxlan      VXLAN        ``flannel.1``   1      8472   flannel pkg/backend/vxlan (``defaultVNI``;
                                                              port 0 = the Linux kernel default 8472)
calico-vxlan       VXLAN        vxlan.calico    4096   4789   felix config_params.go (VXLANVNI, VXLANPort)
calico-ipip        IP-in-IP     ``tunl0``       -      -      IP protocol 4, 20-byte outer header
calico-bgp         none         -               -      -      routes from BIRD, no encapsulation
cilium-vxlan       VXLAN        cilium_vxlan    ident  8472   cilium pkg/defaults (TunnelPortVXLAN)
cilium-geneve      Geneve       cilium_geneve   ident  6081   cilium pkg/defaults (TunnelPortGeneve)
native-routing     none         -               -      -      pod routes via the underlay (BGP or L2)
=================  ===========  ==============  =====  =====  =========================================

Cilium's tunnels are flow-based: the VNI carries the source pod's security
identity, not a segment number, and the remote VTEP comes from an eBPF tunnel
map instead of FDB entries.

Overheads count what encapsulation adds inside the underlay's IP MTU (RFC
7348 §5 and RFC 8926: outer IP 20/40 + UDP 8 + header 8 + inner Ethernet 14;
IP-in-IP only the 20-byte outer IPv4 header).

>>> m = MODES["flannel-vxlan"]
>>> m.device, m.vni, m.udp_port, m.overhead(4), m.pod_mtu(1500, 4)
('flannel.1', 1, 8472, 50, 1450)
>>> MODES["calico-ipip"].pod_mtu(9000, 4)
8980
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..addresses import parse_port
from ..errors import InvalidValue

__all__ = ["DatapathMode", "MODES", "mode_for", "IPV4_MIN_MTU", "IPV6_MIN_MTU", "LINUX_VXLAN_PORT", "IANA_VXLAN_PORT",
           "GENEVE_PORT", "ETHERNET_HEADER", "VXLAN_HEADER", "GENEVE_HEADER", "UDP_HEADER", "IP_HEADER"]

# Header sizes in bytes (RFC 791 without options, RFC 8200 fixed header, RFC 768, RFC 7348 §5, RFC 8926 §3.4).
IP_HEADER = {4: 20, 6: 40}
UDP_HEADER = 8
VXLAN_HEADER = 8
GENEVE_HEADER = 8
ETHERNET_HEADER = 14
# The smallest MTU each IP version must be able to use: RFC 791 (68 bytes) and RFC 8200 §5 (1280 bytes).
IPV4_MIN_MTU = 68
IPV6_MIN_MTU = 1280
# UDP ports: the Linux kernel's VXLAN default predates IANA's assignment (drivers/net/vxlan: IANA_VXLAN_UDP_PORT
# is 4789, but the device default remains 8472); Geneve's IANA port is 6081 (RFC 8926 §3.3).
LINUX_VXLAN_PORT = 8472
IANA_VXLAN_PORT = 4789
GENEVE_PORT = 6081


@dataclass(frozen=True)
class DatapathMode:
    """How one CNI moves a packet between nodes.

    ``encapsulation`` is ``"vxlan"``, ``"geneve"``, ``"ipip"`` or ``None``
    (routed natively over the underlay). ``same_subnet_direct`` is flannel's
    ``DirectRouting`` / Calico's ``CrossSubnet``: between nodes on one subnet,
    route natively and encapsulate only across subnets.
    """

    cni: str
    encapsulation: str | None
    device: str | None = None
    vni: int | None = None
    udp_port: int | None = None
    flow_based: bool = False
    same_subnet_direct: bool = False
    agent: str = ""

    def overhead(self, underlay_version: int = 4) -> int:
        """Bytes the encapsulation adds inside the underlay IP MTU."""
        if self.encapsulation in ("vxlan", "geneve"):
            return IP_HEADER[underlay_version] + UDP_HEADER + VXLAN_HEADER + ETHERNET_HEADER
        if self.encapsulation == "ipip":
            return IP_HEADER[4]
        return 0

    def pod_mtu(self, underlay_mtu: int, underlay_version: int = 4) -> int:
        """The MTU the CNI gives pods: the underlay MTU less the overhead (flannel's FLANNEL_MTU,
        Calico's /var/lib/calico/mtu, Cilium's route MTU)."""
        return underlay_mtu - self.overhead(underlay_version)

    def with_options(self, *, vni: int | None = None, udp_port: int | None = None,
                     same_subnet_direct: bool | None = None) -> DatapathMode:
        """A copy with the options a scenario may set, validated like the agents validate them."""
        obj = f"ClusterNetwork cni {self.cni}"
        if vni is not None:
            if self.encapsulation not in ("vxlan", "geneve") or self.flow_based:
                raise InvalidValue(obj, "overlay.vni", vni, "can only be set for flannel and Calico VXLAN")
            if isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni < 2**24:
                raise InvalidValue(obj, "overlay.vni", vni, "must be a VNI from 0 to 16777215 (24 bits, RFC 7348 §5)")
        if udp_port is not None:
            if self.encapsulation not in ("vxlan", "geneve"):
                raise InvalidValue(obj, "overlay.port", udp_port, "can only be set for VXLAN and Geneve")
            parse_port(udp_port, obj=obj, field="overlay.port")
        if same_subnet_direct and self.encapsulation is None:
            raise InvalidValue(obj, "overlay.directRouting", same_subnet_direct,
                               "only applies to an encapsulating mode")
        if same_subnet_direct and self.flow_based:
            raise InvalidValue(obj, "overlay.directRouting", same_subnet_direct,
                               "is not a Cilium option (Cilium uses routing-mode: native instead)")
        return replace(
            self,
            vni=self.vni if vni is None else vni,
            udp_port=self.udp_port if udp_port is None else udp_port,
            same_subnet_direct=self.same_subnet_direct if same_subnet_direct is None else same_subnet_direct,
        )


MODES: dict[str, DatapathMode] = {
    "flannel-vxlan": DatapathMode("flannel-vxlan", "vxlan", "flannel.1", 1, LINUX_VXLAN_PORT, agent="flanneld"),
    "calico-vxlan": DatapathMode("calico-vxlan", "vxlan", "vxlan.calico", 4096, IANA_VXLAN_PORT, agent="calico-node (Felix)"),
    "calico-ipip": DatapathMode("calico-ipip", "ipip", "tunl0", agent="calico-node (BIRD)"),
    "calico-bgp": DatapathMode("calico-bgp", None, agent="calico-node (BIRD)"),
    "cilium-vxlan": DatapathMode("cilium-vxlan", "vxlan", "cilium_vxlan", None, LINUX_VXLAN_PORT, flow_based=True,
                                 agent="cilium-agent"),
    "cilium-geneve": DatapathMode("cilium-geneve", "geneve", "cilium_geneve", None, GENEVE_PORT, flow_based=True,
                                  agent="cilium-agent"),
    "native-routing": DatapathMode("native-routing", None, agent="the underlay's routing"),
}


def mode_for(cni: str) -> DatapathMode:
    """The mode of a ``ClusterNetwork.cni`` value."""
    try:
        return MODES[cni]
    except KeyError:
        raise InvalidValue("ClusterNetwork", "cni", cni, f"must be one of {', '.join(MODES)}") from None
