"""The kernel lab touches nothing but its own namespaces, and leaves nothing behind.

* the host namespace's links, addresses, routes, iptables and nft rulesets, listening sockets
  and the sysctls a lab could plausibly change are identical before and after a full lab run
  (kube-proxy rules, echo servers, probes);
* a lab killed with SIGTERM in the middle of its set-up removes everything it had created;
* a BGP-routed lab killed with SIGTERM once up stops its BIRDs (by pid) and removes its run
  directory, and BIRD's kernel protocol wrote no route outside the lab's namespaces;
  ``lab down --all`` stops BIRDs whose namespaces were deleted under them;
* without root the API explains why it cannot run and what to do.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import InvalidValue
from kubenet_lab.kernel import KernelLab, missing_requirements

ROOT = Path(__file__).resolve().parent.parent
REASON = missing_requirements()
root_only = pytest.mark.skipif(REASON is not None, reason=REASON or "")
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
           "net.ipv4.conf.all.proxy_arp", "net.ipv6.conf.all.forwarding")


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def _loopback_ephemeral(address: str) -> bool:
    """A loopback listener on an ephemeral port: what other programs on a shared machine open and
    close all the time (Jupyter kernels, browsers). The lab's servers bind 0.0.0.0 and BIRD port 179."""
    host, _, port = address.rpartition(":")
    return host in ("127.0.0.1", "[::1]") and int(port) >= 32768


def host_state() -> dict[str, str]:
    """What a lab must not change in the host's own namespace (counters and lab namespaces aside)."""
    netns = "\n".join(line for line in _run("ip", "netns", "list").splitlines()
                      if not re.match(r"^knl[0-9a-f]{6}-", line))
    return {
        "links": _run("ip", "-d", "link", "show"),
        "addresses": _run("ip", "addr", "show"),
        "routes": _run("ip", "route", "show", "table", "all"),
        "routes6": _run("ip", "-6", "route", "show", "table", "all"),
        "iptables": re.sub(r"\[\d+:\d+\]", "", re.sub(r"^#.*$", "", _run("iptables-save"), flags=re.M)),
        "nft": _run("nft", "list", "ruleset") if subprocess.run(["which", "nft"], capture_output=True).returncode == 0 else "",
        "listening": "\n".join(sorted(address for line in _run("ss", "-ltnuH").splitlines() if len(line.split()) > 4
                                       and not _loopback_ephemeral(address := line.split()[4]))),
        "sysctls": "\n".join(_run("sysctl", "-n", name).strip() for name in SYSCTLS),
        "netns": netns,
    }


@root_only
def test_a_full_lab_run_leaves_the_host_namespace_as_it_was():
    before = host_state()
    cluster = Cluster.load(ROOT / "scenarios" / "three-node-vxlan.yaml")
    with KernelLab(cluster) as lab:
        lab.start_echo_servers()
        during = host_state()
        assert lab.connect("client", str(cluster.service("web").cluster_ip), 80) in {"web-1", "web-2", "web-3"}
        assert lab.verify(cluster.trace("web-1", "web-3")).agrees
    after = host_state()
    assert during["listening"] == before["listening"], "an echo server listens in the host namespace"
    for key in before:
        assert after[key] == before[key], f"the host's {key} changed"


@root_only
def test_a_lab_killed_mid_setup_removes_what_it_made(tmp_path):
    # A 12-node scenario takes several seconds to build: SIGTERM arrives while it is half done.
    cluster = Cluster()
    for i in range(12):
        cluster.add_node(f"node-{i + 1}")
        for j in range(4):
            cluster.add_pod(f"pod-{i}-{j}", node=f"node-{i + 1}")
    scenario = cluster.dump(tmp_path / "big.yaml")
    existing = set(_run("ip", "netns", "list").split())
    lab = subprocess.Popen([sys.executable, "-m", "kubenet_lab.cli", "lab", "up", str(scenario)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            new = {n for n in _run("ip", "netns", "list").split() if re.match(r"^knl[0-9a-f]{6}-", n)} - existing
            if len(new) >= 10:
                break
            time.sleep(0.05)
        assert new, "the lab never started building"
        lab.send_signal(signal.SIGTERM)
        lab.wait(timeout=30)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert lab.returncode != 0, "the lab finished before it could be interrupted"
    left = {n for n in _run("ip", "netns", "list").split() if re.match(r"^knl[0-9a-f]{6}-", n)} - existing
    assert not left, f"left behind: {sorted(left)[:5]}"


_HOLD_UP = """
import sys, time
from kubenet_lab import Cluster
from kubenet_lab.kernel import KernelLab
lab = KernelLab(Cluster.load(sys.argv[1]))
lab.up()
print(lab.prefix, flush=True)
time.sleep(60)
"""


@root_only
def test_a_bgp_lab_killed_while_up_stops_its_birds():
    from kubenet_lab.kernel.lab import run_dir

    before = host_state()
    lab = subprocess.Popen([sys.executable, "-c", _HOLD_UP, str(ROOT / "scenarios" / "two-rack-bgp.yaml")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        prefix = lab.stdout.readline().strip()
        assert prefix, lab.stderr.read()
        pids = [int(p.read_text()) for p in run_dir(prefix).glob("*.pid")]
        assert len(pids) == 7  # 4 nodes, 2 ToRs, the spine
        during = host_state()
        lab.send_signal(signal.SIGTERM)
        lab.wait(timeout=30)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert lab.returncode != 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "a BIRD outlived its lab"
    assert not run_dir(prefix).exists()
    assert prefix not in _run("ip", "netns", "list")
    for key in ("routes", "links", "addresses", "listening"):
        assert during[key] == before[key] == host_state()[key], f"the host's {key} changed"


@root_only
def test_lab_down_all_stops_birds_whose_namespaces_are_gone():
    from kubenet_lab.kernel.lab import run_dir

    # `ip netns del` only unmounts a namespace: the BIRDs inside keep it, and keep running
    lab = KernelLab(Cluster.load(ROOT / "scenarios" / "two-rack-bgp.yaml"))
    lab.up()
    try:
        pids = [int(p.read_text()) for p in run_dir(lab.prefix).glob("*.pid")]
        for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
            if name.startswith(lab.prefix + "-"):
                subprocess.run(["ip", "netns", "del", name], check=True, timeout=10)
        assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
        KernelLab.cleanup_all()
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        assert not run_dir(lab.prefix).exists()
    finally:
        lab.down()  # restores the signal handlers; nothing is left to remove


def test_without_root_the_lab_says_why_and_what_to_do(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cluster = Cluster.load(ROOT / "scenarios" / "three-node-vxlan.yaml")
    with pytest.raises(InvalidValue, match="needs root .* on Binder it steps aside"):
        KernelLab(cluster).up()
