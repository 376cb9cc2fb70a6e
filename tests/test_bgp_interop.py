"""kubenet_lab's BGP session against real daemons: BIRD 2 (Calico's), GoBGP (Cilium's) and FRR.

Root only. Each test builds its own two network namespaces joined by a veth
pair, the datapath.md §3 recipe with this project's naming (``knl`` + 6 hex)::

    knlXXXXXX-tor                                   knlXXXXXX-node
    BIRD 2 | gobgpd | FRR bgpd, AS 65001            kubenet_lab BGPSession, AS 64512
    192.0.2.1/24 on knlXXXXXX-t ─── veth ─── knlXXXXXX-n 192.0.2.2/24
    announces 203.0.113.0/24, 198.51.100.0/24       announces 10.244.1.0/24, 10.244.2.0/24

With kubenet_lab active and then passive, each test checks the negotiated
hold time (FRR's datacenter profile offers 9 s), our prefixes in the
daemon's RIB with NEXT_HOP 192.0.2.2 and AS_PATH 64512, the daemon's prefixes
in our Adj-RIB-In with NEXT_HOP 192.0.2.1, AS_PATH 65001 and the ORIGIN the
daemon gives them, and withdrawals both ways. Namespaces and daemons are
removed in ``finally`` and on SIGINT/SIGTERM; daemons are stopped by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from ipaddress import ip_network
from pathlib import Path

import pytest

from kubenet_lab.bgp import MultiExitDisc, OriginType
from kubenet_lab.bgp.session import BGPSession, EventKind, State

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 to create network namespaces")

TOR, NODE = "192.0.2.1", "192.0.2.2"
TOR_AS, NODE_AS = 65001, 64512
OURS = ("10.244.1.0/24", "10.244.2.0/24")
THEIRS = ("203.0.113.0/24", "198.51.100.0/24")
WAIT = 20.0            # upper bound on any one wait for a daemon or a session
COMMAND_TIMEOUT = 10.0


def _run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _poll(probe, what: str, timeout: float = WAIT):
    """Call probe() until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def lab(tmp_path):
    """Two namespaces and a veth pair under a fresh ``knlXXXXXX`` prefix; gone afterwards."""
    prefix = f"knl{secrets.token_hex(3)}"
    tor, node = f"{prefix}-tor", f"{prefix}-node"
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
    try:
        _run("ip", "netns", "add", tor)
        _run("ip", "netns", "add", node)
        _run("ip", "link", "add", f"{prefix}-t", "netns", tor, "type", "veth", "peer", "name", f"{prefix}-n",
             "netns", node)
        for netns, dev, address in ((tor, f"{prefix}-t", TOR), (node, f"{prefix}-n", NODE)):
            _run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", dev)
            _run("ip", "-n", netns, "link", "set", dev, "up")
            _run("ip", "-n", netns, "link", "set", "lo", "up")
        yield {"prefix": prefix, "tor": tor, "node": node, "dir": tmp_path}
    finally:
        for netns in (tor, node):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=COMMAND_TIMEOUT)
        signal.signal(signal.SIGTERM, previous)


class Bird:
    """BIRD 2 in the ToR namespace: eBGP to the node, two static blackholes exported.

    BIRD both listens and dials, so it serves either of our modes; while we are
    active, its own attempts to 192.0.2.2:179 are refused (nothing listens there).
    """

    name = "BIRD"

    def __init__(self, lab):
        self.netns = lab["tor"]
        self.dir = lab["dir"]
        self.socket = self.dir / "bird.ctl"
        self.pidfile = self.dir / "bird.pid"
        statics = " ".join(f"route {p} blackhole;" for p in THEIRS)
        (self.dir / "bird.conf").write_text(f"""\
router id {TOR};
log "{self.dir / 'bird.log'}" all;
protocol device {{ }}
protocol static svc {{ ipv4; {statics} }}
protocol bgp node1 {{
  local {TOR} as {TOR_AS};
  neighbor {NODE} as {NODE_AS};
  direct;
  hold time 90;
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 4;
  ipv4 {{ import all; export where source = RTS_STATIC; next hop self; }};
}}
""")
        self.pid: int | None = None

    def start(self) -> None:
        _run("ip", "netns", "exec", self.netns, "bird", "-c", str(self.dir / "bird.conf"), "-s", str(self.socket),
             "-P", str(self.pidfile))
        self.pid = int(_poll(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), "bird.pid"))

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            _poll(lambda: not Path(f"/proc/{self.pid}").exists(), "BIRD to exit", timeout=5)

    def birdc(self, *command: str) -> str:
        return _run("birdc", "-s", str(self.socket), *command)

    def rib(self) -> dict[str, dict[str, str]]:
        """``show route all protocol node1`` as prefix -> {BGP.attribute: value}."""
        routes: dict[str, dict[str, str]] = {}
        current = None
        for line in self.birdc("show route all protocol node1").splitlines():
            first = line.split()[0] if line.split() else ""
            if "/" in first and not line[0].isspace():
                current = routes.setdefault(first, {})
            elif current is not None and line.strip().startswith("BGP."):
                key, _, value = line.strip().partition(": ")
                current[key] = value.strip()
        return routes

    def established(self) -> bool:
        return "Established" in self.birdc("show protocols node1")

    def withdraw_theirs(self) -> None:
        self.birdc("disable", "svc")       # the static protocol's routes leave the table and BGP withdraws them

    #: how BIRD reports a route learnt from us
    def check_ours(self, rib, prefix) -> None:
        attributes = rib[prefix]
        assert attributes["BGP.next_hop"] == NODE, attributes
        assert attributes["BGP.as_path"] == str(NODE_AS), attributes
        assert attributes["BGP.origin"] == "IGP", attributes

    origin = OriginType.IGP              # static routes exported by BIRD
    hold_time = 90                       # both offer 90: the session runs with 90 and keepalives every 30
    med = None


class GoBGP:
    """gobgpd in the ToR namespace, routes added with ``gobgp global rib add``."""

    name = "GoBGP"
    origin = OriginType.IGP              # added with 'origin igp' below (the CLI's default is '?')
    hold_time = 90
    med = None

    def __init__(self, lab):
        self.netns = lab["tor"]
        self.dir = lab["dir"]
        (self.dir / "gobgpd.toml").write_text(f"""\
[global.config]
  as = {TOR_AS}
  router-id = "{TOR}"
  port = 179
  local-address-list = ["{TOR}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE}"
    peer-as = {NODE_AS}
  [neighbors.timers.config]
    hold-time = 90
    keepalive-interval = 30
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
""")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.dir / "gobgpd.log", "w")
        self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, "gobgpd", "-f",
                                         str(self.dir / "gobgpd.toml"), "-t", "toml", "--api-hosts",
                                         "127.0.0.1:50051", "--pprof-disable", "-p"],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _poll(lambda: subprocess.run(self._gobgp("global"), capture_output=True, timeout=COMMAND_TIMEOUT)
              .returncode == 0, "gobgpd's gRPC API")
        for prefix in THEIRS:
            _run(*self._gobgp("global", "rib", "add", prefix, "origin", "igp", "-a", "ipv4"))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()       # ip netns exec execs gobgpd, so this PID is gobgpd's
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def _gobgp(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "gobgp", "-u", "127.0.0.1", "-p", "50051", *args]

    def rib(self) -> dict[str, dict]:
        """``gobgp global rib -j``: prefix -> {"next_hop", "as_path", "origin"} of the best path."""
        table = json.loads(_run(*self._gobgp("global", "rib", "-a", "ipv4", "-j")) or "{}")
        routes = {}
        for prefix, paths in table.items():
            attrs = {a["type"]: a for a in paths[0]["attrs"]}
            routes[prefix] = {
                "next_hop": attrs.get(3, {}).get("nexthop"),
                "as_path": [asn for seg in attrs.get(2, {}).get("as_paths", []) for asn in seg["asns"]],
                "origin": attrs.get(1, {}).get("value"),
                "neighbor": paths[0].get("source-id"),
            }
        return routes

    def established(self) -> bool:
        out = json.loads(_run(*self._gobgp("neighbor", NODE, "-j")))
        return out.get("state", {}).get("session_state") == 6   # ESTABLISHED in GoBGP's API enum

    def withdraw_theirs(self) -> None:
        for prefix in THEIRS:
            _run(*self._gobgp("global", "rib", "del", prefix, "-a", "ipv4"))

    def check_ours(self, rib, prefix) -> None:
        attributes = rib[prefix]
        assert attributes["next_hop"] == NODE, attributes
        assert attributes["as_path"] == [NODE_AS], attributes
        assert attributes["origin"] == 0, attributes


FRR_BGPD = "/usr/lib/frr/bgpd"


class FRR:
    """FRR 8 bgpd alone (no zebra), ``frr defaults datacenter``: it offers Hold Time 9 s.

    Two FRR habits the session must cope with (datapath.md §3): it adds MED 0 to
    routes it originates, and it sends our own prefixes back with AS_PATH
    ``65001 64512``, which our loop check must refuse. RFC 8212's
    ``ebgp-requires-policy`` is off in the datacenter profile; the config says so
    explicitly, because with ``frr defaults traditional`` the session comes up but
    nothing is exchanged ("(Policy)").
    """

    name = "FRR"
    origin = OriginType.IGP              # 'network' statements originate with ORIGIN IGP
    hold_time = 9                        # the datacenter profile's offer wins: min(90, 9), keepalive 3
    med = 0                              # FRR puts MED 0 on routes it originates

    def advertised_to_node(self) -> set[str]:
        out = json.loads(self.vtysh(f"show bgp ipv4 unicast neighbors {NODE} advertised-routes json"))
        return set(out.get("advertisedRoutes", {}))

    def __init__(self, lab):
        self.netns = lab["tor"]
        self.dir = lab["dir"]
        self.pidfile = self.dir / "bgpd.pid"
        networks = "".join(f"  network {p}\n" for p in THEIRS)
        (self.dir / "frr.conf").write_text(f"""\
frr defaults datacenter
log file {self.dir / 'bgpd.log'}
router bgp {TOR_AS}
 bgp router-id {TOR}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {NODE} remote-as {NODE_AS}
 neighbor {NODE} timers connect 1
 address-family ipv4 unicast
{networks} exit-address-family
""")
        self.pid: int | None = None

    def start(self) -> None:
        _run("ip", "netns", "exec", self.netns, FRR_BGPD, "-d", "-f", str(self.dir / "frr.conf"), "-i",
             str(self.pidfile), "--vty_socket", str(self.dir), "-Z", "-S", "-n")
        self.pid = int(_poll(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), "bgpd.pid"))

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            _poll(lambda: not Path(f"/proc/{self.pid}").exists(), "bgpd to exit", timeout=5)

    def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "--vty_socket", str(self.dir), "-d", "bgpd"]
        for command in commands:
            argv += ["-c", command]
        return _run(*argv)

    def rib(self) -> dict[str, dict]:
        """``show bgp ipv4 unicast json``: prefix -> the best path's next hop, AS path, origin."""
        table = json.loads(self.vtysh("show bgp ipv4 unicast json")).get("routes", {})
        routes = {}
        for prefix, paths in table.items():
            best = next((p for p in paths if p.get("bestpath")), paths[0])
            routes[prefix] = {"next_hop": best["nexthops"][0]["ip"], "as_path": best.get("path", ""),
                              "origin": best.get("origin"), "peer": best.get("peerId")}
        return routes

    def withdraw_theirs(self) -> None:
        self.vtysh("configure terminal", f"router bgp {TOR_AS}", "address-family ipv4 unicast",
                   *(f"no network {p}" for p in THEIRS))

    def check_ours(self, rib, prefix) -> None:
        attributes = rib[prefix]
        assert attributes["next_hop"] == NODE, attributes
        assert attributes["as_path"] == str(NODE_AS), attributes
        assert attributes["origin"] == "IGP", attributes


_BINARIES = {Bird: ("bird", "bird2"), GoBGP: ("gobgpd", "gobgpd"), FRR: (FRR_BGPD, "frr")}


def _daemon(cls, lab):
    binary, package = _BINARIES[cls]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (Debian: apt-get install {package})")
    return cls(lab)


@pytest.mark.parametrize("passive", [False, True], ids=["kubenet_lab-active", "kubenet_lab-passive"])
@pytest.mark.parametrize("daemon_class", [Bird, GoBGP, FRR], ids=["bird2", "gobgp", "frr"])
def test_routes_both_ways_and_withdrawals(lab, daemon_class, passive):
    daemon = _daemon(daemon_class, lab)
    session = BGPSession(local_as=NODE_AS, router_id=NODE, peer=TOR, peer_as=TOR_AS, local_address=NODE,
                         passive=passive, announce=OURS, connect_retry_time=1, netns=lab["node"])
    try:
        daemon.start()
        session.start()
        assert session.wait_for_state(State.ESTABLISHED, WAIT), list(map(str, session.events))
        assert session.wait_for(lambda: len(session.adj_rib_in) == len(THEIRS), WAIT), list(map(str, session.events))
        opened = [e for e in session.events if e.kind is EventKind.STATE and e.state is State.OPENSENT][0]
        assert ("accepted from 192.0.2.1" if passive else "connected from 192.0.2.2") in opened.reason

        assert (session.negotiated.hold_time, session.negotiated.keepalive_time) == (
            daemon.hold_time, daemon.hold_time // 3)
        assert session.negotiated.four_octet_as and session.peer_open.four_octet_as

        # The daemon's routes in our Adj-RIB-In, with the attributes an eBGP ToR gives them.
        for prefix in THEIRS:
            route = session.adj_rib_in[ip_network(prefix)]
            assert str(route.next_hop) == TOR
            assert route.as_path.asns == (TOR_AS,)
            assert route.origin is daemon.origin
            med = route.attribute(MultiExitDisc)
            assert (med.med if med else None) == daemon.med

        # Our routes in the daemon's RIB: NEXT_HOP = our end of the session, AS_PATH = our AS.
        rib = _poll(lambda: (lambda r: r if all(p in r for p in OURS) else None)(daemon.rib()),
                    f"{daemon.name} to learn {OURS}")
        for prefix in OURS:
            daemon.check_ours(rib, prefix)
        if isinstance(daemon, FRR):
            # FRR reflects our own prefixes back (AS_PATH 65001 64512); the AS-loop check drops them.
            assert _poll(lambda: set(OURS) <= daemon.advertised_to_node(), "FRR to advertise our prefixes back")
            time.sleep(0.5)          # let the reflected UPDATE reach us before looking
        assert not any(ip_network(p) in session.adj_rib_in for p in OURS)

        # Withdrawals, us -> daemon: one UPDATE with Withdrawn Routes.
        session.withdraw([OURS[0]])
        _poll(lambda: (lambda r: OURS[0] not in r and OURS[1] in r)(daemon.rib()),
              f"{daemon.name} to drop {OURS[0]}")

        # Withdrawals, daemon -> us.
        daemon.withdraw_theirs()
        assert session.wait_for(lambda: not session.adj_rib_in, WAIT), list(map(str, session.events))
        withdrawn = {str(e.prefix) for e in session.events if e.kind is EventKind.WITHDRAW}
        assert withdrawn == set(THEIRS)
        assert session.state is State.ESTABLISHED
    finally:
        session.stop()
        daemon.stop()
    notifications = [e for e in session.events if e.kind is EventKind.NOTIFICATION]
    assert [(e.sent, e.notification.code, e.notification.subcode) for e in notifications] == [(True, 6, 2)]


def test_cli_once_against_bird(lab):
    """``kubenet-lab bgp speak --once --json`` inside the node namespace exits 0 after BIRD's End-of-RIB."""
    daemon = _daemon(Bird, lab)
    try:
        daemon.start()
        done = subprocess.run(["ip", "netns", "exec", lab["node"], sys.executable, "-m", "kubenet_lab.cli", "bgp",
                               "speak", "--local-as", str(NODE_AS), "--router-id", NODE, "--peer", TOR,
                               "--peer-as", str(TOR_AS), "--local-address", NODE, "--announce", *OURS,
                               "--connect-retry", "1", "--once", "--timeout", "20", "--json"],
                              capture_output=True, text=True, timeout=40, cwd=Path(__file__).parent.parent)
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    events = [line["event"] for line in lines]
    assert events.index("end-of-rib") > max(i for i, e in enumerate(events) if e == "route")
    assert lines[-2]["event"] == "notification" and (lines[-2]["code"], lines[-2]["subcode"]) == (6, 2)
    assert (lines[-1]["to"], lines[-1]["reason"]) == ("Idle", "stopped")
    routes = {line["prefix"]: line for line in lines if line["event"] == "route"}
    assert set(routes) == set(THEIRS)
    assert routes[THEIRS[0]]["as_path"] == [TOR_AS] and routes[THEIRS[0]]["next_hop"] == TOR
    assert routes[THEIRS[0]]["origin"] == "IGP"
    assert [line["to"] for line in lines if line["event"] == "state"][:4] == [
        "Connect", "OpenSent", "OpenConfirm", "Established"]
