"""BGP-4 as Calico's BIRD, Cilium's GoBGP and a data-centre's FRR speak it.

In a routed pod network every node runs a BGP speaker that announces its
podCIDR to its peers (the other nodes, route reflectors or the top-of-rack
routers), so packets to pods need no tunnel. This package is that protocol,
byte for byte, so the course can show - and the kernel lab can check against
BIRD and FRR - exactly what goes over TCP port 179:

* :mod:`~kubenet_lab.bgp.messages` - OPEN, UPDATE, NOTIFICATION, KEEPALIVE,
  ROUTE-REFRESH (RFC 4271, RFC 2918) and :func:`decode`/:func:`split_messages`;
* :mod:`~kubenet_lab.bgp.capabilities` - what an OPEN offers (RFC 5492,
  RFC 4760, RFC 6793), and :mod:`~kubenet_lab.bgp.negotiation` - what two
  OPENs agree on (hold time, families, 4-octet AS);
* :mod:`~kubenet_lab.bgp.attributes` - path attributes (ORIGIN, AS_PATH,
  NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST,
  MP_REACH_NLRI, ...), and :mod:`~kubenet_lab.bgp.attribute_decoder` - reading
  them with RFC 7606 error handling;
* :mod:`~kubenet_lab.bgp.decision` - the RFC 4271 §9.1 decision process and
  ECMP, saying which step chose the best path;
* :mod:`~kubenet_lab.bgp.errors` - NOTIFICATION codes and
  :class:`BGPMessageError`;
* :mod:`~kubenet_lab.bgp.wire` - header constants and prefix encoding.

A node announcing its podCIDR over eBGP to its top-of-rack router:

>>> from kubenet_lab.bgp import ASPath, NextHop, Origin, OriginType, Update, decode
>>> update = Update(attributes=(Origin(OriginType.IGP), ASPath([64512]), NextHop("192.168.0.12")),
...                 nlri=["10.244.1.0/24"])
>>> update.encode().hex()
'ffffffffffffffffffffffffffffffff002f02000000144001010040020602010000fc00400304c0a8000c180af401'
>>> decode(update.encode()).attribute(ASPath)
ASPath('64512')
"""

from .attribute_decoder import MalformedAttribute
from .attributes import (
    BLACKHOLE,
    GRACEFUL_SHUTDOWN,
    NO_ADVERTISE,
    NO_EXPORT,
    NO_EXPORT_SUBCONFED,
    NOPEER,
    Aggregator,
    ASPath,
    ASPathSegment,
    AtomicAggregate,
    AttributeType,
    ClusterList,
    Communities,
    Community,
    LocalPref,
    MPReachNLRI,
    MPUnreachNLRI,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorID,
    OriginType,
    PathAttribute,
    SegmentType,
    UnknownAttribute,
)
from .capabilities import Capability, FourOctetAS, MultiprotocolExtensions, RouteRefreshCapability, UnknownCapability
from .decision import Decision, Path, Step, best_path
from .errors import Approach, BGPMessageError, ErrorCode
from .messages import (
    DEFAULT_HOLD_TIME,
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
    decode,
    end_of_rib,
    split_messages,
)
from .negotiation import Negotiated, negotiate
from .wire import AFI, AS_TRANS, BGP_PORT, SAFI, MessageType

__all__ = [
    # messages
    "Open", "Update", "Notification", "Keepalive", "RouteRefresh", "Message",
    "decode", "split_messages", "end_of_rib", "DEFAULT_HOLD_TIME",
    # capabilities and the OPEN exchange
    "Negotiated", "negotiate", "Capability", "MultiprotocolExtensions", "RouteRefreshCapability", "FourOctetAS", "UnknownCapability",
    # path attributes
    "PathAttribute", "AttributeType", "Origin", "OriginType", "ASPath", "ASPathSegment", "SegmentType",
    "NextHop", "MultiExitDisc", "LocalPref", "AtomicAggregate", "Aggregator", "Communities", "Community",
    "NO_EXPORT", "NO_ADVERTISE", "NO_EXPORT_SUBCONFED", "NOPEER", "GRACEFUL_SHUTDOWN", "BLACKHOLE",
    "OriginatorID", "ClusterList", "MPReachNLRI", "MPUnreachNLRI", "UnknownAttribute", "MalformedAttribute",
    # the decision process
    "Path", "Step", "Decision", "best_path",
    # errors and wire constants
    "BGPMessageError", "ErrorCode", "Approach", "AFI", "SAFI", "AS_TRANS", "BGP_PORT", "MessageType",
]
