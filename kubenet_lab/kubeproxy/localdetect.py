"""The local-traffic detector: how kube-proxy tells "from a pod on this cluster" from "from outside".

kube-proxy masquerades (SNATs) traffic to a ClusterIP only when it comes from
outside the pod network: such a packet may have been routed to this node by a
static route to the Service range, and its reply must come back the same way.
Pod traffic keeps its source, so the backend sees the real client pod. With an
``externalTrafficPolicy: Local`` Service the same test lets pods reach an
external VIP through the full pool (the "short circuit").

``--detect-local-mode`` picks the test (``pkg/proxy/util/localdetector.go``):

=======================  ==================================  ==========================
mode                     "is local" match                    "is not local" match
=======================  ==================================  ==========================
``ClusterCIDR``          ``-s <--cluster-cidr>``             ``! -s <--cluster-cidr>``
``NodeCIDR``             ``-s <node's spec.podCIDR>``        ``! -s <node's podCIDR>``
``BridgeInterface``      ``-i <--pod-bridge-interface>``     ``! -i <bridge>``
``InterfaceNamePrefix``  ``-i <--pod-interface-name-prefix>+``  ``! -i <prefix>+``
=======================  ==================================  ==========================

Without a CIDR for the family (``ClusterCIDR`` mode and no ``--cluster-cidr``)
the detector is a no-op: kube-proxy then writes no ClusterIP masquerade rule
(unless ``--masquerade-all``) and no pod short circuit.

>>> LocalTrafficDetector.by_cidr("10.0.0.0/8").if_not_local
('!', '-s', '10.0.0.0/8')
>>> LocalTrafficDetector.by_interface_prefix("veth").if_local
('-i', 'veth+')
>>> NO_LOCAL_DETECTOR.implemented
False
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LocalTrafficDetector", "NO_LOCAL_DETECTOR", "DETECT_LOCAL_MODES"]

DETECT_LOCAL_MODES = ("ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")


@dataclass(frozen=True)
class LocalTrafficDetector:
    """The iptables match words that select pod traffic (``if_local``) and the rest (``if_not_local``).

    Both are empty for the no-op detector.
    """

    if_local: tuple[str, ...] = ()
    if_not_local: tuple[str, ...] = ()

    @property
    def implemented(self) -> bool:
        """``IsImplemented()``: False for the no-op detector."""
        return bool(self.if_local)

    @classmethod
    def by_cidr(cls, cidr: str) -> LocalTrafficDetector:
        """``NewDetectLocalByCIDR``: pod traffic is traffic sourced from ``cidr``."""
        return cls(("-s", cidr), ("!", "-s", cidr))

    @classmethod
    def by_bridge_interface(cls, interface: str) -> LocalTrafficDetector:
        """``NewDetectLocalByBridgeInterface``: pod traffic arrives on the pods' bridge."""
        return cls(("-i", interface), ("!", "-i", interface))

    @classmethod
    def by_interface_prefix(cls, prefix: str) -> LocalTrafficDetector:
        """``NewDetectLocalByInterfaceNamePrefix``: pod traffic arrives on an interface named ``prefix*``."""
        return cls(("-i", prefix + "+"), ("!", "-i", prefix + "+"))


NO_LOCAL_DETECTOR = LocalTrafficDetector()
