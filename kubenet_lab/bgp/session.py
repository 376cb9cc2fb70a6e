"""Wire mode: one real BGP session over TCP, driven by the RFC 4271 §8 finite state machine.

Everything else in :mod:`kubenet_lab.bgp` computes; this module talks. A
:class:`BGPSession` opens (or accepts) a TCP connection to one neighbour,
exchanges OPENs, keeps the session alive with KEEPALIVEs, announces prefixes,
and fills an Adj-RIB-In with what the neighbour sends - the same thing
``neighbor 192.0.2.1 remote-as 65001`` sets up in FRR, or ``protocol bgp`` in
BIRD. Pointed at BIRD (Calico's daemon), GoBGP (Cilium's library) or a
data-centre router, it is a Kubernetes node announcing its podCIDR.

The finite state machine (RFC 4271 §8.2.2), as this speaker runs it::

           start            TCP connect fails / ConnectRetry
    Idle ─────────▶ Connect ◀───────────────────────▶ Active ◀── start --passive
     ▲                 │  TCP up: send OPEN               │  TCP accepted: send OPEN
     │                 └───────────▶ OpenSent ◀───────────┘
     │   error: NOTIFICATION,           │  OPEN received and acceptable:
     │   close; restart after           │  send KEEPALIVE, start timers
     │   ConnectRetryTime               ▼
     ├──────────────────────────── OpenConfirm
     │                                  │  KEEPALIVE received
     │                                  ▼
     └──────────────────────────── Established  ⇄ UPDATE, KEEPALIVE, ROUTE-REFRESH

* **Active and passive.** An active session connects to the peer (state
  *Connect*; a failed attempt waits ConnectRetryTime in *Active* and tries
  again). A passive one only listens (state *Active*), as BIRD does with
  ``passive on`` and as Calico's mesh does on the node with the lower IP
  (datapath.md §2.1). This speaker does one or the other, never both, so the
  connection collision of RFC 4271 §6.8 cannot happen; Cilium makes the same
  choice the other way round (it only initiates, datapath.md §2.2).
* **Timers.** Each side proposes a Hold Time in its OPEN; the session uses the
  smaller and sends a KEEPALIVE every third of it (RFC 4271 §4.2, §10). Hold
  Time 0 means no KEEPALIVEs and no hold timer. While waiting for the peer's
  OPEN the hold timer runs at the "large value" of 4 minutes (§8.2.2). When it
  expires the speaker sends NOTIFICATION 4/0 *Hold Timer Expired* and closes.
* **Errors.** Whatever the peer gets wrong - a bad marker or length, an OPEN
  with version 3, hold time 2 or the wrong AS, an UPDATE that cannot be
  parsed, a message in the wrong state - is answered with the NOTIFICATION
  RFC 4271 §6 names (:meth:`~kubenet_lab.bgp.errors.BGPMessageError.notification`),
  the connection is closed and the session goes back to *Idle*; it starts
  again after ConnectRetryTime. The process is never at risk. An UPDATE whose
  attributes RFC 7606 calls *treat-as-withdraw* keeps the session and removes
  its prefixes from the Adj-RIB-In.
* **Routes.** On reaching *Established* the speaker sends its prefixes (eBGP:
  AS_PATH = its own AS, NEXT_HOP = the local address of the TCP connection
  unless one was given; iBGP: empty AS_PATH and LOCAL_PREF 100, RFC 4271 §5.1)
  and then End-of-RIB for each negotiated family (RFC 4724 §2). Received routes
  land in :attr:`BGPSession.adj_rib_in`, prefix → :class:`Route`.

Two kubenet_lab speakers on the loopback, one listening and one connecting.
The next hops are given explicitly: a session's own address, 127.0.0.1,
is not a valid NEXT_HOP (RFC 4271 §6.3), and the receiver would treat the
routes as withdrawn (RFC 7606 §7.3).

>>> from ipaddress import ip_network
>>> node = BGPSession(local_as=64512, router_id="192.0.2.2", peer="127.0.0.1:0", peer_as=65001,
...                   passive=True, local_address="127.0.0.1:0", announce=["10.244.1.0/24"],
...                   next_hop="192.0.2.2")
>>> node.start()
>>> tor = BGPSession(local_as=65001, router_id="192.0.2.1", peer=f"127.0.0.1:{node.listen_port}",
...                  peer_as=64512, announce=["203.0.113.0/24"], next_hop="192.0.2.1")
>>> tor.start()
>>> tor.wait_for_exchange(timeout=10), node.wait_for_exchange(timeout=10)
(True, True)
>>> print(node.adj_rib_in[ip_network("203.0.113.0/24")])
203.0.113.0/24 via 192.0.2.1 as-path 65001 origin IGP
>>> tor.stop()
>>> node.wait_for_state(State.IDLE, timeout=5)
True
>>> [str(e) for e in node.events if e.kind is EventKind.NOTIFICATION]
['notification received 6/2 Cease / Administrative Shutdown']
>>> node.stop()

The same from a shell is ``kubenet-lab bgp speak`` (:mod:`kubenet_lab.cli`).
Chapter 03 uses it against BIRD; ``tests/test_bgp_interop.py`` runs it
against BIRD 2 and GoBGP in network namespaces.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Callable

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import InvalidValue
from .attributes import (
    ASPath,
    ClusterList,
    LocalPref,
    MPReachNLRI,
    MPUnreachNLRI,
    NextHop,
    Origin,
    OriginatorID,
    OriginType,
    PathAttribute,
)
from .errors import BGPMessageError, CeaseSubcode, ErrorCode, FSMSubcode
from .messages import (
    DEFAULT_HOLD_TIME,
    Keepalive,
    Notification,
    Open,
    RouteRefresh,
    Update,
    decode,
    end_of_rib,
    split_messages,
)
from .negotiation import Negotiated, negotiate
from .wire import AFI, BGP_PORT, SAFI

__all__ = [
    "State",
    "EventKind",
    "SessionEvent",
    "Route",
    "BGPSession",
    "parse_endpoint",
    "DEFAULT_CONNECT_RETRY_TIME",
    "LARGE_HOLD_TIME",
    "QUIET_PERIOD",
]

#: Seconds between connection attempts. RFC 4271 §10 suggests 120 s (BIRD's and Cilium's
#: default); Calico's generated BIRD config sets ``connect retry time 5`` (datapath.md §2.1).
DEFAULT_CONNECT_RETRY_TIME = 5.0
#: Hold timer while waiting for the peer's OPEN: "a large value ... 4 minutes" (RFC 4271 §8.2.2).
LARGE_HOLD_TIME = 240.0
#: After Established, seconds without an UPDATE that count as "the peer has sent all it has",
#: for peers that send no End-of-RIB (GoBGP, datapath.md §3).
QUIET_PERIOD = 3.0
#: LOCAL_PREF put on routes sent to an internal peer: BIRD's ``default bgp_local_pref`` and FRR's default.
DEFAULT_LOCAL_PREF = 100
# Upper bound on any single blocking send, and on how long the loop sleeps before
# re-checking for stop() - so no wait in this module is unbounded.
_SEND_TIMEOUT = 5.0
_MAX_SLEEP = 1.0
# Prefixes per UPDATE: 4096 octets minus header and attributes leaves room for ~800 IPv4 /24s.
_PREFIXES_PER_UPDATE = 500
_CLONE_NEWNET = 0x40000000


class State(Enum):
    """The six states of RFC 4271 §8.2.2, spelled as BIRD's ``show protocols`` and FRR print them."""

    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPENSENT = "OpenSent"
    OPENCONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"

    def __repr__(self) -> str:
        return f"State.{self.name}"


class EventKind(Enum):
    """What a :class:`SessionEvent` reports."""

    STATE = "state"
    ROUTE = "route"
    WITHDRAW = "withdraw"
    END_OF_RIB = "end-of-rib"
    NOTIFICATION = "notification"
    ROUTE_REFRESH = "route-refresh"

    def __repr__(self) -> str:
        return f"EventKind.{self.name}"


def _family_name(family: tuple[int, int]) -> str:
    afi, safi = family
    afi_name = {AFI.IPV4: "ipv4", AFI.IPV6: "ipv6"}.get(afi, f"afi{int(afi)}")
    safi_name = {SAFI.UNICAST: "unicast", SAFI.MULTICAST: "multicast"}.get(safi, f"safi{int(safi)}")
    return f"{afi_name}-{safi_name}"


@dataclass(frozen=True)
class Route:
    """One Adj-RIB-In entry: a prefix, its next hop and the path attributes it came with.

    ``attributes`` are the UPDATE's attributes minus MP_REACH_NLRI /
    MP_UNREACH_NLRI (whose next hop is ``next_hop``). ``str()`` reads like a
    line of ``birdc show route``.

    >>> from ipaddress import ip_network
    >>> r = Route(ip_network("203.0.113.0/24"), IPv4Address("192.0.2.1"),
    ...           (Origin(OriginType.IGP), ASPath([65001]), NextHop("192.0.2.1")))
    >>> print(r)
    203.0.113.0/24 via 192.0.2.1 as-path 65001 origin IGP
    >>> r.as_path, r.origin
    (ASPath('65001'), OriginType.IGP)
    """

    prefix: IPNetwork
    next_hop: IPAddress | None
    attributes: tuple[PathAttribute, ...]

    def attribute(self, kind: type) -> PathAttribute | None:
        """The attribute of class ``kind`` (e.g. ``LocalPref``), or None."""
        return next((a for a in self.attributes if isinstance(a, kind)), None)

    @property
    def as_path(self) -> ASPath:
        """AS_PATH (empty if the peer sent none, as on an internal session)."""
        return self.attribute(ASPath) or ASPath()

    @property
    def origin(self) -> OriginType | None:
        """ORIGIN: IGP, EGP or INCOMPLETE."""
        origin = self.attribute(Origin)
        return origin.origin if origin else None

    def __str__(self) -> str:
        text = f"{self.prefix} via {self.next_hop} as-path {self.as_path or '(empty)'}"
        text += f" origin {self.origin.name}" if self.origin is not None else ""
        local_pref = self.attribute(LocalPref)
        return text + (f" local-pref {local_pref.local_pref}" if local_pref else "")

    def to_json(self) -> dict:
        """The route as JSON-ready values (the ``--json`` output of ``bgp speak``)."""
        local_pref = self.attribute(LocalPref)
        return {"prefix": str(self.prefix), "next_hop": str(self.next_hop) if self.next_hop else None,
                "as_path": list(self.as_path.asns),
                "origin": self.origin.name if self.origin is not None else None,
                "local_pref": local_pref.local_pref if local_pref else None,
                "attributes": [type(a).__name__ for a in self.attributes]}


@dataclass(frozen=True)
class SessionEvent:
    """One thing that happened on a session: a state change, a route, an End-of-RIB, a NOTIFICATION.

    ``time`` is seconds since the session was started. ``str()`` is the line
    ``bgp speak`` prints, :meth:`to_json` its ``--json`` form.

    >>> print(SessionEvent(0.5, EventKind.STATE, previous=State.OPENCONFIRM, state=State.ESTABLISHED))
    state OpenConfirm -> Established
    >>> print(SessionEvent(9.0, EventKind.NOTIFICATION, notification=Notification(4, 0), sent=True))
    notification sent 4/0 Hold Timer Expired / Unspecific
    """

    time: float
    kind: EventKind
    state: State | None = None
    previous: State | None = None
    route: Route | None = None
    prefix: IPNetwork | None = None
    family: tuple[int, int] | None = None
    notification: Notification | None = None
    sent: bool = False
    reason: str = ""

    def __str__(self) -> str:
        if self.kind is EventKind.STATE:
            text = f"state {self.previous.value} -> {self.state.value}"
        elif self.kind is EventKind.ROUTE:
            text = f"route {self.route}"
        elif self.kind is EventKind.WITHDRAW:
            text = f"withdraw {self.prefix}"
        elif self.kind is EventKind.NOTIFICATION:
            text = f"notification {'sent' if self.sent else 'received'} {str(self.notification)[len('NOTIFICATION '):]}"
        else:
            text = f"{self.kind.value} {_family_name(self.family)}"
        return text + (f" ({self.reason})" if self.reason else "")

    def to_json(self) -> dict:
        """JSON-ready values: one object per line of ``bgp speak --json``."""
        out: dict = {"time": round(self.time, 3), "event": self.kind.value}
        if self.kind is EventKind.STATE:
            out.update({"from": self.previous.value, "to": self.state.value})
        elif self.kind is EventKind.ROUTE:
            out.update(self.route.to_json())
        elif self.kind is EventKind.WITHDRAW:
            out["prefix"] = str(self.prefix)
        elif self.kind is EventKind.NOTIFICATION:
            out.update({"direction": "sent" if self.sent else "received", "code": self.notification.code,
                        "subcode": self.notification.subcode, "name": str(self.notification)[len("NOTIFICATION "):],
                        "data": self.notification.data.hex()})
        else:
            out["family"] = _family_name(self.family)
        if self.reason:
            out["reason"] = self.reason
        return out


def parse_endpoint(value: object, *, field: str, default_port: int = BGP_PORT) -> tuple[IPAddress, int]:
    """``ADDR``, ``ADDR:PORT`` or ``[IPv6]:PORT`` → (address, port).

    >>> parse_endpoint("192.0.2.1", field="peer")
    (IPv4Address('192.0.2.1'), 179)
    >>> parse_endpoint("[fd00::1]:1179", field="peer")
    (IPv6Address('fd00::1'), 1179)
    """
    text = str(value).strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise InvalidValue("BGPSession", field, value, "must be ADDR, ADDR:PORT or [IPv6]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if isinstance(port, str):
        if not port.isdigit() or int(port) > 65535:
            raise InvalidValue("BGPSession", field, value, "must have a port from 0 to 65535")
        port = int(port)
    return parse_address(host, obj="BGPSession", field=field), port


def _enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (``ip netns`` names live in /run/netns).

    setns(2) with CLONE_NEWNET changes only the calling thread, which is what lets
    one test process run a speaker inside a lab namespace.
    """
    fd = os.open(name if name.startswith("/") else f"/run/netns/{name}", os.O_RDONLY)
    try:
        if hasattr(os, "setns"):
            os.setns(fd, _CLONE_NEWNET)
        elif ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({name}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class _SessionDown(Exception):
    """Internal: the connection ended; carries the NOTIFICATION we send (if any) and why."""

    def __init__(self, reason: str, notification: Notification | None = None, *, next_state: State = State.IDLE):
        super().__init__(reason)
        self.reason = reason
        self.notification = notification
        self.next_state = next_state


class BGPSession:
    """A BGP session with one neighbour over TCP (RFC 4271 §8), in a background thread.

    Args:
        local_as: this speaker's AS (4-octet ASNs are sent as AS_TRANS plus the
            4-octet AS capability, RFC 6793).
        router_id: the BGP Identifier (``router id`` in BIRD, ``bgp router-id`` in FRR).
        peer: ``ADDR[:PORT]`` of the neighbour. A passive session accepts
            connections from this address only.
        peer_as: the neighbour's AS (``neighbor ... remote-as``); an OPEN with
            another AS is refused with NOTIFICATION 2/2 *Bad Peer AS*.
        local_address: ``ADDR[:PORT]`` to bind (BIRD's ``local``, FRR's
            ``update-source``); for a passive session, where to listen (default
            port 179; port 0 picks a free one, see :attr:`listen_port`).
        passive: listen instead of connecting.
        announce: prefixes to send once Established; more can be added later
            with :meth:`announce` and taken back with :meth:`withdraw`.
        next_hop: NEXT_HOP for announced prefixes, one IPv4 and/or one IPv6
            address; by default the local address of the TCP connection.
            IPv6 prefixes over an IPv4 session need an IPv6 next hop here.
        hold_time: Hold Time to propose (0, or 3 to 65535 seconds).
        connect_retry_time: ConnectRetryTime, also the wait in Idle before an
            automatic restart after an error.
        ipv6: also offer IPv6 unicast (implied by IPv6 prefixes or an IPv6 peer).
        auto_restart: after an error, start again after ``connect_retry_time``
            (RFC 4271 §8.1.1 AutomaticStart); False leaves the session in Idle.
        netns: run the session's sockets inside this network namespace (an
            ``ip netns`` name or a path; needs root).
        on_event: called with each :class:`SessionEvent`, from the session thread.
    """

    def __init__(self, *, local_as: int, router_id: object, peer: object, peer_as: int,
                 local_address: object | None = None, passive: bool = False, announce: object = (),
                 next_hop: object = (), hold_time: int = DEFAULT_HOLD_TIME,
                 connect_retry_time: float = DEFAULT_CONNECT_RETRY_TIME, ipv6: bool = False,
                 auto_restart: bool = True, netns: str | None = None,
                 on_event: Callable[[SessionEvent], None] | None = None):
        self.peer_address, self.peer_port = parse_endpoint(peer, field="peer")
        self.local_address, self.local_port = (parse_endpoint(local_address, field="local_address")
                                               if local_address is not None else (None, BGP_PORT))
        if self.local_address is not None and self.local_address.version != self.peer_address.version:
            raise InvalidValue("BGPSession", "local_address", str(self.local_address),
                               f"must be IPv{self.peer_address.version} like the peer {self.peer_address}")
        self.peer_as = peer_as
        self.passive = bool(passive)
        self.connect_retry_time = float(connect_retry_time)
        if self.connect_retry_time <= 0:
            raise InvalidValue("BGPSession", "connect_retry_time", connect_retry_time, "must be positive")
        self.auto_restart = auto_restart
        self.netns = netns
        self.on_event = on_event
        hops = [parse_address(h, obj="BGPSession", field="next_hop")
                for h in ([next_hop] if isinstance(next_hop, (str, IPv4Address, IPv6Address)) else next_hop)]
        self._next_hop = {h.version: h for h in hops}
        if len(self._next_hop) != len(hops):
            raise InvalidValue("BGPSession", "next_hop", [str(h) for h in hops], "must give at most one address per family")
        prefixes = self._parse_prefixes(announce)
        wants_v6 = ipv6 or self.peer_address.version == 6 or any(p.version == 6 for p in prefixes)
        families = ((AFI.IPV4, SAFI.UNICAST),) + (((AFI.IPV6, SAFI.UNICAST),) if wants_v6 else ())
        self.local_open = Open.for_speaker(local_as, router_id, hold_time=hold_time, families=families)
        self.local_as = local_as
        self._adj_rib_out: dict[IPNetwork, None] = dict.fromkeys(prefixes)
        self._adj_rib_in: dict[IPNetwork, Route] = {}
        self._state = State.IDLE
        self.negotiated: Negotiated | None = None
        self.peer_open: Open | None = None
        self.events: collections.deque[SessionEvent] = collections.deque(maxlen=100_000)
        self._lock = threading.Condition()
        self._commands: collections.deque = collections.deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_time = time.monotonic()
        self._listen_port: int | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        # Connection state, owned by the session thread.
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = None
        self._listener: socket.socket | None = None
        self._sock: socket.socket | None = None
        self._connecting = False
        self._buffer = b""
        self._timers: dict[str, float | None] = {"connect_retry": None, "hold": None, "keepalive": None,
                                                 "restart": None}
        self._eor_received: set[tuple[int, int]] = set()
        self._last_update = 0.0
        self._established_at: float | None = None

    # ---- the public face -------------------------------------------------------------

    def _parse_prefixes(self, values: object) -> list[IPNetwork]:
        values = [values] if isinstance(values, (str, IPv4Network, IPv6Network)) else list(values)
        prefixes = [parse_network(v, obj="BGPSession", field="announce") for v in values]
        for prefix in prefixes:
            if prefix.version != self.peer_address.version and prefix.version not in self._next_hop:
                raise InvalidValue("BGPSession", "announce", str(prefix),
                                   f"needs an IPv{prefix.version} next_hop: an IPv{self.peer_address.version} "
                                   f"session has no such local address to use (RFC 4760 §3, RFC 2545 §3)")
        return prefixes

    def __repr__(self) -> str:
        mode = "passive" if self.passive else "active"
        return (f"<BGPSession AS{self.local_as} -> {self.peer_address} AS{self.peer_as} {mode} "
                f"{self.state.value}>")

    @property
    def state(self) -> State:
        """The FSM state right now."""
        return self._state

    @property
    def adj_rib_in(self) -> dict[IPNetwork, Route]:
        """A copy of the Adj-RIB-In: every prefix the peer announced and has not withdrawn."""
        with self._lock:
            return dict(self._adj_rib_in)

    @property
    def adj_rib_out(self) -> tuple[IPNetwork, ...]:
        """The prefixes this speaker announces."""
        with self._lock:
            return tuple(self._adj_rib_out)

    @property
    def listen_port(self) -> int | None:
        """The TCP port a passive session listens on (useful with port 0)."""
        return self._listen_port

    def start(self) -> None:
        """ManualStart (RFC 4271 §8.1.2): run the FSM in a background thread; returns once it listens or dials."""
        if self._thread is not None:
            raise InvalidValue("BGPSession", "start", self.state.value, "must be called once")
        self._start_time = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"bgp-{self.peer_address}", daemon=True)
        self._thread.start()
        self._started.wait(timeout=10)
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 5.0) -> None:
        """ManualStop (RFC 4271 §8.1.2): NOTIFICATION Cease / Administrative Shutdown, close, Idle."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BGPSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def announce(self, prefixes: object) -> None:
        """Add prefixes to the Adj-RIB-Out; sent at once if Established."""
        new = self._parse_prefixes(prefixes)
        with self._lock:
            self._commands.append(("announce", new))
        self._wake()

    def withdraw(self, prefixes: object) -> None:
        """Remove prefixes from the Adj-RIB-Out; a withdrawing UPDATE goes out at once if Established."""
        gone = [parse_network(v, obj="BGPSession", field="withdraw")
                for v in ([prefixes] if isinstance(prefixes, (str, IPv4Network, IPv6Network)) else prefixes)]
        with self._lock:
            self._commands.append(("withdraw", gone))
        self._wake()

    def route_refresh(self, afi: AFI = AFI.IPV4, safi: SAFI = SAFI.UNICAST) -> None:
        """Ask the peer to send its routes again (RFC 2918; FRR's ``clear bgp ... soft in``)."""
        with self._lock:
            self._commands.append(("refresh", (afi, safi)))
        self._wake()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``predicate()`` to hold; re-checked after every event."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, _MAX_SLEEP))
            return True

    def wait_for_state(self, state: State, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the FSM to be in ``state``."""
        return self.wait_for(lambda: self._state is state, timeout)

    @property
    def exchange_complete(self) -> bool:
        """True once Established and the peer has sent all it has: End-of-RIB for every
        negotiated family, or :data:`QUIET_PERIOD` seconds without an UPDATE."""
        negotiated = self.negotiated
        if self._state is not State.ESTABLISHED or negotiated is None:
            return False
        if all(f in self._eor_received for f in negotiated.families):
            return True
        return time.monotonic() - max(self._last_update, self._established_at or 0) >= QUIET_PERIOD

    def wait_for_exchange(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :attr:`exchange_complete`."""
        return self.wait_for(lambda: self.exchange_complete, timeout)

    # ---- events ------------------------------------------------------------------------

    def _emit(self, kind: EventKind, **fields) -> None:
        event = SessionEvent(time.monotonic() - self._start_time, kind, **fields)
        with self._lock:
            self.events.append(event)
            self._lock.notify_all()
        if self.on_event is not None:
            self.on_event(event)

    def _set_state(self, state: State, reason: str = "") -> None:
        if state is self._state:
            return
        previous = self._state
        with self._lock:
            self._state = state
        self._emit(EventKind.STATE, state=state, previous=previous, reason=reason)

    # ---- the session thread --------------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def _run(self) -> None:
        try:
            if self.netns:
                _enter_netns(self.netns)
        except OSError as err:
            self._start_error = InvalidValue("BGPSession", "netns", self.netns,
                                             f"must be an existing network namespace we may enter: {err.strerror}")
            self._started.set()
            return
        try:
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            if self.passive:
                self._open_listener()
        except (OSError, InvalidValue) as err:
            self._start_error = err if isinstance(err, InvalidValue) else InvalidValue(
                "BGPSession", "local_address", f"{self.local_address or '*'}:{self.local_port}",
                f"must be an address this host can {'listen on' if self.passive else 'use'}: {err}")
            self._started.set()
            return
        self._start_fsm()
        self._started.set()
        try:
            self._loop()
        finally:
            self._close_connection()
            for sock in (self._listener, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._selector.close()
            self._set_state(State.IDLE, "stopped")

    def _open_listener(self) -> None:
        family = socket.AF_INET6 if self.peer_address.version == 6 else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((str(self.local_address or ("::" if family == socket.AF_INET6 else "0.0.0.0")),
                       self.local_port))
        listener.listen(4)
        listener.setblocking(False)
        self._listener = listener
        self._listen_port = listener.getsockname()[1]
        self._selector.register(listener, selectors.EVENT_READ, "listen")

    def _start_fsm(self) -> None:
        """ManualStart (Event 1) or ManualStart_with_PassiveTcpEstablishment (Event 4)."""
        self._timers["restart"] = None
        if self.passive:
            self._set_state(State.ACTIVE, f"listening on port {self._listen_port}")
        else:
            self._set_state(State.CONNECT)
            self._dial()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    break
            now = time.monotonic()
            deadlines = [d for d in self._timers.values() if d is not None]
            timeout = max(0.0, min([_MAX_SLEEP] + [d - now for d in deadlines]))
            for key, mask in self._selector.select(timeout):
                self._guarded(self._on_ready, key, mask)
            self._guarded(self._run_commands)
            self._guarded(self._run_timers)
        if self._sock is not None and self._state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
            self._send_notification(Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN))

    def _guarded(self, handler, *args) -> None:
        """Run one FSM step; a session-ending condition closes the connection, never the thread."""
        try:
            handler(*args)
        except BGPMessageError as err:
            self._session_down(_SessionDown(str(err), err.notification()))
        except _SessionDown as down:
            self._session_down(down)

    def _session_down(self, down: _SessionDown) -> None:
        if down.notification is not None and self._sock is not None and not self._connecting:
            self._send_notification(down.notification)
        self._close_connection()
        self.negotiated = None
        self._timers.update(hold=None, keepalive=None)
        # Routes learnt on a session die with it (RFC 4271 §8.2.2: "deletes all routes associated
        # with this connection").
        with self._lock:
            lost, self._adj_rib_in = list(self._adj_rib_in), {}
        for prefix in lost:
            self._emit(EventKind.WITHDRAW, prefix=prefix, reason="session down")
        if down.next_state is State.ACTIVE:
            # Connection lost before the OPEN exchange finished (RFC 4271 §8.2.2, OpenSent: Event 18):
            # wait ConnectRetryTime (active) or keep listening (passive).
            self._set_state(State.ACTIVE, down.reason)
            self._timers["connect_retry"] = None if self.passive else time.monotonic() + self.connect_retry_time
            return
        self._timers["connect_retry"] = None
        self._set_state(State.IDLE, down.reason)
        if self.auto_restart:
            self._timers["restart"] = time.monotonic() + self.connect_retry_time

    def _send_notification(self, notification: Notification) -> None:
        try:
            self._sock.settimeout(_SEND_TIMEOUT)
            self._sock.sendall(notification.encode())
        except OSError:
            return
        self._emit(EventKind.NOTIFICATION, notification=notification, sent=True)

    def _close_connection(self) -> None:
        if self._sock is not None:
            try:
                self._selector.unregister(self._sock)
            except (KeyError, ValueError):
                pass
            self._sock.close()
        self._sock = None
        self._connecting = False
        self._buffer = b""

    # -- connecting and accepting --

    def _dial(self) -> None:
        """Initiate the TCP connection (Connect state); completion is seen as writability."""
        family = socket.AF_INET6 if self.peer_address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self._timers["connect_retry"] = time.monotonic() + self.connect_retry_time
        try:
            if self.local_address is not None:
                sock.bind((str(self.local_address), 0))
            code = sock.connect_ex((str(self.peer_address), self.peer_port))
        except OSError as err:
            sock.close()
            self._set_state(State.ACTIVE, f"cannot connect: {err.strerror}")
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._set_state(State.ACTIVE, f"cannot connect: {os.strerror(code)}")
            return
        self._sock, self._connecting = sock, True
        self._selector.register(sock, selectors.EVENT_WRITE, "conn")

    def _on_ready(self, key, mask) -> None:
        if key.data == "wake":
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        elif key.data == "listen":
            self._accept()
        elif self._connecting:
            code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                # Connect state, TcpConnectionFails (Event 18): go to Active, retry on ConnectRetry expiry.
                self._close_connection()
                self._set_state(State.ACTIVE, f"cannot connect: {os.strerror(code)}")
                return
            self._connecting = False
            self._selector.modify(self._sock, selectors.EVENT_READ, "conn")
            self._connection_up()
        else:
            self._receive()

    def _accept(self) -> None:
        try:
            sock, (address, port, *_) = self._listener.accept()
        except OSError:
            return
        source = parse_address(address.split("%")[0], obj="BGPSession", field="peer")
        if source != self.peer_address or self._state is not State.ACTIVE or self._sock is not None:
            # Not our neighbour, or not the time: RFC 4271 §8.2.2 (Idle refuses connections) and
            # RFC 4486 §4 Connection Rejected for a second connection from the same peer.
            if source == self.peer_address and self._state is not State.IDLE:
                try:
                    sock.settimeout(_SEND_TIMEOUT)
                    sock.sendall(Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED).encode())
                except OSError:
                    pass
            sock.close()
            return
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ, "conn")
        self._connection_up(f"accepted from {address}:{port}")

    def _connection_up(self, how: str = "") -> None:
        """TcpConnectionConfirmed / Tcp_CR_Acked: send OPEN, OpenSent, hold timer at the large value."""
        local = self._sock.getsockname()
        how = how or f"connected from {local[0]}:{local[1]}"
        self._timers["connect_retry"] = None
        self._send(self.local_open)
        self._timers["hold"] = time.monotonic() + LARGE_HOLD_TIME
        self._set_state(State.OPENSENT, how)

    # -- receiving --

    def _receive(self) -> None:
        try:
            self._sock.settimeout(0)
            chunk = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as err:
            raise self._lost(f"connection error: {err.strerror}") from None
        if not chunk:
            raise self._lost("peer closed the connection")
        frames, self._buffer = split_messages(self._buffer + chunk)
        for frame in frames:
            four_octet = self.negotiated.four_octet_as if self.negotiated else True
            self._handle(decode(frame, four_octet_as=four_octet))
            if self._sock is None:
                return

    def _lost(self, reason: str) -> _SessionDown:
        """TcpConnectionFails (Event 18): OpenSent goes to Active, later states to Idle (RFC 4271 §8.2.2)."""
        next_state = State.ACTIVE if self._state is State.OPENSENT else State.IDLE
        return _SessionDown(reason, next_state=next_state)

    def _handle(self, message) -> None:
        if isinstance(message, Notification):
            self._emit(EventKind.NOTIFICATION, notification=message, sent=False)
            raise _SessionDown(f"peer sent {message}")
        state = self._state
        if state is State.OPENSENT:
            if not isinstance(message, Open):
                raise _SessionDown(f"{type(message).__name__.upper()} before OPEN", self._fsm_error(
                    FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE))
            self.negotiated = negotiate(self.local_open, message, peer_as=self.peer_as)
            self.peer_open = message
            self._send(Keepalive())
            self._restart_hold_timer()
            self._timers["keepalive"] = (time.monotonic() + self.negotiated.keepalive_time
                                         if self.negotiated.keepalive_time else None)
            families = ", ".join(map(_family_name, self.negotiated.families)) or "no common family"
            self._set_state(State.OPENCONFIRM, f"peer AS {message.asn} id {message.bgp_identifier}, hold "
                                               f"{self.negotiated.hold_time} s, {families}")
        elif state is State.OPENCONFIRM:
            if not isinstance(message, Keepalive):
                raise _SessionDown(f"{type(message).__name__.upper()} in OpenConfirm", self._fsm_error(
                    FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE))
            self._restart_hold_timer()
            self._established()
        elif state is State.ESTABLISHED:
            self._restart_hold_timer()
            if isinstance(message, Update):
                self._on_update(message)
            elif isinstance(message, RouteRefresh):
                self._on_route_refresh(message)
            elif isinstance(message, Open):
                raise _SessionDown("OPEN in Established", self._fsm_error(
                    FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE))

    @staticmethod
    def _fsm_error(subcode: FSMSubcode) -> Notification:
        return Notification(ErrorCode.FINITE_STATE_MACHINE_ERROR, subcode)

    def _restart_hold_timer(self) -> None:
        hold = self.negotiated.hold_time if self.negotiated else LARGE_HOLD_TIME
        self._timers["hold"] = time.monotonic() + hold if hold else None

    def _established(self) -> None:
        self._eor_received.clear()
        with self._lock:
            self._adj_rib_in.clear()
        self._established_at = self._last_update = time.monotonic()
        self._set_state(State.ESTABLISHED)
        self._send_routes(list(self.adj_rib_out))
        for family in self.negotiated.families:
            self._send(end_of_rib(*family))

    def _on_update(self, update: Update) -> None:
        """Apply an UPDATE to the Adj-RIB-In: withdrawals first, then announcements (RFC 4271 §9).

        RFC 7606 treat-as-withdraw is already folded in by the decoder: such an
        UPDATE's prefixes come back in ``unfeasible_routes``. Routes whose AS_PATH
        holds our own AS are dropped (the receiver's loop check, RFC 4271 §9.1.2;
        FRR sends our prefixes back, datapath.md §3 lesson 4).
        """
        self._last_update = time.monotonic()
        family = update.end_of_rib
        if family is not None:
            self._eor_received.add(family)
            self._emit(EventKind.END_OF_RIB, family=family)
            return
        reason = "; ".join(str(m) for m in update.malformed if update.treat_as_withdraw)
        for prefix in update.unfeasible_routes:
            with self._lock:
                known = self._adj_rib_in.pop(prefix, None)
            if known is not None or update.treat_as_withdraw:
                self._emit(EventKind.WITHDRAW, prefix=prefix, reason=reason)
        feasible = update.feasible_routes
        if not feasible:
            return
        attributes = tuple(a for a in update.attributes if not isinstance(a, (MPReachNLRI, MPUnreachNLRI)))
        if self.negotiated.peer_as != self.local_as:
            # RFC 7606 §7.5, §7.9, §7.10: LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST from an external peer are discarded.
            attributes = tuple(a for a in attributes if not isinstance(a, (LocalPref, OriginatorID, ClusterList)))
        as_path = update.attribute(ASPath)
        loop = as_path is not None and self.local_as in as_path.asns
        next_hop = update.attribute(NextHop)
        mp = update.attribute(MPReachNLRI)
        for prefix in feasible:
            if loop:
                with self._lock:
                    known = self._adj_rib_in.pop(prefix, None)
                if known is not None:
                    self._emit(EventKind.WITHDRAW, prefix=prefix, reason=f"AS_PATH contains our AS {self.local_as}")
                continue
            hop = (next_hop.next_hop if next_hop else None) if prefix in update.nlri else mp.next_hop[0]
            route = Route(prefix, hop, attributes)
            with self._lock:
                self._adj_rib_in[prefix] = route
            self._emit(EventKind.ROUTE, route=route)

    def _on_route_refresh(self, message: RouteRefresh) -> None:
        """Resend our routes of that family and its End-of-RIB (RFC 2918 §4); unknown families are ignored."""
        family = (message.afi, message.safi)
        self._emit(EventKind.ROUTE_REFRESH, family=family, reason="received")
        if message.subtype == 0 and family in self.negotiated.families:
            self._send_routes([p for p in self.adj_rib_out if _family_of(p) == family])
            self._send(end_of_rib(*family))

    # -- sending --

    def _send(self, message) -> None:
        four_octet = self.negotiated.four_octet_as if self.negotiated else True
        data = message.encode(four_octet_as=four_octet) if isinstance(message, Update) else message.encode()
        try:
            self._sock.settimeout(_SEND_TIMEOUT)
            self._sock.sendall(data)
        except OSError as err:
            raise self._lost(f"send failed: {err.strerror or err}") from None
        finally:
            if self._sock is not None:
                self._sock.settimeout(0)

    def _path_attributes(self, family: tuple[int, int]) -> tuple[tuple[PathAttribute, ...], IPAddress]:
        """ORIGIN IGP; AS_PATH = our AS on eBGP, empty on iBGP (+ LOCAL_PREF); the next hop to use."""
        local = parse_address(self._sock.getsockname()[0].split("%")[0], obj="BGPSession", field="local_address")
        version = 4 if family[0] == AFI.IPV4 else 6
        hop = self._next_hop.get(version) or local
        internal = self.negotiated.peer_as == self.local_as
        attributes = [Origin(OriginType.IGP), ASPath([] if internal else [self.local_as])]
        if internal:
            attributes.append(LocalPref(DEFAULT_LOCAL_PREF))
        return tuple(attributes), hop

    def _send_routes(self, prefixes: list[IPNetwork], *, withdraw: bool = False) -> None:
        for family in self.negotiated.families:
            chosen = [p for p in prefixes if _family_of(p) == family]
            for start in range(0, len(chosen), _PREFIXES_PER_UPDATE):
                chunk = chosen[start:start + _PREFIXES_PER_UPDATE]
                if withdraw:
                    update = (Update(withdrawn=chunk) if family == (AFI.IPV4, SAFI.UNICAST)
                              else Update(attributes=(MPUnreachNLRI(*family, chunk),)))
                else:
                    attributes, hop = self._path_attributes(family)
                    if family == (AFI.IPV4, SAFI.UNICAST):
                        update = Update(attributes=attributes[:2] + (NextHop(hop),) + attributes[2:], nlri=chunk)
                    else:
                        update = Update(attributes=(MPReachNLRI(*family, hop, chunk),) + attributes)
                self._send(update)

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                action, value = self._commands.popleft()
                if action == "announce":
                    value = [p for p in value if p not in self._adj_rib_out]
                    self._adj_rib_out.update(dict.fromkeys(value))
                elif action == "withdraw":
                    value = [p for p in value if p in self._adj_rib_out]
                    for prefix in value:
                        del self._adj_rib_out[prefix]
            if self._state is not State.ESTABLISHED:
                continue
            if action == "refresh":
                if self.negotiated.route_refresh:
                    self._send(RouteRefresh(*value))
                    self._emit(EventKind.ROUTE_REFRESH, family=value, reason="sent")
            elif value:
                self._send_routes(value, withdraw=action == "withdraw")

    def _run_timers(self) -> None:
        now = time.monotonic()
        due = {name for name, deadline in self._timers.items() if deadline is not None and deadline <= now}
        if "restart" in due:
            self._timers["restart"] = None
            self._start_fsm()
        if "hold" in due:
            raise _SessionDown(f"no message from the peer for {self._hold_seconds():g} s",
                               Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0))
        if "keepalive" in due and self._sock is not None:
            self._send(Keepalive())
            self._timers["keepalive"] = now + self.negotiated.keepalive_time
        if "connect_retry" in due:
            # ConnectRetryTimer_Expires (Event 9): drop a half-open attempt and dial again.
            self._close_connection()
            self._set_state(State.CONNECT, "ConnectRetry timer expired")
            self._dial()

    def _hold_seconds(self) -> float:
        return self.negotiated.hold_time if self.negotiated else LARGE_HOLD_TIME


def _family_of(prefix: IPNetwork) -> tuple[AFI, SAFI]:
    return (AFI.IPV4 if prefix.version == 4 else AFI.IPV6), SAFI.UNICAST

