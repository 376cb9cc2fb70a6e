"""MTU budgets: what each encapsulation costs, and the pod MTU the CNIs derive.

Every tunnel spends part of the underlay's MTU on its own headers, so the
pods must send smaller packets. The CNIs compute the pod MTU as the underlay
MTU less the overhead (flannel's ``FLANNEL_MTU``, Calico's
``/var/lib/calico/mtu``, Cilium's route MTU). The overheads, from the headers
(datapath.md §1.5):

==========================  ====  ====  ==========================================
encapsulation               IPv4  IPv6  made of
==========================  ====  ====  ==========================================
VXLAN                       50    70    outer IP 20/40 + UDP 8 + VXLAN 8 + inner Ethernet 14
Geneve, no options          50    70    outer IP + UDP 8 + Geneve 8 + inner Ethernet 14
Geneve + Cilium DSR option  62    82    + a 12-byte option (4-byte option header, 8 data)
IP-in-IP                    20    -     outer IPv4 only (Calico: no IPIP on IPv6 pools)
WireGuard (Calico)          60    80    outer IP + UDP 8 + WireGuard 32
WireGuard (Cilium, flannel) 80    80    one constant for both families
none (routed)               0     0
==========================  ====  ====  ==========================================

>>> rows = {r[0]: r for r in mtu_table().rows}
>>> rows["VXLAN (flannel, Calico, Cilium)"][1:]
('50', '1450', '8950', '70', '1430', '8930')
"""

from __future__ import annotations

from ..tables import Table
from .modes import MODES

__all__ = ["ENCAPSULATIONS", "pod_mtu", "mtu_table", "CILIUM_DSR_OPTION", "WIREGUARD_CALICO", "WIREGUARD_CILIUM"]

# Cilium's Geneve DSR option (pkg/mtu DsrTunnelOverhead); WireGuard overheads as the CNIs define them
# (Calico felix int_dataplane.go wireguardMTUOverhead 60 / wireguardV6MTUOverhead 80; Cilium
# WireguardOverhead and flannel's wireguard backend: 80 for both families).
CILIUM_DSR_OPTION = 12
WIREGUARD_CALICO = {4: 60, 6: 80}
WIREGUARD_CILIUM = 80

_VXLAN, _GENEVE, _IPIP = MODES["flannel-vxlan"], MODES["cilium-geneve"], MODES["calico-ipip"]

# (name, overhead over an IPv4 underlay, over an IPv6 underlay or None where the mode has no IPv6 form)
ENCAPSULATIONS: tuple[tuple[str, int, int | None], ...] = (
    ("VXLAN (flannel, Calico, Cilium)", _VXLAN.overhead(4), _VXLAN.overhead(6)),
    ("Geneve (Cilium, Antrea)", _GENEVE.overhead(4), _GENEVE.overhead(6)),
    ("Geneve + 12-byte DSR option (Cilium)", _GENEVE.overhead(4) + CILIUM_DSR_OPTION,
     _GENEVE.overhead(6) + CILIUM_DSR_OPTION),
    ("IP-in-IP (Calico tunl0)", _IPIP.overhead(4), None),
    ("WireGuard (Calico)", WIREGUARD_CALICO[4], WIREGUARD_CALICO[6]),
    ("WireGuard (Cilium, flannel)", WIREGUARD_CILIUM, WIREGUARD_CILIUM),
    ("WireGuard + VXLAN (Cilium)", WIREGUARD_CILIUM + _VXLAN.overhead(4), WIREGUARD_CILIUM + _VXLAN.overhead(6)),
    ("none: routed natively (BGP, host-gw)", 0, 0),
)


def pod_mtu(underlay_mtu: int, overhead: int) -> int:
    """The pods' MTU under an encapsulation: what is left of the underlay's."""
    return underlay_mtu - overhead


def mtu_table(underlay_mtus: tuple[int, int] = (1500, 9000)) -> Table:
    """Overhead and pod MTU per encapsulation, for standard and jumbo underlays, IPv4 and IPv6."""
    low, high = underlay_mtus
    rows = []
    for name, v4, v6 in ENCAPSULATIONS:
        six = ("-", "-", "-") if v6 is None else (str(v6), str(pod_mtu(low, v6)), str(pod_mtu(high, v6)))
        rows.append((name, str(v4), str(pod_mtu(low, v4)), str(pod_mtu(high, v4)), *six))
    headers = ("ENCAPSULATION", "OVERHEAD v4", f"POD MTU @{low}", f"POD MTU @{high}",
               "OVERHEAD v6", f"POD MTU @{low}", f"POD MTU @{high}")
    return Table("Pod MTU per encapsulation (IPv4 underlay | IPv6 underlay)", headers, tuple(rows))
