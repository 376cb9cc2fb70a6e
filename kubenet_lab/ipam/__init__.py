"""IPAM: who gets which address, exactly as the real allocators decide it.

Four allocators meet in a Kubernetes cluster, each in a different component:

* :class:`NodeCIDRAllocator` - kube-controller-manager's ``RangeAllocator``
  (``--allocate-node-cidrs``, ``--cluster-cidr``, ``--node-cidr-mask-size``)
  gives every Node a ``spec.podCIDR``;
* :class:`HostLocal` (with :class:`Range`) - the CNI ``host-local`` plugin
  gives every pod one address from its node's range;
* :class:`BlockIPAM` - Calico IPAM, which ignores ``spec.podCIDR`` and carves
  an IPPool into blocks that nodes claim;
* :class:`ServiceIPAllocator` - kube-apiserver gives every Service a ClusterIP
  from ``--service-cluster-ip-range``.

Side by side, what each one skips and how it picks the next one:

=======================  ==========  ==========================  ============================  ======================
allocator                unit        never handed out            pick order                    a freed one comes back
=======================  ==========  ==========================  ============================  ======================
kube-controller-manager  node CIDR   nothing: slot 0 is the      next-fit from the last slot   only when the scan
                                     cluster's first subnet      + 1, wrapping                 wraps round to it
host-local               pod IP      network, gateway            round-robin from              only after a full lap
                                     (skipped), IPv4 broadcast   last_reserved_ip + 1, across
                                                                 the ranges, wrapping
Calico                   pod IP      nothing on Linux: .0 and    blocks in hostname-seeded     at the back of the
                                     a block's last address      order; in a block, a FIFO     block's FIFO queue
                                     are used                    free list
kube-apiserver           ClusterIP   network, IPv4 broadcast     random start in the upper     at once, if the
                                                                 (dynamic) band, then the      random scan lands
                                                                 lower (static) band           on it
=======================  ==========  ==========================  ============================  ======================

The classic mistakes these classes exist to prevent: assuming "lowest free
first" (none of them does that), skipping the cluster's first /24 (only
flannel's etcd mode does), expecting a pod's first address to be .1 under
host-local (.1 is the gateway, so it is .2), and expecting Calico to skip .0.

Every allocator raises from the :mod:`kubenet_lab.errors` family, with the
real component's own error text in brackets, and a call that raises leaves the
allocator exactly as it was.

>>> from kubenet_lab.ipam import NodeCIDRAllocator, HostLocal
>>> node_cidr = NodeCIDRAllocator("10.244.0.0/16").allocate()
>>> node_cidr
IPv4Network('10.244.0.0/24')
>>> HostLocal(node_cidr).allocate("nginx-7c5ddbdf54-x8x2p")
IPv4Interface('10.244.0.2/24')
"""

from .calico import BlockIPAM
from .cidrset import NodeCIDRAllocator
from .hostlocal import HostLocal, Range
from .nodeport import NodePortAllocator
from .serviceip import ServiceIPAllocator

__all__ = ["NodeCIDRAllocator", "HostLocal", "Range", "BlockIPAM", "ServiceIPAllocator", "NodePortAllocator"]
