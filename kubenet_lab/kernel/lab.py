"""The kernel lab: a scenario built in real Linux network namespaces, probed, and compared with the walk.

    with KernelLab(cluster) as lab:
        result = lab.ping("web-1", "web-3", size=1450)
        lab.verify(cluster.trace("web-1", "web-3"))

It needs root on Linux with iproute2, iptables, ping and dumpcap (tshark's
capture tool); nft for kube-proxy's nftables mode, BIRD 2 for a BGP-routed scenario. Everything it creates lives in network namespaces named
``knl<6 hex>-…`` (:mod:`kubenet_lab.kernel.plan`); it touches nothing of the
host's own namespace, and it removes its namespaces when the ``with`` block
ends, when a command fails, and on SIGINT/SIGTERM. ``KernelLab.cleanup_all()``
removes leftovers of labs that were killed before they could clean up.

In a BGP-routed scenario (``spec.bgp.design`` set) every router of the simulated
:class:`~kubenet_lab.bgp.fabric.Fabric` (nodes, ToRs, spine) runs BIRD 2 with a
configuration generated from the same design (:mod:`kubenet_lab.kernel.bird`); its
control socket, pid file and log live in the lab's run directory
(``<tmp>/kubenet-lab-<prefix>``). :meth:`KernelLab.up` waits until every session is
Established and the kernel tables hold the simulator's routes, and BIRD is stopped by its
pid before the namespaces go. :meth:`KernelLab.route_disagreements` compares each
router's ``proto bird`` routes with the simulator's FIB.

:meth:`KernelLab.verify` replays a trace: it sends the same packet (an ICMP
echo of the same size, with or without DF) from the same namespace, captures
the underlay where the walk has its encapsulated hop, and checks that the
kernel (a) delivered or dropped as the walk said, the same way (EMSGSIZE at
the sender, ICMP "fragmentation needed" with the same next-hop MTU), and (b)
put the same bytes on the wire, except what the kernel randomises: the IP ID,
checksums, and the outer UDP source port (checked to lie in 32768-60999).
"""

from __future__ import annotations

import os
import re
import sys
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidValue
from .plan import PREFIX_PATTERN, Command, LabNames, is_lab_command, plan, unsupported_reason

if TYPE_CHECKING:
    from ..bgp.fabric import Fabric
    from ..cluster import Cluster
    from ..datapath.trace import Trace

__all__ = ["KernelLab", "Answer", "PingResult", "Verdict", "missing_requirements", "lab_namespaces", "remove_namespaces",
           "run_dir", "stop_daemons", "BGP_WAIT_S"]

TOOLS = ("ip", "bridge", "iptables-restore", "ping", "dumpcap")
COMMAND_TIMEOUT_S = 20
BGP_WAIT_S = 20  # bound on waiting for sessions and kernel routes after BIRD starts
RUN_ROOT = Path(tempfile.gettempdir())


def run_dir(prefix: str) -> Path:
    """The lab's run directory: BIRD's configurations, control sockets, pid files and logs."""
    return RUN_ROOT / f"kubenet-lab-{prefix}"


def _bird_pid(pidfile: Path) -> int | None:
    """The pid in a BIRD pid file while it still names a ``bird`` process (a pid file can outlive
    its process, and the number be reused), else None."""
    try:
        pid = int(pidfile.read_text().strip())
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "bird" else None
    except (ValueError, OSError):
        return None


def _terminate(pids: list[int]) -> None:
    """SIGTERM each process, wait up to 5 s for all to exit, SIGKILL the rest."""
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def stop_daemons(prefix: str) -> list[int]:
    """Stop the BIRDs of one lab by the pids in its run directory; remove the directory."""
    directory = run_dir(prefix)
    pids = [pid for pid in map(_bird_pid, sorted(directory.glob("*.pid"))) if pid is not None]
    _terminate(pids)
    shutil.rmtree(directory, ignore_errors=True)
    return pids


def lab_namespaces(prefix: str | None = None) -> list[str]:
    """The network namespaces of one lab (``prefix``), or of every kernel lab (``knl<6 hex>-…``)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.split()]
    if prefix is None:
        return [n for n in names if PREFIX_PATTERN.match(n.split("-", 1)[0]) and "-" in n]
    return [n for n in names if n.startswith(prefix + "-")]


def remove_namespaces(names: list[str]) -> list[str]:
    """Stop the labs' routing daemons, then delete their namespaces (links and routes go with
    them); return the names."""
    for prefix in sorted({name.split("-", 1)[0] for name in names if PREFIX_PATTERN.match(name.split("-", 1)[0])}):
        stop_daemons(prefix)
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S)
    return names


def missing_requirements(cluster: Cluster | None = None) -> str | None:
    """Why the lab cannot run on this machine (for ``cluster``, if given), in one line, or None."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return "the kernel lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the kernel lab needs root (network namespaces); on Binder it steps aside"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the kernel lab needs {', '.join(missing)} (apt-get install iproute2 iptables iputils-ping tshark)"
    if cluster is None:
        return None
    mode = cluster.network.kube_proxy_mode
    if cluster.services and mode == "nftables" and shutil.which("nft") is None:
        return "kube-proxy's nftables mode needs nft in the lab (apt-get install nftables)"
    if cluster.services and mode == "ipvs":
        if not Path("/proc/net/ip_vs").exists():
            return ("kube-proxy's IPVS mode needs the kernel's ip_vs module, absent here (no /proc/net/ip_vs; "
                    "modprobe ip_vs on a host that has it)")
        return "kube-proxy's IPVS mode: the lab does not program IPVS virtual servers yet"
    if cluster.network.bgp_design != "none" and (shutil.which("bird") is None or shutil.which("birdc") is None):
        return "a BGP-routed scenario needs BIRD 2 in the lab (apt-get install bird2)"
    return None


@dataclass(frozen=True)
class PingResult:
    """What ``ping -c 1`` said: delivered or not, and the kernel's own words."""

    delivered: bool
    output: str

    @property
    def too_long(self) -> bool:
        return "message too long" in self.output.lower()

    @property
    def frag_needed_mtu(self) -> int | None:
        match = re.search(r"frag needed and DF set \(mtu = (\d+)\)", self.output, re.IGNORECASE)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Answer:
    """Who answered a connection to the lab's echo servers: the pod, and the client address it saw
    (its socket's peer: the sender's own, or the one a NAT on the way wrote)."""

    pod: str
    peer: str


@dataclass(frozen=True)
class Verdict:
    """The kernel's answer to one walk: agree or not, and why."""

    agrees: bool
    expected: str
    observed: str
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        mark = "agree" if self.agrees else "DISAGREE"
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{mark}: walk {self.expected}, kernel {self.observed}{extra}"


class KernelLab:
    """A cluster realised in network namespaces; use as a context manager."""

    def __init__(self, cluster: Cluster, prefix: str | None = None, *, kube_proxy: bool = True):
        self.cluster = cluster
        self.topology = cluster.topology()
        self.prefix = prefix or f"knl{secrets.token_hex(3)}"
        self.names = LabNames(self.prefix)
        rules = None
        mode = cluster.network.kube_proxy_mode
        if kube_proxy and cluster.services and mode == "iptables":
            rules = {n.name: cluster.kube_proxy(n.name).iptables_restore(4) for n in cluster.nodes}
        elif kube_proxy and cluster.services and mode == "nftables":
            rules = {n.name: cluster.kube_proxy(n.name).nft_ruleset(4) for n in cluster.nodes}
        self.run_dir = run_dir(self.prefix)
        # the BGP design BIRD realises: the converged fabric whose FIBs the walk routes by
        self.fabric: Fabric | None = self.topology.fabric
        bird = None
        if self.fabric is not None:
            bird = {name: str(self.run_dir) for name in self.fabric.speakers}
        self.commands: list[Command] = plan(self.topology, self.prefix, rules, proxy_mode=mode, bird=bird)
        self._servers: list[subprocess.Popen] = []
        for command in self.commands:
            if not is_lab_command(command, self.prefix):  # the safety rule, checked before anything runs
                raise RuntimeError(f"refusing a command outside the lab's namespaces: {command}")
        self._previous_handlers: dict[int, object] = {}
        self.up_ = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> KernelLab:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self, progress=None) -> None:
        """Create every namespace, link and table entry; undo everything if any step fails.

        ``progress(done, total)`` is called after each command (the CLI draws a bar with it).
        """
        reason = missing_requirements(self.cluster) or unsupported_reason(self.topology)
        if reason:
            raise InvalidValue(f"KernelLab {self.prefix}", "cluster", self.cluster.network.cni, f"cannot be built: {reason}")
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        self.up_ = True
        try:
            if self.fabric is not None:
                self._write_bird_configs()
            for done, command in enumerate(self.commands, 1):
                self._run(command)
                if progress is not None:
                    progress(done, len(self.commands))
            if self.fabric is not None:
                self.wait_for_bgp()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop the lab's echo servers and BIRDs (by their pids), then delete every namespace of this lab."""
        for server in self._servers:
            server.terminate()
        for server in self._servers:
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self._servers.clear()
        stop_daemons(self.prefix)
        remove_namespaces(self._namespaces())
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        self.up_ = False

    def _on_signal(self, signum, frame) -> None:
        self.down()
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def _namespaces(self) -> list[str]:
        return lab_namespaces(self.prefix)

    @staticmethod
    def cleanup_all() -> list[str]:
        """Remove the namespaces of every kubenet-lab kernel lab (``kubenet-lab lab down --all``), and
        stop the daemons of any lab whose run directory outlived its namespaces."""
        for directory in RUN_ROOT.glob("kubenet-lab-knl*"):
            prefix = directory.name[len("kubenet-lab-"):]
            if PREFIX_PATTERN.match(prefix):
                stop_daemons(prefix)
        return remove_namespaces(lab_namespaces())

    def _run(self, command: Command, *, check: bool = True) -> str:
        result = subprocess.run(command.argv, input=command.stdin, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S)
        if check and result.returncode != 0:
            raise RuntimeError(f"{command} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    # -- BGP: BIRD in every router of the fabric ----------------------------------------

    def _write_bird_configs(self) -> None:
        from .bird import bird_config

        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in self.fabric.speakers:
            log = self.run_dir / f"{name}.log"
            (self.run_dir / f"{name}.conf").write_text(bird_config(self.fabric, name, log=str(log)))

    def birdc(self, router: str, *command: str) -> str:
        """Ask ``router``'s BIRD (``birdc -s <its control socket> <command>``)."""
        if self.fabric is None or router not in self.fabric.speakers:
            raise InvalidValue(f"KernelLab {self.prefix}", "router", router, "must be a router running BIRD")
        return self._run(Command(("birdc", "-s", str(self.run_dir / f"{router}.ctl"), *command), ""), check=False)

    def bgp_sessions(self) -> dict[tuple[str, str], str]:
        """(router, peer) -> the state BIRD reports for that session (``Established``, ``Active``...)."""
        from .bird import protocol_name

        states = {}
        for name, speaker in self.fabric.speakers.items():
            if _bird_pid(self.run_dir / f"{name}.pid") is None:
                states.update({(name, peer): "not running" for peer in speaker.peers})
                continue
            lines = self.birdc(name, "show", "protocols").splitlines()
            for peer in speaker.peers:
                line = next((l.split() for l in lines if l.split()[:1] == [protocol_name(peer)]), None)
                states[(name, peer)] = ("missing" if line is None else "Established" if "Established" in line
                                        else " ".join(line[3:4] + line[5:]))
        return states

    def stop_bird(self, router: str) -> None:
        """Stop one router's BIRD (SIGTERM: it sends a Cease NOTIFICATION and removes its routes)."""
        pid = _bird_pid(self.run_dir / f"{router}.pid")
        _terminate([] if pid is None else [pid])

    def wait_for_bgp(self, timeout: float = BGP_WAIT_S) -> float:
        """Wait (at most ``timeout`` s) until every session that the simulator has up is Established
        in BIRD and every router's kernel routes equal the simulator's FIB; return the seconds waited.

        Sessions not Established by then raise RuntimeError naming them; routes that still differ
        are left for :meth:`route_disagreements` to report."""
        start = time.monotonic()
        expected = {(name, peer) for name, s in self.fabric.speakers.items() for peer in s.established}
        while True:
            states = self.bgp_sessions()
            late = sorted(k for k in expected if states.get(k) != "Established")
            if not late:
                break
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"BGP sessions not Established after {timeout:g} s: "
                                   + ", ".join(f"{a} -> {b} ({states.get((a, b))})" for a, b in late))
            time.sleep(0.2)
        while self.route_disagreements() and time.monotonic() - start < timeout:
            time.sleep(0.2)
        return time.monotonic() - start

    def route_disagreements(self, *, walk: bool = False) -> dict[str, list[str]]:
        """Per router of the fabric, where its kernel routes (``proto bird``) differ from the
        simulator's FIB now (prefix -> next-hop set), and with ``walk`` also from the tables the
        packet walk forwards by (the topology's, built when the lab was); routers that agree are
        left out."""
        from .bird import compare_fibs, fib_of, kernel_fib, walk_fib

        found = {}
        for name in self.fabric.speakers:
            kernel = kernel_fib(self.names.netns(name, self.topology.kinds[name]))
            lines = compare_fibs(fib_of(self.fabric, name), kernel)
            if walk:
                lines += compare_fibs(walk_fib(self.topology[name]), kernel, "walk")
            if lines:
                found[name] = lines
        return found

    # -- probes ------------------------------------------------------------------------

    def netns_of(self, name: str) -> str:
        """The lab namespace of a pod or node name."""
        from ..datapath.trace import _resolve

        namespace, _ = _resolve(self.cluster, name, "src")
        if namespace is None:
            raise InvalidValue(f"KernelLab {self.prefix}", "src", name, "must be a pod or node of the cluster")
        return self.names.netns(namespace, self.topology.kinds[namespace])

    def ping(self, src: str, dst_ip: str, *, size: int = 84, df: bool = True) -> PingResult:
        """One ICMP echo of ``size`` bytes (IP length) from ``src``'s namespace, as ``ping -c 1`` sends it."""
        argv = ("ip", "netns", "exec", self.netns_of(src), "ping", "-n", "-c", "1", "-W", "2",
                "-M", "do" if df else "dont", "-s", str(size - 28), str(dst_ip))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        return PingResult(result.returncode == 0, (result.stdout + result.stderr).strip())

    def capture(self, netns: str, interface: str, action, *, seconds: float = 10.0) -> Path:
        """Run ``action()`` while dumpcap records ``interface`` in lab namespace ``netns``; return the pcap.

        dumpcap is stopped as soon as the action is done (``seconds`` only bounds a stuck capture).
        """
        if not netns.startswith(self.prefix + "-"):
            raise InvalidValue(f"KernelLab {self.prefix}", "netns", netns, "must be one of this lab's namespaces")
        path = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-")) / "capture.pcap"
        dumpcap = subprocess.Popen(["ip", "netns", "exec", netns, "dumpcap", "-P", "-i", interface, "-a",
                                    f"duration:{seconds:g}", "-w", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # dumpcap names its output file once the interface is open; give the capture a moment more
            deadline = time.monotonic() + 5
            line = ""
            while not line.startswith("File:") and time.monotonic() < deadline and dumpcap.poll() is None:
                line = dumpcap.stderr.readline()
            time.sleep(0.5)
            action()
            time.sleep(0.5)  # let the last replies reach the interface
        finally:
            dumpcap.send_signal(signal.SIGINT)  # dumpcap flushes and closes the file on SIGINT
            try:
                dumpcap.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                dumpcap.kill()
                dumpcap.wait()
        return path

    def start_echo_servers(self) -> None:
        """In every pod, a server answering each TCP connection and UDP datagram with the pod's name,
        on its container ports and the numeric targetPorts of the Services that select it."""
        from ..endpointslices import selects

        for pod in self.cluster.pods:
            if pod.host_network or not pod.ips or pod.node is None:
                continue
            ports = {(cp.port, cp.protocol) for cp in pod.ports}
            for service in self.cluster.services:
                if service.namespace == pod.namespace and selects(service.selector, pod.labels):
                    ports |= {(sp.target_port, sp.protocol) for sp in service.ports if isinstance(sp.target_port, int)}
            specs = [f"{port}/{proto.lower()}" for port, proto in sorted(ports) if proto in ("TCP", "UDP")]
            if not specs:
                continue
            netns = self.names.netns(f"pod:{pod.key}", "pod")
            server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _ECHO_SERVER, pod.name, *specs],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._servers.append(server)
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the echo server in {netns} did not start")

    def connect(self, src: str, dst_ip: str, port: int, proto: str = "tcp") -> str | None:
        """Connect from ``src``'s namespace; the answer is the name of the pod that served, or None."""
        answer = self.answer(src, dst_ip, port, proto)
        return answer.pod if answer else None

    def answer(self, src: str, dst_ip: str, port: int, proto: str = "tcp") -> Answer | None:
        """Connect from ``src``'s namespace; who served and from which address it saw the client, or None."""
        argv = ("ip", "netns", "exec", self.netns_of(src), sys.executable, "-c", _CLIENT, str(dst_ip), str(port), proto)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        words = result.stdout.split()
        return Answer(words[0], words[1]) if len(words) == 2 else None

    # -- verification ------------------------------------------------------------------

    def verify(self, trace: Trace) -> Verdict:
        """Replay ``trace`` (an ICMP echo) in the kernel and compare outcome and on-wire bytes."""
        if trace.proto != "icmp":
            raise InvalidValue(f"KernelLab {self.prefix}", "trace.proto", trace.proto, "must be icmp for now")
        first = trace.hops[0].state.inner
        size, df = first.length, first.df
        underlay = next((h for h in trace.wire_hops if h.state.outer is not None), None)
        captured: list = []
        if underlay is not None:
            netns = self.names.netns(underlay.namespace, self.topology.kinds[underlay.namespace])
            result_box: list[PingResult] = []
            pcap = self.capture(netns, underlay.interface, lambda: result_box.append(self.ping(trace.src, str(trace.dst), size=size, df=df)))
            result = result_box[0]
            from scapy.layers.l2 import Ether
            from scapy.utils import rdpcap

            from ..datapath import wire

            wire.bind_layers()  # so the capture dissects as deep as the walk's packets
            captured = [Ether(bytes(p)) for p in rdpcap(str(pcap))]
            shutil.rmtree(pcap.parent, ignore_errors=True)
        else:
            result = self.ping(trace.src, str(trace.dst), size=size, df=df)
        notes: list[str] = []
        observed = "delivered" if result.delivered else "dropped"
        # "exited" leaves the lab through a gateway the lab does not have: the kernel cannot deliver it either.
        agrees = (trace.outcome == "delivered") == result.delivered
        if trace.outcome == "dropped" and "EMSGSIZE" in trace.reason:
            agrees &= result.too_long
            notes.append("sender refused: message too long" if result.too_long else f"kernel said: {result.output[-120:]}")
        icmp = next((h for h in trace.hops if h.action == "icmp"), None)
        if icmp is not None:
            agrees &= result.frag_needed_mtu == icmp.state.inner.next_hop_mtu
            notes.append(f"frag needed, kernel mtu {result.frag_needed_mtu}, walk mtu {icmp.state.inner.next_hop_mtu}")
        if underlay is not None and trace.outcome == "delivered":
            same, why = _same_on_wire(underlay.packet, captured)
            agrees &= same
            notes.append(why)
        return Verdict(agrees, f"{trace.outcome} ({trace.reason})", observed, tuple(notes))


# Run inside a pod's namespace: answer every TCP connection and UDP datagram with the pod's name
# and the client's address as the pod saw it.
_ECHO_SERVER = """
import selectors, socket, sys
name = sys.argv[1]
sel = selectors.DefaultSelector()
for spec in sys.argv[2:]:
    port, proto = spec.split("/")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    if proto == "tcp":
        s.listen(16)
    sel.register(s, selectors.EVENT_READ, proto)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "tcp":
            conn, peer = key.fileobj.accept()
            conn.sendall(f"{name} {peer[0]}\\n".encode())
            conn.close()
        else:
            _, peer = key.fileobj.recvfrom(2048)
            key.fileobj.sendto(f"{name} {peer[0]}\\n".encode(), peer)
"""

# Run inside the client's namespace: one connection or datagram, print the answer (bounded by 2 s).
_CLIENT = """
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(2)
try:
    if proto == "tcp":
        s.connect((host, port))
        print(s.recv(256).decode().strip())
    else:
        s.sendto(b"?", (host, port))
        print(s.recvfrom(256)[0].decode().strip())
except OSError:
    pass
"""


def _normalised(packet) -> bytes:
    """Bytes with what differs by design zeroed: IP IDs, checksums and the outer UDP source port (the
    kernel randomises them), and the echo's identifier and data (ping's own choice: its process's id,
    a timestamp and a byte pattern; the walk's echo carries zeros)."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.packet import Raw

    copy = packet.copy()
    for layer in (IP, UDP, ICMP):
        index = 1
        while copy.getlayer(layer, index) is not None:
            part = copy.getlayer(layer, index)
            part.chksum = 0
            if layer is IP:
                part.id = 0
                if part.flags.MF and part.frag == 0 and part.proto in (1, 17) and isinstance(part.payload, Raw):
                    # a first fragment: scapy leaves its payload undissected; dissect, normalise, put back
                    data = part.payload.load
                    inner = (ICMP if part.proto == 1 else UDP)(data)
                    if part.proto == 17:
                        inner.sport = 0
                    part.payload.load = _normalised(inner)[: len(data)]
            if layer is UDP and index == 1:
                part.sport = 0
            if layer is ICMP:
                part.id = 0
                if isinstance(part.payload, Raw):
                    part.payload.load = bytes(len(part.payload.load))
            index += 1
    return bytes(copy)


def _same_on_wire(expected, captured: list) -> tuple[bool, str]:
    """Whether a captured packet equals the walk's, randomised fields aside."""
    from scapy.layers.inet import UDP

    pieces = expected if isinstance(expected, list) else [expected]
    want = _normalised(pieces[0])
    for packet in captured:
        if len(packet) == len(pieces[0]) and _normalised(packet) == want:
            sport = packet[UDP].sport if packet.haslayer(UDP) else None
            if sport is not None and not 32768 <= sport <= 60999:
                return False, f"outer UDP source port {sport} outside 32768-60999"
            return True, f"on-wire bytes equal ({len(packet)} bytes, randomised fields aside)"
    sizes = sorted({len(p) for p in captured})
    return False, f"no captured packet equals the walk's {len(pieces[0])}-byte packet (captured sizes {sizes})"
