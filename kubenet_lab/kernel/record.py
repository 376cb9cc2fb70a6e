"""Recording and replaying kernel lab results, so a chapter shows the same evidence with or without root.

The kernel lab (:mod:`kubenet_lab.kernel.lab`) needs root and network namespaces; Binder has
neither. So the lab's *observations* are recorded once, as root, by ``tools/record_kernel_lab.py``:
for each probe what ``ping`` said and the frames captured on the underlay, or which pod answered a
connection to a Service; and, from inside each node's namespace, ``ip route``, ``ip neigh``,
``bridge fdb`` and ``iptables-save -t nat``. Nothing of the simulator is stored.

:func:`lab_report` turns observations into a :class:`LabReport`. The simulator's side (walks,
tables, rules) is always recomputed by the package, and each recorded observation is judged by the
lab's own :meth:`~kubenet_lab.kernel.lab.KernelLab.verify`, run on a replay twin of the lab whose
``ping`` and ``capture`` return what was recorded. So:

* without root (or with ``KUBENET_LAB_LIVE=0``) the report replays the recording, and a simulator
  that drifts from what the kernel did shows up as ``DISAGREE`` lines;
* as root the lab runs live, and the report is compared with the replayed recording: if the kernel
  now answers differently, :class:`RecordingMismatch` is raised, so a live run in CI proves the
  recording true.

Both reports print the same text: nothing the kernel randomises is shown (the echo's identifier,
IP IDs, checksums, the outer UDP source port; which endpoint of a Service answered is shown as
"one of the Service's endpoints"), and the lab's random namespace prefix never appears.

A recording round trip needs no root:

>>> rec = Recording("demo", "3 nodes", probes={"walk default/a 10.0.0.2": {"delivered": True, "output": "", "frames": ["00ff"]}})
>>> Recording.from_json(rec.to_json()) == rec
True
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..overlay.topology import EXTERNAL
from .check import Probe, probes as all_probes
from .lab import KernelLab, PingResult, Verdict, missing_requirements

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..tables import Table

__all__ = ["RECORDINGS", "SCENARIOS", "recording_path", "LIVE_ENV", "FORMAT", "Recording", "RecordingMismatch", "LabReport", "ProbeLine", "SideBySide",
           "lab_report", "record", "replay", "select_probes", "should_run_live", "nat_rules"]

# The repository this package lives in (installed editable, as the course installs it): the recordings
# sit next to the notebooks that show them, the scenarios in scenarios/.
REPOSITORY = Path(__file__).resolve().parents[2]
RECORDINGS = REPOSITORY / "notebooks" / "data"
SCENARIOS = REPOSITORY / "scenarios"
LIVE_ENV = "KUBENET_LAB_LIVE"  # "0" forces the recorded path even as root
FORMAT = 1  # the recording's format version
TABLES = ("ip route", "ip neigh", "bridge fdb", "iptables-save -t nat")
REPLAY_PREFIX = "knl000000"  # the replay twin's prefix: it creates no namespace
RANDOMISED = "IP IDs, checksums, the outer UDP source port, the echo's identifier and payload"


class RecordingMismatch(AssertionError):
    """The kernel, run live, no longer answers as the recording says (or the recording lacks a probe)."""


# -- the recording ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recording:
    """What the kernel said, probe by probe and table by table; JSON on disk.

    ``probes`` maps :func:`probe_key` to an observation: ``{"delivered", "output", "frames"}`` for a
    walk (frames: the IPv4 frames captured on the underlay, hex) or ``{"answer"}`` for a Service.
    ``tables`` maps a node name to ``{command: [lines]}``, counters and comments stripped.
    """

    scenario: str
    kernel: str
    probes: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "scenario": self.scenario, "kernel": self.kernel,
                           "recorded_by": "tools/record_kernel_lab.py", "probes": self.probes,
                           "tables": self.tables}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Recording:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise RecordingMismatch(f"recording format must be {FORMAT} (got {data.get('format')!r}); "
                                    "re-record with tools/record_kernel_lab.py")
        return cls(data["scenario"], data["kernel"], data["probes"], data["tables"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        return cls.from_json(Path(path).read_text())


def recording_path(scenario: str) -> Path:
    """Where the recording of ``scenario`` (a ClusterNetwork name) is kept.

    >>> recording_path("three-node-vxlan").relative_to(REPOSITORY).as_posix()
    'notebooks/data/kernel-lab-three-node-vxlan.json'
    """
    return RECORDINGS / f"kernel-lab-{scenario}.json"


def probe_key(probe: Probe) -> str:
    """A probe's key in a recording: ``walk default/web-1 10.244.2.2`` or ``service default/web-1 10.96.0.10:80/tcp``."""
    if probe.kind == "walk":
        return f"walk {probe.src} {probe.dst_ip}"
    return f"service {probe.src} {probe.dst_ip}:{probe.port}/{probe.proto}"


def _steady_ping_output(text: str) -> str:
    """ping's words without its timings (they change on every run; nothing judges them)."""
    text = re.sub(r"time[=<]\s*[\d.]+ ?ms", "time=X ms", text)
    text = re.sub(r", time \d+ms", ", time Xms", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith(("rtt ", "round-trip")))


# -- which probes a chapter shows -------------------------------------------------------------

def _category(cluster: Cluster, probe: Probe) -> str:
    if probe.kind == "service":
        kind = probe.label.split()[0]  # ClusterIP / NodePort / LoadBalancer
        return f"external -> {kind}" if probe.src == EXTERNAL else kind
    if "/" not in probe.label:
        return "pod -> node"
    src, dst = (cluster.pod(k.split("/", 1)[1], k.split("/", 1)[0]) for k in (probe.src, probe.label))
    return "pod -> pod, same node" if src.node == dst.node else "pod -> pod, across nodes"


def select_probes(cluster: Cluster, *, per_kind: int = 2, include: tuple[tuple[str, str], ...] = ()) -> list[Probe]:
    """A lean, deterministic sample of :func:`~kubenet_lab.kernel.check.probes`: the first ``per_kind``
    of each kind (pod -> pod on one node and across nodes, pod -> node, ClusterIP, NodePort, and the
    external client's LoadBalancer and NodePort), plus the walks ``include`` names as (source pod,
    destination pod), in the order ``probes`` lists them.

    >>> from kubenet_lab import Cluster
    >>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
    >>> [f"{p.src} -> {p.label}" for p in select_probes(c, per_kind=1)]
    ['default/web-1 -> default/client', 'default/web-1 -> default/web-2', 'default/web-1 -> node-1', 'default/web-1 -> ClusterIP default/web', 'node-1 -> NodePort default/web-nodeport']
    """
    found = all_probes(cluster)
    wanted = {(cluster.pod(a).key, str(cluster.pod(b).ip)) for a, b in include}
    taken: dict[str, int] = {}
    chosen = []
    for probe in found:
        category = _category(cluster, probe)
        if taken.get(category, 0) < per_kind or (probe.kind == "walk" and (probe.src, probe.dst_ip) in wanted):
            taken[category] = taken.get(category, 0) + 1
            chosen.append(probe)
    return chosen


# -- reading tables inside a node's namespace ---------------------------------------------------

def _tunnel_devices(cluster: Cluster, node: str) -> list[str]:
    return [i.name for i in cluster.host(node).interfaces.values() if i.kind in ("vxlan", "geneve", "ipip")]


def kernel_tables(lab: KernelLab, node: str) -> dict[str, list[str]]:
    """``ip route``, ``ip neigh`` (permanent), ``bridge fdb`` (tunnel devices) and ``iptables-save -t nat``,
    run inside ``node``'s lab namespace; counters, comments and trailing blanks stripped."""
    netns = lab.netns_of(node)

    def run(*argv: str) -> list[str]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
        return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]

    devices = _tunnel_devices(lab.cluster, node)
    fdb = [line for line in run("bridge", "-n", netns, "fdb", "show")
           if any(f" dev {d} " in f" {line} " for d in devices)]
    nat = [re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in run("ip", "netns", "exec", netns, "iptables-save", "-t", "nat")
           if not line.startswith("#")]
    # The neighbour and FDB tables are hash tables: the kernel lists them in no fixed order, so sort.
    return {"ip route": run("ip", "-n", netns, "route", "show"),
            "ip neigh": sorted(run("ip", "-n", netns, "neigh", "show", "nud", "permanent")),
            "bridge fdb": sorted(fdb), "iptables-save -t nat": nat}


def model_tables(cluster: Cluster, node: str) -> dict[str, list[str]]:
    """The simulator's view of the same four tables (``c.host(node)`` and kube-proxy's restore input)."""
    host = cluster.host(node)
    nat: list[str] = []
    if cluster.services and cluster.network.kube_proxy_mode == "iptables":
        text = cluster.kube_proxy(node).iptables_restore(4)
        nat = text[text.index("*nat"):].splitlines() if "*nat" in text else []
        nat = nat[: nat.index("COMMIT") + 1] if "COMMIT" in nat else nat
    return {"ip route": [str(r) for r in host.routes], "ip neigh": [str(n) for n in host.neighbors],
            "bridge fdb": [str(f) for f in host.fdb], "iptables-save -t nat": nat}


def nat_rules(lines: list[str], service: str | None = None) -> list[str]:
    """The ``-A`` rules of KUBE-SERVICES (only the one for ``service``, e.g. ``default/web:http``, if
    given) and of the KUBE-SVC- chain it jumps to, in the order the input lists them.

    >>> nat_rules(['-A KUBE-SERVICES -d 10.96.0.1/32 -m comment --comment "default/a:http cluster IP" -j KUBE-SVC-X',
    ...            '-A KUBE-SVC-X -j KUBE-SEP-Y', '-A KUBE-SEP-Y -j DNAT'], "default/a:http")
    ['-A KUBE-SERVICES -d 10.96.0.1/32 -m comment --comment "default/a:http cluster IP" -j KUBE-SVC-X', '-A KUBE-SVC-X -j KUBE-SEP-Y']
    """
    services = [line for line in lines if line.startswith("-A KUBE-SERVICES ")
                and (service is None or f"{service} cluster IP" in line)]
    chains = {m.group(1) for line in services for m in [re.search(r"-j (KUBE-SVC-\S+)", line)] if m}
    return services + [line for line in lines if line.startswith("-A ") and line.split()[1] in chains]


# -- the report ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeLine:
    """One probe, as the model predicted it and the kernel answered it."""

    probe: Probe
    agrees: bool
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SideBySide:
    """The same table as the kernel printed it (inside the node's namespace) and as the simulator has it."""

    node: str
    command: str
    kernel: tuple[str, ...]
    model: tuple[str, ...]

    @property
    def identical(self) -> int:
        """How many of the kernel's lines the simulator has word for word."""
        return len(set(self.kernel) & set(self.model))

    def __str__(self) -> str:
        return "\n".join([f"# {self.node}, kernel: ip netns exec <lab>-n-{self.node} {self.command}", *self.kernel,
                          f"# {self.node}, simulator", *self.model])

    def __repr__(self) -> str:
        return (f"<SideBySide {self.node} {self.command!r}: kernel {len(self.kernel)} lines, simulator "
                f"{len(self.model)} lines, {self.identical} identical>")

    def _repr_html_(self) -> str:
        import html

        def column(lines):
            same = set(self.kernel) & set(self.model)
            return "\n".join(html.escape(line) if line in same else f"<b>{html.escape(line)}</b>" for line in lines)

        style = "text-align:left;vertical-align:top;padding-right:1em"
        return (f"<table><caption style='text-align:left'><b>{html.escape(self.node)}: {html.escape(self.command)}</b> "
                f"({self.identical} of {len(self.kernel)} kernel lines identical; others in bold)</caption>"
                f"<thead><tr><th style='{style}'>kernel (inside the node's namespace)</th>"
                f"<th style='{style}'>simulator</th></tr></thead><tbody><tr>"
                f"<td style='{style}'><pre>{column(self.kernel)}</pre></td>"
                f"<td style='{style}'><pre>{column(self.model)}</pre></td></tr></tbody></table>")


@dataclass(frozen=True)
class LabReport:
    """The kernel lab's evidence for one scenario: probes, tables and one underlay capture."""

    scenario: str
    probes: tuple[ProbeLine, ...]
    tables: dict
    capture: Table

    @property
    def agree(self) -> int:
        return sum(p.agrees for p in self.probes)

    def summary(self) -> str:
        """One line per probe and a last line ``N probes, N agree``, as ``kubenet-lab lab check`` prints."""
        lines = [f"[{i}/{len(self.probes)}] {p}" for i, p in enumerate(self.probes, 1)]
        return "\n".join([*lines, f"{len(self.probes)} probes, {self.agree} agree"])

    def side_by_side(self, node: str, command: str, *, service: str | None = None, trim: bool = True) -> SideBySide:
        """``command`` (one of ip route, ip neigh, bridge fdb, iptables-save -t nat) on ``node``, kernel
        and simulator; for iptables, unless ``trim`` is false, only KUBE-SERVICES and the KUBE-SVC-
        chains it jumps to (of ``service`` alone if given, e.g. ``"default/web:http"``)."""
        kernel, model = self.tables[node]["kernel"][command], self.tables[node]["model"][command]
        if command.startswith("iptables") and trim:
            kernel, model = nat_rules(kernel, service), nat_rules(model, service)
        return SideBySide(node, command, tuple(kernel), tuple(model))

    def text(self) -> str:
        """Everything the report shows, as text (what live and recorded runs must print identically)."""
        parts = [self.summary()]
        for node in sorted(self.tables):
            parts += [str(self.side_by_side(node, command, trim=False)) for command in TABLES]
        parts.append(self.capture.text())
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<LabReport {self.scenario}: {len(self.probes)} probes, {self.agree} agree>"


# -- judging observations ---------------------------------------------------------------------

class _ReplayLab(KernelLab):
    """The lab's twin for replays: no namespaces; ``ping`` and ``capture`` return what was recorded,
    so :meth:`KernelLab.verify` judges a recording exactly as it judges the live kernel."""

    def __init__(self, cluster: Cluster):
        super().__init__(cluster, REPLAY_PREFIX, kube_proxy=False)
        self.observation: dict = {}

    def ping(self, src, dst_ip, *, size=84, df=True) -> PingResult:
        return PingResult(self.observation["delivered"], self.observation["output"])

    def capture(self, netns, interface, action, *, seconds=10.0) -> Path:
        from scapy.layers.l2 import Ether
        from scapy.utils import wrpcap

        action()
        path = Path(tempfile.mkdtemp(prefix="kubenet-replay-")) / "capture.pcap"
        wrpcap(str(path), [Ether(bytes.fromhex(h)) for h in self.observation.get("frames", [])])
        return path

    def up(self, progress=None) -> None:
        raise RuntimeError("a replay lab has nothing to bring up")


def _walk_line(probe: Probe, outcome: str, verdict: Verdict) -> ProbeLine:
    notes = f"; {'; '.join(verdict.notes)}" if verdict.notes else ""
    mark = "agree" if verdict.agrees else "DISAGREE"
    return ProbeLine(probe, verdict.agrees,
                     f"{probe.src} -> {probe.label} ({probe.dst_ip}): {mark} (walk {outcome}, kernel {verdict.observed}{notes})")


def _service_line(probe: Probe, answer: str | None) -> ProbeLine:
    ok = answer in probe.allowed if probe.allowed else answer is None
    model = f"one of the Service's endpoints ({', '.join(sorted(probe.allowed))})" if probe.allowed else "no answer (no endpoints)"
    if ok:
        kernel = "one of the Service's endpoints" if probe.allowed else "no answer"
    else:
        kernel = f"{answer or 'no answer'}"
    where = f"{probe.dst_ip}:{probe.port}/{probe.proto}"
    return ProbeLine(probe, ok, f"{probe.src} -> {probe.label} ({where}): {'agree' if ok else 'DISAGREE'} "
                                f"(model {model}, kernel {kernel})")


def _capture_table(cluster: Cluster, capture: tuple[str, str], frames: list[str]) -> Table:
    """The underlay frames of one walk probe, normalised as verify compares them, against the walk."""
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    from ..datapath import wire
    from ..tables import Table
    from ..viz.packets import pcap_summary
    from .lab import _normalised

    wire.bind_layers()
    src, dst = capture
    walk = cluster.trace(src, dst)
    hop = next(h for h in walk.wire_hops if h.state.outer is not None)
    expected = _normalised(hop.packet)
    packets = [Ether(bytes.fromhex(h)) for h in frames]
    packets = [p for p in packets if p.haslayer(UDP) and p[UDP].dport == hop.state.outer.dport]
    normalised = [Ether(_normalised(p)) for p in packets]
    for number, p in enumerate(normalised):
        p.time = number / 1000
    summary = pcap_summary(normalised)
    rows = tuple((*row[:1], *row[2:], "yes" if bytes(n) == expected else "no")
                 for row, n in zip(summary.rows, normalised))
    return Table(f"{hop.namespace} {hop.interface} while {src} pings {dst}: the kernel's frames with {RANDOMISED} "
                 f"zeroed (the way verify compares them)",
                 (*summary.headers[:1], *summary.headers[2:], f"= walk hop {walk.hops.index(hop) + 1}"), rows)


def replay(cluster: Cluster, recording: Recording, chosen: list[Probe], *, capture: tuple[str, str],
           nodes: tuple[str, ...] = ("node-1",)) -> LabReport:
    """Judge ``recording``'s observations of ``chosen`` against the simulator; no root needed."""
    twin = _ReplayLab(cluster)
    lines = []
    for probe in chosen:
        key = probe_key(probe)
        if key not in recording.probes:
            raise RecordingMismatch(f"the recording of {recording.scenario} has no probe {key!r}; "
                                    "re-record with tools/record_kernel_lab.py")
        observation = recording.probes[key]
        if probe.kind == "walk":
            twin.observation = observation
            trace = cluster.trace(probe.src, probe.dst_ip)
            lines.append(_walk_line(probe, trace.outcome, twin.verify(trace)))
        else:
            lines.append(_service_line(probe, observation["answer"]))
    tables = {}
    for node in nodes:
        if node not in recording.tables:
            raise RecordingMismatch(f"the recording of {recording.scenario} has no tables of {node!r}")
        tables[node] = {"kernel": recording.tables[node], "model": model_tables(cluster, node)}
    src, dst = capture
    capture_key = f"walk {cluster.pod(src).key} {cluster.pod(dst).ip}"
    frames = recording.probes.get(capture_key, {}).get("frames")
    if frames is None:
        raise RecordingMismatch(f"the recording of {recording.scenario} has no capture for {capture_key!r}")
    return LabReport(recording.scenario, tuple(lines), tables, _capture_table(cluster, capture, frames))


# -- running the lab ----------------------------------------------------------------------------

def record(cluster: Cluster, chosen: list[Probe], *, nodes: tuple[str, ...] = ("node-1",)) -> tuple[Recording, list[ProbeLine]]:
    """Bring the lab up (root), ask every probe of ``chosen``, read the nodes' tables; return the
    recording and the live verdicts (from :meth:`KernelLab.verify` itself)."""
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    observations: dict = {}
    tables: dict = {}
    lines: list[ProbeLine] = []
    with KernelLab(cluster) as lab:
        if any(p.kind == "service" for p in chosen):
            lab.start_echo_servers()
        real_ping, real_capture = lab.ping, lab.capture
        for probe in chosen:
            if probe.kind == "service":
                answer = lab.connect(probe.src, probe.dst_ip, probe.port, probe.proto)
                observations[probe_key(probe)] = {"answer": answer}
                lines.append(_service_line(probe, answer))
                continue
            seen: dict = {"frames": []}

            def ping(*args, **kwargs):
                result = real_ping(*args, **kwargs)
                seen.update(delivered=result.delivered, output=_steady_ping_output(result.output))
                return result

            def capture(*args, **kwargs):
                path = real_capture(*args, **kwargs)
                # only IPv4 frames: ARP and IPv6 neighbour discovery come and go with timing
                seen["frames"] = [bytes(p).hex() for p in rdpcap(str(path)) if Ether(bytes(p)).type == 0x0800]
                return path

            lab.ping, lab.capture = ping, capture
            try:
                trace = cluster.trace(probe.src, probe.dst_ip)
                verdict = lab.verify(trace)
            finally:
                del lab.ping, lab.capture
            observations[probe_key(probe)] = seen
            lines.append(_walk_line(probe, trace.outcome, verdict))
        for node in nodes:
            tables[node] = kernel_tables(lab, node)
    kernel = os.uname().release if hasattr(os, "uname") else "unknown"
    return Recording(cluster.network.name, kernel, observations, tables), lines


def should_run_live() -> bool:
    """Whether :func:`lab_report` runs the lab: root, the tools present, and ``KUBENET_LAB_LIVE`` not ``0``."""
    return os.environ.get(LIVE_ENV, "") != "0" and missing_requirements() is None


def lab_report(cluster: Cluster, recording: str | Path | None = None, *, live: bool | None = None, per_kind: int = 2,
               capture: tuple[str, str] = ("web-1", "web-3"), nodes: tuple[str, ...] = ("node-1",)) -> LabReport:
    """The kernel lab's report for ``cluster``: live when it can run here, else from the recording.

    ``recording`` is the JSON file ``tools/record_kernel_lab.py`` wrote (by default
    :func:`recording_path` of the cluster's name). ``live=None`` decides by :func:`should_run_live`. A live run is compared with the recording and
    raises :class:`RecordingMismatch` if the kernel now says something else, so both paths print the
    same text. ``capture`` names the (source pod, destination pod) walk whose underlay frames the
    report shows; ``nodes`` the nodes whose tables it reads.
    """
    live = should_run_live() if live is None else live
    chosen = select_probes(cluster, per_kind=per_kind, include=(capture,))
    path = Path(recording) if recording is not None else recording_path(cluster.network.name)
    expected = replay(cluster, Recording.load(path), chosen, capture=capture, nodes=nodes)
    if not live:
        return expected
    observed, lines = record(cluster, chosen, nodes=nodes)
    report = replay(cluster, observed, chosen, capture=capture, nodes=nodes)
    report = LabReport(report.scenario, tuple(lines), report.tables, report.capture)  # the live verdicts
    if report.text() != expected.text():
        diff = "\n".join(difflib.unified_diff(expected.text().splitlines(), report.text().splitlines(),
                                              "recorded", "live", lineterm="", n=1))
        raise RecordingMismatch(f"the kernel no longer answers as {path} records:\n{diff}")
    return report

