"""kubenet_lab: Kubernetes networking for network engineers, exact and verified.

The front door is :class:`Cluster`; the control planes (``ipam``, and later
``overlay``, ``bgp``, ``kubeproxy``) are ordinary modules a curious reader can
call directly. scapy is imported lazily, so ``import kubenet_lab`` stays fast.
"""

__version__ = "0.1.0"
