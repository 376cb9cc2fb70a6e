"""What two BGP speakers agree on once they have exchanged OPENs (RFC 4271 §4.2, RFC 5492).

Each side sends an OPEN and checks the one it receives. Beyond the syntax
checks :func:`~kubenet_lab.bgp.decode` already made, the receiver compares
the OPEN with its configuration - the ``neighbor ... remote-as`` it expects,
its own router ID, the capabilities it insists on - and answers a mismatch
with a NOTIFICATION (RFC 4271 §6.2, RFC 5492 §5). If all is well, the session
runs with:

* the **smaller** of the two Hold Times and a KEEPALIVE every third of it
  (RFC 4271 §4.2, §10) - FRR's datacenter profile offers 9 s, so a speaker
  keepaliving every 30 s against it is torn down with Hold Timer Expired
  (datapath.md §3, lesson 1);
* 4-octet AS numbers only if **both** sent the capability (RFC 6793 §4.1);
* only the address families **both** announced (RFC 4760 §8); a speaker that
  sends no Multiprotocol capability at all is taken to speak IPv4 unicast, as
  BIRD and FRR do;
* ROUTE-REFRESH only if both sent the Route Refresh capability (RFC 2918 §2).

>>> mine = Open.for_speaker(64512, "192.168.0.11", families=((AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST)))
>>> frr = Open.for_speaker(65001, "192.168.0.1", hold_time=9)
>>> negotiate(mine, frr, peer_as=65001)
Negotiated(peer_as=65001, hold_time=9, keepalive_time=3, four_octet_as=True, families=((AFI.IPV4, SAFI.UNICAST),), route_refresh=True)
>>> negotiate(mine, frr, peer_as=65002)
Traceback (most recent call last):
...
kubenet_lab.bgp.errors.BGPMessageError: OPEN message: 'My Autonomous System' must be the configured peer AS 65002 (got 65001) [NOTIFICATION 2/2 OPEN Message Error / Bad Peer AS]
"""

from __future__ import annotations

from dataclasses import dataclass

from .capabilities import Capability, FourOctetAS
from .errors import BGPMessageError, ErrorCode, OpenSubcode
from .messages import Open
from .wire import AFI, SAFI

__all__ = ["Negotiated", "negotiate"]

_IPV4_UNICAST = ((AFI.IPV4, SAFI.UNICAST),)


@dataclass(frozen=True)
class Negotiated:
    """The parameters a session runs with after the OPEN exchange."""

    peer_as: int
    hold_time: int
    keepalive_time: int
    four_octet_as: bool
    families: tuple[tuple[int, int], ...]
    route_refresh: bool


def _open_error(field: str, value: object, expected: str, subcode: int, data: bytes = b"") -> BGPMessageError:
    return BGPMessageError("OPEN message", field, value, expected,
                           code=ErrorCode.OPEN_MESSAGE_ERROR, subcode=subcode, data=data)


def _has(received: Open, capability: Capability) -> bool:
    # The 4-octet AS capability carries the sender's own AS, so only its presence can be required.
    if isinstance(capability, FourOctetAS):
        return received.four_octet_as
    return capability in received.capabilities


def negotiate(local: Open, received: Open, *, peer_as: int | None = None,
              required: tuple[Capability, ...] = ()) -> Negotiated:
    """Check a received OPEN against the local one and configuration; return what was agreed.

    Args:
        local: the OPEN this speaker sent.
        received: the peer's OPEN, as decoded.
        peer_as: the AS configured for the peer (``neighbor X remote-as``); None accepts any.
        required: capabilities the peer must have sent, e.g. ``(FourOctetAS(0),)`` as
            MetalLB's native speaker insists (datapath.md §2.3).

    Raises:
        BGPMessageError: Bad Peer AS (RFC 4271 §6.2), Bad BGP Identifier for an
            internal peer using our own router ID (RFC 6286 §2.2), or Unsupported
            Capability listing the missing capabilities as the Data (RFC 5492 §5).
    """
    if peer_as is not None and received.asn != peer_as:
        raise _open_error("My Autonomous System", received.asn, f"must be the configured peer AS {peer_as}",
                          OpenSubcode.BAD_PEER_AS)
    if received.asn == local.asn and received.bgp_identifier == local.bgp_identifier:
        raise _open_error("BGP Identifier", str(received.bgp_identifier),
                          "must differ from our own on an internal session (RFC 6286 §2.2)",
                          OpenSubcode.BAD_BGP_IDENTIFIER)
    missing = [c for c in required if not _has(received, c)]
    if missing:
        raise _open_error("Capabilities", [type(c).__name__ for c in missing], "must include every required capability",
                          OpenSubcode.UNSUPPORTED_CAPABILITY, b"".join(c.encode() for c in missing))
    hold_time = min(local.hold_time, received.hold_time)
    ours = local.families or _IPV4_UNICAST
    theirs = set(received.families or _IPV4_UNICAST)
    return Negotiated(
        peer_as=received.asn,
        hold_time=hold_time,
        keepalive_time=hold_time // 3,
        four_octet_as=local.four_octet_as and received.four_octet_as,
        families=tuple(f for f in ours if f in theirs),
        route_refresh=local.route_refresh and received.route_refresh,
    )
