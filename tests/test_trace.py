"""The packet walk: hops, verdicts, and the bytes on the wire.

Byte positions come from the RFCs' layouts (RFC 894 Ethernet 14 bytes, RFC 791 IPv4 20,
RFC 768 UDP 8, RFC 7348 §5 VXLAN 8: flags byte 0x08, 3 reserved, 24-bit VNI, 1
reserved; RFC 8926 §3.4 Geneve; RFC 2003 IP-in-IP = protocol 4), the Linux facts from
shared/reference/datapath.md §1.6 (flags exactly 0x08, source port in 32768-60999,
destination 8472 by default), and scapy's and tshark's dissections must agree.
"""

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.cli import main
from kubenet_lab.errors import InvalidValue, NotFound

ROOT = Path(__file__).resolve().parent.parent
ip = ipaddress.ip_address
TWO_RACKS = [{"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}},
             {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}}]
MODES = ["flannel-vxlan", "calico-vxlan", "calico-ipip", "calico-bgp", "cilium-vxlan", "cilium-geneve", "native-routing"]


def cluster(cni="flannel-vxlan", racks=None, **kwargs) -> Cluster:
    ipam = "calico" if cni.startswith("calico") else "host-local"
    c = Cluster(cni=cni, ipam=ipam, racks=racks or [], **kwargs)
    for i in range(1, 4):
        c.add_node(f"node-{i}", rack=None if not racks else ("rack-1" if i <= 2 else "rack-2"))
    c.add_pod("a", node="node-1")
    c.add_pod("b", node="node-1")
    c.add_pod("x", node="node-3")
    return c


def underlay_hop(trace):
    return next(h for h in trace.wire_hops if h.state.outer is not None)


def test_flannel_vxlan_bytes_follow_rfc_7348_and_linux():
    c = cluster()
    t = c.trace("a", "x", proto="tcp", dport=8080)
    assert t.outcome == "delivered"
    wire = bytes(underlay_hop(t).packet)
    ethernet, ipv4, udp, vxlan = wire[:14], wire[14:34], wire[34:42], wire[42:50]
    assert ethernet[12:14] == b"\x08\x00"
    assert ipv4[9] == 17 and ipv4[8] == 64 and ipv4[6] & 0x40 == 0  # UDP, TTL 64, DF clear
    assert ipv4[12:16] == ip("192.168.0.11").packed and ipv4[16:20] == ip("192.168.0.13").packed
    sport, dport = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
    assert 32768 <= sport <= 60999 and dport == 8472
    assert int.from_bytes(udp[4:6], "big") == len(wire) - 34 and udp[6:8] != b"\x00\x00"  # checksum on, as Linux 6.x
    assert vxlan == b"\x08\x00\x00\x00" + (1).to_bytes(3, "big") + b"\x00"
    inner = wire[50:]
    assert inner[0:6] == bytes.fromhex(c.host("node-3").interfaces["flannel.1"].mac.replace(":", ""))
    assert inner[14 + 8] == 63  # inner TTL: decremented once, by node-1
    assert len(wire) == 14 + 50 + 40  # outer Ethernet + 50 bytes of overhead + the 40-byte inner packet


def test_scapy_dissects_the_same_fields():
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    t = cluster().trace("a", "x", proto="tcp", dport=8080)
    again = Ether(bytes(underlay_hop(t).packet))
    assert again[VXLAN].flags == 0x08 and again[VXLAN].vni == 1
    assert again[UDP].dport == 8472
    inner = again[VXLAN].payload
    assert inner[IP].src == "10.244.0.2" and inner[IP].dst == "10.244.2.2" and inner[TCP].dport == 8080


def test_ttl_and_macs_along_the_way():
    t = cluster().trace("a", "x")
    first, underlay, last = t.wire_hops
    assert first.state.inner.ttl == 64 and underlay.state.inner.ttl == 63 and last.state.inner.ttl == 62
    assert underlay.state.outer.ttl == 64
    c = cluster(racks=TWO_RACKS)
    outer_ttls = [h.state.outer.ttl for h in c.trace("a", "x").wire_hops if h.state.outer]
    assert outer_ttls == [64, 63, 62, 61]  # node-1, tor-1, spine, tor-2 each forward the outer packet


def test_same_node_bridged_on_flannel_routed_on_calico():
    flannel = cluster().trace("a", "b")
    assert [h.action for h in flannel.hops] == ["route", "neighbour", "transmit", "deliver"]
    assert flannel.wire_hops[-1].state.inner.ttl == 64  # bridged: no router decremented it
    calico = cluster("calico-vxlan").trace("a", "b")
    assert calico.outcome == "delivered" and calico.wire_hops[-1].state.inner.ttl == 63


def test_ipip_and_geneve_headers():
    t = cluster("calico-ipip").trace("a", "x")
    wire = bytes(underlay_hop(t).packet)
    assert wire[14 + 9] == 4 and wire[34:35] == b"\x45"  # protocol 4, then the inner IPv4 header, no inner Ethernet
    assert wire[14 + 8] == wire[34 + 8] == 63  # tunl0 copies the inner TTL
    g = cluster("cilium-geneve").trace("a", "x")
    wire = bytes(underlay_hop(g).packet)
    assert int.from_bytes(wire[36:38], "big") == 6081
    geneve = wire[42:50]
    assert geneve[0] == 0 and geneve[1] == 0 and geneve[2:4] == b"\x65\x58"  # version 0, no options, Ethernet
    assert int.from_bytes(geneve[4:7], "big") == underlay_hop(g).state.outer.vni >= 256  # Cilium: the identity


def test_masquerade_to_another_node_but_not_to_its_own():
    c = cluster()
    remote = c.trace("a", "node-2")
    masq = next(h for h in remote.hops if h.action == "masquerade")
    assert "MASQUERADE" in masq.decided_by and remote.wire_hops[-1].state.inner.src == ip("192.168.0.11")
    local = c.trace("a", "node-1")
    assert local.outcome == "delivered" and not any(h.action == "masquerade" for h in local.hops)


def test_node_reaches_remote_pods_from_its_vtep_address():
    # Linux source address selection: the egress device's address, flannel.1's 10.244.0.0.
    t = cluster().trace("node-1", "x")
    assert t.wire_hops[0].state.inner.src == ip("10.244.0.0")


@pytest.mark.parametrize("cni, dst, words", [
    ("flannel-vxlan", "10.244.2.99", "no answer to ARP for 10.244.2.99"),
    ("calico-vxlan", None, "blackholes"),
    ("flannel-vxlan", "8.8.8.8", "leaves the lab through the underlay's default gateway 192.168.0.1"),
])
def test_unreachable_destinations_say_why(cni, dst, words):
    c = cluster(cni)
    if dst is None:  # an address of node-3's block that no pod holds: node-3's blackhole route drops it
        dst = str(c.blocks("node-3")[0].network_address + 40)
    t = c.trace("a", dst)
    assert t.outcome == ("exited" if "gateway" in words else "dropped") and words in t.reason
    assert t.hops[-1].action == "drop"


def test_mtu_df_set_icmp_from_the_node_df_clear_fragments():
    mismatched = cluster(veth_mtu=1500)  # pods told 1500 while flannel.1 is 1450
    t = mismatched.trace("a", "x", size=1500)
    icmp = t.hops[-1]
    assert t.outcome == "dropped" and icmp.action == "icmp" and icmp.namespace == "node-1"
    frame = icmp.state.inner
    assert (frame.icmp_type, frame.icmp_code, frame.next_hop_mtu, frame.dst) == (3, 4, 1450, ip("10.244.0.2"))
    assert frame.src == ip("10.244.0.1")  # the address of the way back: cni0
    from scapy.layers.inet import ICMP
    assert icmp.packet[ICMP].nexthopmtu == 1450
    clear = mismatched.trace("a", "x", size=1500, df=False)
    assert clear.outcome == "delivered"
    underlay = underlay_hop(clear)
    assert underlay.state.fragments == 2 and len(underlay.packet) == 2
    # Linux fills the first fragment: (1450 - 20) // 8 * 8 = 1424 payload bytes, then VXLAN adds 50.
    assert underlay.state.length == 1444 + 50
    # A VXLAN device created without `dev` stays at MTU 1500 (datapath.md §1.5): a 1500-byte inner
    # packet passes it, and the 1550-byte outer packet, DF clear, leaves node-1 in two fragments.
    big_tunnel = cluster(veth_mtu=1500, tunnel_mtu=1500)
    outer = underlay_hop(big_tunnel.trace("a", "x", size=1500))
    assert outer.state.outer.fragment_payload == 1480 and outer.state.fragments == 2 and not outer.state.outer.df
    local = cluster().trace("a", "x", size=1451)
    assert local.outcome == "dropped" and "EMSGSIZE" in local.reason


@pytest.mark.parametrize("kwargs, error", [
    ({"src": "ghost", "dst": "x"}, NotFound),
    ({"src": "a", "dst": "nowhere"}, NotFound),
    ({"src": "a", "dst": "x", "proto": "sctp"}, InvalidValue),
    ({"src": "a", "dst": "x", "proto": "tcp"}, InvalidValue),
    ({"src": "a", "dst": "x", "proto": "udp", "dport": 70000}, InvalidValue),
    ({"src": "a", "dst": "x", "size": 10}, InvalidValue),
    ({"src": "a", "dst": "10.96.0.1"}, InvalidValue),
])
def test_bad_trace_arguments(kwargs, error):
    c = cluster()
    with pytest.raises(error):
        c.trace(kwargs.pop("src"), kwargs.pop("dst"), **kwargs)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("cni", MODES)
@pytest.mark.parametrize("racks", [False, True], ids=["one-segment", "two-racks"])
def test_tshark_dissects_every_mode_cleanly(cni, racks, tmp_path):
    c = cluster(cni, racks=TWO_RACKS if racks else None)
    t = c.trace("a", "x", proto="udp", dport=53, size=200)
    assert t.outcome == "delivered"
    pcap = t.to_pcap(tmp_path / "walk.pcap")
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==8472,vxlan", "-T", "json"],
                         capture_output=True, text=True, check=True).stdout
    packets = json.loads(out)
    assert len(packets) == len(t.wire_hops)
    for packet in packets:
        layers = packet["_source"]["layers"]
        protocols = layers["frame"]["frame.protocols"].split(":")
        assert "_ws.malformed" not in layers and "data" not in protocols, protocols
        assert protocols[-1] == "dns"
    encapsulated = [packets[i]["_source"]["layers"]["frame"]["frame.protocols"] for i, h in
                    enumerate(t.wire_hops) if h.state.outer is not None]
    expected = {"vxlan": "udp:vxlan:eth", "geneve": "udp:geneve:eth", "ipip": "ip:ip:udp"}
    encap = c.network.datapath.encapsulation
    assert all(expected[encap] in p for p in encapsulated) if encap else not encapsulated


def test_trace_renders_as_text_and_html():
    t = cluster().trace("a", "x")
    text = str(t)
    assert text.splitlines()[0] == "trace a -> 10.244.2.2 icmp (flannel-vxlan): delivered, delivered to pod:default/x (10.244.2.2)"
    assert "encapsulate  VXLAN VNI 1" in text
    assert t._repr_html_().count("<tr>") == len(t.hops) + 1


def test_cli_trace_prints_the_walk_and_writes_a_pcap(tmp_path, capsys):
    pcap = tmp_path / "t.pcap"
    assert main(["trace", str(ROOT / "scenarios/three-node-vxlan.yaml"), "web-1", "web-3", "--proto", "tcp",
                 "--dport", "8080", "--pcap", str(pcap)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("trace web-1 -> 10.244.2.2 tcp (flannel-vxlan): delivered")
    assert pcap.stat().st_size > 0
    assert main(["trace", str(ROOT / "scenarios/three-node-vxlan.yaml"), "web-1", "ghost"]) == 2
    assert "'dst'" in capsys.readouterr().err


def test_ipip_tunnel_sends_frag_needed_with_the_underlay_less_20():
    # tunl0 copies DF to the outer header; a pod told 1500 on a 1500 underlay gets ICMP
    # "fragmentation needed" with MTU 1480 from its node (ip_tunnel's tnl_update_pmtu).
    c = cluster("calico-ipip", veth_mtu=1500, tunnel_mtu=1500)
    t = c.trace("a", "x", size=1500)
    icmp = t.hops[-1]
    assert icmp.action == "icmp" and icmp.namespace == "node-1" and icmp.state.inner.next_hop_mtu == 1480
    assert repr(t).startswith("<Trace a -> 10.244.") and len(repr(t)) < 120
