"""The wire-mode BGP session (kubenet_lab.bgp.session), no root needed.

Two kubenet_lab speakers over 127.0.0.1 with ephemeral ports, and a scripted
"peer" on a raw socket that sends exactly the bytes a test wants, to check the
NOTIFICATION each mistake earns (RFC 4271 §6) and that the session returns to
Idle and starts again while the process lives on. Every wait is bounded.
"""

from __future__ import annotations

import socket
import time
from ipaddress import ip_network

import pytest

from kubenet_lab.bgp import (
    AFI,
    SAFI,
    ASPath,
    Keepalive,
    LocalPref,
    NextHop,
    Notification,
    Open,
    Origin,
    OriginType,
    Update,
    decode,
    split_messages,
)
from kubenet_lab.bgp.session import BGPSession, EventKind, SessionEvent, State, parse_endpoint
from kubenet_lab.cli import main
from kubenet_lab.errors import InvalidValue

WAIT = 10.0
NODE_HOP, TOR_HOP = "192.0.2.2", "192.0.2.1"   # 127.0.0.1 is not a valid NEXT_HOP (RFC 4271 §6.3)


def listening(**overrides) -> BGPSession:
    """A passive kubenet_lab speaker (AS 64512) on 127.0.0.1, a free port, expecting AS 65001."""
    options = dict(local_as=64512, router_id="192.0.2.2", peer="127.0.0.1", peer_as=65001, passive=True,
                   local_address="127.0.0.1:0", next_hop=NODE_HOP, connect_retry_time=0.3)
    options.update(overrides)
    session = BGPSession(**options)
    session.start()
    return session


def dialing(port: int, **overrides) -> BGPSession:
    options = dict(local_as=65001, router_id="192.0.2.1", peer=f"127.0.0.1:{port}", peer_as=64512,
                   next_hop=TOR_HOP, connect_retry_time=0.3)
    options.update(overrides)
    session = BGPSession(**options)
    session.start()
    return session


class RawPeer:
    """A hand-driven TCP peer: sends raw bytes, reads whole BGP messages (bounded by a timeout)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, timeout: float = WAIT):
        """The next message, or None if the connection closed first."""
        deadline = time.monotonic() + timeout
        while True:
            frames, rest = split_messages(self.buffer)
            if frames:
                self.buffer = self.buffer[len(frames[0]):]
                return decode(frames[0])
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk

    def receive_until(self, kind: type, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is None or isinstance(message, kind):
                return message
        raise AssertionError(f"no {kind.__name__} within {timeout} s")

    def establish(self, *, hold_time: int = 90, asn: int = 65001) -> Open:
        """OPEN exchange and KEEPALIVEs up to Established; returns the speaker's OPEN."""
        theirs = self.receive()
        assert isinstance(theirs, Open)
        self.send(Open.for_speaker(asn, "192.0.2.1", hold_time=hold_time).encode())
        assert isinstance(self.receive(), Keepalive)
        self.send(Keepalive().encode())
        return theirs

    def close(self) -> None:
        self.sock.close()


def _recovers(session: BGPSession) -> None:
    """After an error the session is Idle, then (AutomaticStart) listening again and usable."""
    assert session.wait_for_state(State.IDLE, WAIT)
    assert session.wait_for_state(State.ACTIVE, WAIT)
    peer = RawPeer(session.listen_port)
    try:
        assert isinstance(peer.receive(), Open)
    finally:
        peer.close()


def _update(prefix: str, *, origin: int = 0, next_hop: str = TOR_HOP) -> bytes:
    """An eBGP UPDATE from AS 65001; ``origin`` is written raw so it can be invalid."""
    good = Update(attributes=(Origin(OriginType.IGP), ASPath([65001]), NextHop(next_hop)), nlri=[prefix]).encode()
    return good.replace(bytes.fromhex("40010100"), bytes([0x40, 1, 1, origin]))


# ---- two kubenet_lab speakers ------------------------------------------------------------------------

def test_two_speakers_exchange_withdraw_and_close():
    node = listening(announce=["10.244.1.0/24"])
    tor = dialing(node.listen_port, announce=["203.0.113.0/24", "198.51.100.0/24"])
    try:
        assert node.wait_for_exchange(WAIT) and tor.wait_for_exchange(WAIT)
        assert tor.negotiated.hold_time == 90 and tor.negotiated.keepalive_time == 30
        assert set(node.adj_rib_in) == {ip_network("203.0.113.0/24"), ip_network("198.51.100.0/24")}
        route = node.adj_rib_in[ip_network("203.0.113.0/24")]
        assert (str(route.next_hop), route.as_path.asns, route.origin) == (TOR_HOP, (65001,), OriginType.IGP)
        assert str(tor.adj_rib_in[ip_network("10.244.1.0/24")]) == "10.244.1.0/24 via 192.0.2.2 as-path 64512 origin IGP"

        node.announce(["10.244.2.0/24"])
        assert tor.wait_for(lambda: ip_network("10.244.2.0/24") in tor.adj_rib_in, WAIT)
        tor.withdraw("203.0.113.0/24")
        assert node.wait_for(lambda: ip_network("203.0.113.0/24") not in node.adj_rib_in, WAIT)
        assert ip_network("198.51.100.0/24") in node.adj_rib_in
        assert node.adj_rib_out == (ip_network("10.244.1.0/24"), ip_network("10.244.2.0/24"))

        states = [e.state for e in tor.events if e.kind is EventKind.STATE]
        assert states == [State.CONNECT, State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED]
        assert [e.state for e in node.events if e.kind is EventKind.STATE] == [
            State.ACTIVE, State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED]
        assert any(e.kind is EventKind.END_OF_RIB and e.family == (AFI.IPV4, SAFI.UNICAST) for e in node.events)
    finally:
        tor.stop()
    # ManualStop: Cease / Administrative Shutdown; the peer drops the routes learnt on the session.
    assert node.wait_for_state(State.IDLE, WAIT)
    assert node.adj_rib_in == {}
    received = [e for e in node.events if e.kind is EventKind.NOTIFICATION]
    assert [(e.sent, str(e.notification)) for e in received] == [
        (False, "NOTIFICATION 6/2 Cease / Administrative Shutdown")]
    assert tor.state is State.IDLE
    node.stop()


def test_ibgp_route_refresh_ipv6_and_four_octet_as():
    node = listening(local_as=4200000001, peer_as=4200000001, announce=["10.244.1.0/24", "fd00:10:244:1::/64"],
                     next_hop=[NODE_HOP, "fd00::2"])
    tor = dialing(node.listen_port, local_as=4200000001, peer_as=4200000001, ipv6=True, router_id="192.0.2.1")
    try:
        assert node.wait_for_exchange(WAIT) and tor.wait_for_exchange(WAIT)
        assert node.negotiated.families == ((AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST))
        assert node.local_open.my_as == 23456          # AS_TRANS in the 2-octet field (RFC 6793)
        v4 = tor.adj_rib_in[ip_network("10.244.1.0/24")]
        assert v4.as_path.asns == () and v4.attribute(LocalPref) == LocalPref(100)   # iBGP
        v6 = tor.adj_rib_in[ip_network("fd00:10:244:1::/64")]
        assert str(v6.next_hop) == "fd00::2"
        assert {e.family for e in tor.events if e.kind is EventKind.END_OF_RIB} == {
            (AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST)}

        routes_before = sum(e.kind is EventKind.ROUTE for e in tor.events)
        tor.route_refresh(AFI.IPV6, SAFI.UNICAST)
        assert tor.wait_for(lambda: sum(e.kind is EventKind.ROUTE for e in tor.events) == routes_before + 1, WAIT)
        assert any(e.kind is EventKind.ROUTE_REFRESH and e.reason == "received" for e in node.events)
        node.withdraw(["fd00:10:244:1::/64"])
        assert tor.wait_for(lambda: ip_network("fd00:10:244:1::/64") not in tor.adj_rib_in, WAIT)
    finally:
        tor.stop()
        node.stop()


def test_hold_time_is_the_smaller_and_keepalives_flow():
    node = listening(hold_time=3)
    tor = dialing(node.listen_port, hold_time=90)
    try:
        assert tor.wait_for_state(State.ESTABLISHED, WAIT)
        assert (tor.negotiated.hold_time, tor.negotiated.keepalive_time) == (3, 1)
        time.sleep(4)      # longer than the hold time: only KEEPALIVEs keep it up
        assert tor.state is State.ESTABLISHED and node.state is State.ESTABLISHED
    finally:
        tor.stop()
        node.stop()


# ---- a misbehaving peer -------------------------------------------------------------------------------

BAD_INPUT = {
    "garbage": (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", 1, 1),
    "bad marker": (bytes(16) + bytes([0, 19, 4]), 1, 1),
    "bad length": (b"\xff" * 16 + (5000).to_bytes(2, "big") + b"\x04", 1, 2),
    "bad type": (b"\xff" * 16 + bytes([0, 19, 9]), 1, 3),
    "keepalive too long": (b"\xff" * 16 + bytes([0, 20, 4, 0]), 1, 2),
    "version 3": (Open(3, 65001, 90, "192.0.2.1").encode(), 2, 1),
    "hold time 2": (Open(4, 65001, 2, "192.0.2.1").encode(), 2, 6),
    "unexpected AS": (Open.for_speaker(65099, "192.0.2.1").encode(), 2, 2),
    "UPDATE before OPEN": (_update("203.0.113.0/24"), 5, 1),
}


@pytest.mark.parametrize("data, code, subcode", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_before_established_gets_the_rfc_notification(data, code, subcode):
    session = listening()
    peer = RawPeer(session.listen_port)
    try:
        assert isinstance(peer.receive(), Open)
        peer.send(data)
        answer = peer.receive()
        assert isinstance(answer, Notification)
        assert (answer.code, answer.subcode) == (code, subcode), str(answer)
        assert peer.receive() is None                         # and the connection is closed
        sent = [e for e in session.events if e.kind is EventKind.NOTIFICATION]
        assert sent and sent[-1].sent and sent[-1].notification == answer
        _recovers(session)
    finally:
        peer.close()
        session.stop()


def test_bad_input_after_established():
    session = listening()
    peer = RawPeer(session.listen_port)
    try:
        peer.establish()
        assert session.wait_for_state(State.ESTABLISHED, WAIT)
        # Withdrawn Routes Length 200 in a 4-octet body: the UPDATE cannot be parsed (RFC 4271 §6.3).
        peer.send(b"\xff" * 16 + bytes([0, 23, 2, 0, 200, 0, 0]))
        answer = peer.receive_until(Notification)
        assert (answer.code, answer.subcode) == (3, 1)
        _recovers(session)
    finally:
        peer.close()
        session.stop()


def test_open_in_established_is_an_fsm_error():
    session = listening()
    peer = RawPeer(session.listen_port)
    try:
        peer.establish()
        peer.send(Open.for_speaker(65001, "192.0.2.1").encode())
        answer = peer.receive_until(Notification)
        assert (answer.code, answer.subcode) == (5, 3)
        _recovers(session)
    finally:
        peer.close()
        session.stop()


def test_treat_as_withdraw_keeps_the_session():
    session = listening()
    peer = RawPeer(session.listen_port)
    try:
        peer.establish()
        peer.send(_update("203.0.113.0/24"))
        assert session.wait_for(lambda: ip_network("203.0.113.0/24") in session.adj_rib_in, WAIT)
        peer.send(_update("203.0.113.0/24", origin=3))         # ORIGIN 3 does not exist (RFC 7606 §7.1)
        assert session.wait_for(lambda: ip_network("203.0.113.0/24") not in session.adj_rib_in, WAIT)
        withdraw = [e for e in session.events if e.kind is EventKind.WITHDRAW][-1]
        assert "treat-as-withdraw" in withdraw.reason and "Invalid ORIGIN Attribute" in withdraw.reason
        assert session.state is State.ESTABLISHED
        assert not any(e.kind is EventKind.NOTIFICATION for e in session.events)
    finally:
        peer.close()
        session.stop()


def test_own_as_in_as_path_is_not_accepted():
    session = listening()
    peer = RawPeer(session.listen_port)
    try:
        peer.establish()
        looped = Update(attributes=(Origin(OriginType.IGP), ASPath([65001, 64512]), NextHop(TOR_HOP)),
                        nlri=["10.244.1.0/24"])
        peer.send(looped.encode() + _update("203.0.113.0/24"))
        assert session.wait_for(lambda: ip_network("203.0.113.0/24") in session.adj_rib_in, WAIT)
        assert ip_network("10.244.1.0/24") not in session.adj_rib_in
    finally:
        peer.close()
        session.stop()


def test_hold_timer_expiry_sends_notification_4_0():
    session = listening(hold_time=3)
    peer = RawPeer(session.listen_port)
    try:
        peer.establish(hold_time=3)
        assert session.wait_for_state(State.ESTABLISHED, WAIT)
        started = time.monotonic()
        answer = peer.receive_until(Notification, timeout=8)   # we stay silent; it keepalives every second
        assert (answer.code, answer.subcode) == (4, 0)
        assert 2.5 <= time.monotonic() - started <= 5
        assert session.wait_for_state(State.IDLE, WAIT)
        assert "no message from the peer for 3 s" in [e for e in session.events if e.kind is EventKind.STATE
                                                     and e.state is State.IDLE][-1].reason
    finally:
        peer.close()
        session.stop()


def test_connection_lost_in_opensent_goes_to_active_and_connect_retries():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                               # nothing listens there now
    session = dialing(port, connect_retry_time=0.2)
    try:
        assert session.wait_for(lambda: sum(e.state is State.CONNECT for e in session.events) >= 3, WAIT)
        assert any(e.state is State.ACTIVE and "Connection refused" in e.reason for e in session.events)
    finally:
        session.stop()

    node = listening()
    peer = RawPeer(node.listen_port)
    try:
        assert isinstance(peer.receive(), Open)
        peer.close()                                             # TcpConnectionFails in OpenSent
        assert node.wait_for(lambda: node.events[-1].state is State.ACTIVE
                             and node.events[-1].previous is State.OPENSENT, WAIT)
    finally:
        node.stop()


def test_a_second_connection_is_rejected():
    session = listening()
    first = RawPeer(session.listen_port)
    try:
        first.establish()
        second = RawPeer(session.listen_port)
        answer = second.receive()
        assert (answer.code, answer.subcode) == (6, 5)          # Cease / Connection Rejected (RFC 4486)
        second.close()
        assert session.state is State.ESTABLISHED
    finally:
        first.close()
        session.stop()


# ---- values, input checks and the CLI -----------------------------------------------------------------

def test_events_render_as_lines_and_json():
    event = SessionEvent(1.23456, EventKind.WITHDRAW, prefix=ip_network("203.0.113.0/24"), reason="session down")
    assert str(event) == "withdraw 203.0.113.0/24 (session down)"
    assert event.to_json() == {"time": 1.235, "event": "withdraw", "prefix": "203.0.113.0/24",
                               "reason": "session down"}


@pytest.mark.parametrize("options, field", [
    (dict(peer="192.0.2.1:http"), "peer"),
    (dict(peer="192.0.2.1", local_address="fd00::2"), "local_address"),
    (dict(peer="192.0.2.1", announce=["fd00::/64"]), "announce"),
    (dict(peer="fd00::1", announce=["10.244.1.0/24"]), "announce"),
    (dict(peer="192.0.2.1", announce=["10.244.1.1/24"]), "announce"),
    (dict(peer="192.0.2.1", next_hop=["192.0.2.2", "192.0.2.3"]), "next_hop"),
])
def test_bad_configuration_names_the_field(options, field):
    with pytest.raises(InvalidValue) as caught:
        BGPSession(local_as=64512, router_id="192.0.2.2", peer_as=65001, **options)
    assert caught.value.field == field


def test_a_missing_network_namespace_is_reported_on_start():
    session = BGPSession(local_as=64512, router_id="192.0.2.2", peer="192.0.2.1", peer_as=65001,
                         netns="knl000000-does-not-exist")
    with pytest.raises(InvalidValue) as caught:
        session.start()
    assert caught.value.field == "netns"


def test_parse_endpoint():
    assert parse_endpoint("::1", field="peer")[1] == 179
    assert parse_endpoint("10.0.0.1:1179", field="peer")[1] == 1179


def test_cli_speak_once(capsys):
    tor = listening(local_as=65001, peer_as=64512, router_id="192.0.2.1", announce=["203.0.113.0/24"],
                    next_hop=TOR_HOP)
    try:
        status = main(["bgp", "speak", "--local-as", "64512", "--router-id", "192.0.2.2",
                       "--peer", f"127.0.0.1:{tor.listen_port}", "--peer-as", "65001",
                       "--announce", "10.244.1.0/24", "--next-hop", NODE_HOP, "--once", "--timeout", "10"])
        out = capsys.readouterr().out.splitlines()
        assert status == 0
        assert out[0] == "state Idle -> Connect"
        assert out[1].startswith("state Connect -> OpenSent (connected from 127.0.0.1:")
        assert out[2] == "state OpenSent -> OpenConfirm (peer AS 65001 id 192.0.2.1, hold 90 s, ipv4-unicast)"
        assert out[3:6] == ["state OpenConfirm -> Established",
                            "route 203.0.113.0/24 via 192.0.2.1 as-path 65001 origin IGP",
                            "end-of-rib ipv4-unicast"]
        assert out[6:] == ["notification sent 6/2 Cease / Administrative Shutdown", "state Established -> Idle (stopped)"]
        assert tor.wait_for(lambda: ip_network("10.244.1.0/24") not in tor.adj_rib_in
                            and any(e.kind is EventKind.ROUTE for e in tor.events), WAIT)
    finally:
        tor.stop()


def test_cli_speak_errors(capsys):
    assert main(["bgp", "speak", "--local-as", "64512", "--router-id", "192.0.2.2", "--peer", "127.0.0.1:1",
                 "--peer-as", "65001", "--announce", "10.244.1.1/24"]) == 2
    assert capsys.readouterr().err.startswith("kubenet-lab: error: BGPSession: 'announce'")

    tor = listening(local_as=65099, peer_as=64512, router_id="192.0.2.1")       # wrong AS
    try:
        status = main(["bgp", "speak", "--local-as", "64512", "--router-id", "192.0.2.2", "--json",
                       "--peer", f"127.0.0.1:{tor.listen_port}", "--peer-as", "65001", "--once", "--timeout", "10"])
    finally:
        tor.stop()
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.count("\n") == 1
    assert "Bad Peer AS" in captured.err and captured.err.startswith("kubenet-lab: error: bgp speak 127.0.0.1:")
    assert '"event": "notification", "direction": "sent", "code": 2, "subcode": 2' in captured.out


def test_a_connection_from_another_address_is_closed_unanswered():
    session = listening()
    stranger = socket.socket()
    try:
        stranger.bind(("127.0.0.2", 0))                          # the loopback answers all of 127/8
        stranger.settimeout(WAIT)
        stranger.connect(("127.0.0.1", session.listen_port))
        assert stranger.recv(4096) == b""                        # closed, no OPEN, no NOTIFICATION
        assert session.state is State.ACTIVE
    finally:
        stranger.close()
        session.stop()
