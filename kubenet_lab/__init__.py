"""kubenet_lab: Kubernetes networking for network engineers, exact and verified.

The front door is :class:`Cluster`; the control planes (``ipam``, and later
``overlay``, ``bgp``, ``kubeproxy``) are ordinary modules a curious reader can
call directly. scapy is imported lazily, only where packets are built, so
``import kubenet_lab`` stays fast.

>>> from kubenet_lab import Cluster
>>> c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12")
>>> c.add_node("node-1", ip="192.168.0.11").pod_cidr
IPv4Network('10.244.0.0/24')
"""

from .cluster import Cluster
from .errors import KubenetLabError
from .network import ClusterNetwork, Rack

__version__ = "0.1.0"

__all__ = ["Cluster", "ClusterNetwork", "Rack", "KubenetLabError", "__version__"]
