"""Packet views (header stack, hexdump, capture summary) and walk drawings.

Expected layer sizes are the RFCs' header lengths, not this code's: Ethernet 14
(RFC 894), IPv4 20 without options (RFC 791), UDP 8 (RFC 768), VXLAN 8 (RFC 7348
§5), Geneve 8 without options (RFC 8926 §3.4), TCP 20 without options (RFC 9293),
ICMP echo 8 (RFC 792); IP-in-IP has no inner Ethernet (RFC 2003). Every figure is
rendered to PNG under matplotlib's Agg backend.
"""

import html
import math
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from kubenet_lab import Cluster  # noqa: E402
from kubenet_lab.errors import InvalidValue  # noqa: E402
from kubenet_lab.viz.packets import (  # noqa: E402
    HexDump, draw_header_stack, header_layers, hexdump, pcap_summary)
from kubenet_lab.viz.walk import draw_trace, draw_tunnels, trace_legs, tunnels  # noqa: E402

RACKS = [{"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}, "nodes": ["node-1", "node-2"]},
         {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}, "nodes": ["node-3"]}]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def cluster(cni="flannel-vxlan", nodes=3, racks=None, **kwargs) -> Cluster:
    ipam = "calico" if cni.startswith("calico") else "host-local"
    c = Cluster(cni=cni, ipam=ipam, racks=racks or [], **kwargs)
    for i in range(1, nodes + 1):
        c.add_node(f"node-{i}")
    c.add_pod("a", node="node-1")
    c.add_pod("b", node="node-1")
    c.add_pod("x", node=f"node-{nodes}")
    return c


def underlay(trace):
    return next(h for h in trace.wire_hops if h.state.outer is not None)


def png(ax, tmp_path, name="figure.png"):
    path = tmp_path / name
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    return path


# -- header layers ------------------------------------------------------------------------

def test_vxlan_layers_are_the_rfc_sizes_and_add_up_to_the_bytes():
    hop = underlay(cluster().trace("a", "x", proto="tcp", dport=8080, size=100))
    layers = header_layers(hop)
    assert [layer.size for layer in layers] == [14, 20, 8, 8, 14, 20, 20, 60]
    assert [layer.name for layer in layers] == ["outer Ethernet", "outer IPv4", "outer UDP", "VXLAN",
                                                "inner Ethernet", "inner IPv4", "TCP", "payload"]
    assert [layer.role for layer in layers] == ["outer"] * 3 + ["tunnel"] + ["inner"] * 3 + ["payload"]
    assert sum(layer.size for layer in layers) == len(bytes(hop.packet))
    assert [layer.offset for layer in layers] == [0, 14, 34, 42, 50, 64, 84, 104]
    # the 50 bytes of VXLAN overhead (RFC 7348: outer IP + UDP + VXLAN + inner Ethernet)
    assert sum(layer.size for layer in layers[1:5]) == 50


@pytest.mark.parametrize("cni, sizes, roles", [
    ("cilium-geneve", [14, 20, 8, 8, 14, 20, 8, 56], ["outer"] * 3 + ["tunnel"] + ["inner"] * 3 + ["payload"]),
    ("calico-ipip", [14, 20, 20, 8, 56], ["outer", "outer", "inner", "inner", "payload"]),
])
def test_geneve_and_ipip_layers(cni, sizes, roles):
    hop = underlay(cluster(cni).trace("a", "x"))  # ping: 8-byte ICMP echo header, 56 data bytes
    layers = header_layers(hop)
    assert [layer.size for layer in layers] == sizes and [layer.role for layer in layers] == roles
    assert sum(sizes) == len(bytes(hop.packet))


def test_a_plain_packet_is_all_inner():
    hop = cluster().trace("a", "x").wire_hops[0]  # pod a's eth0: no tunnel yet
    layers = header_layers(hop)
    assert [(layer.name, layer.size, layer.role) for layer in layers] == [
        ("Ethernet", 14, "inner"), ("IPv4", 20, "inner"), ("ICMP", 8, "inner"), ("payload", 56, "payload")]


def test_hop_datapath_packet_and_scapy_packet_give_the_same_layers():
    hop = underlay(cluster().trace("a", "x"))
    assert header_layers(hop) == header_layers(hop.state) == header_layers(hop.packet)


def test_an_icmp_error_quotes_the_packet_it_answers():
    t = cluster(veth_mtu=1500).trace("a", "x", size=1500)
    assert t.hops[-1].action == "icmp"
    layers = header_layers(t.hops[-1])
    assert [layer.short for layer in layers] == ["IPv4", "ICMP", "quoted packet"]
    assert sum(layer.size for layer in layers) == len(bytes(t.hops[-1].packet))


def test_a_fragmented_hop_shows_its_first_fragment(tmp_path):
    hop = underlay(cluster(veth_mtu=1500).trace("a", "x", size=1500, df=False))
    assert isinstance(hop.packet, list) and len(hop.packet) == 2
    assert sum(layer.size for layer in header_layers(hop)) == len(bytes(hop.packet[0]))
    ax = draw_header_stack(hop)
    assert "first of 2 fragments" in ax.get_title()
    png(ax, tmp_path)


def test_anything_else_is_refused():
    with pytest.raises(InvalidValue, match="packet_or_hop"):
        header_layers("not a packet")


# -- header stack -------------------------------------------------------------------------

@pytest.mark.parametrize("cni", ["flannel-vxlan", "cilium-geneve", "calico-ipip", "native-routing"])
def test_header_stack_draws_one_segment_per_layer(cni, tmp_path):
    hop = cluster(cni).trace("a", "x", proto="tcp", dport=80).wire_hops[1]
    layers = header_layers(hop)
    ax = draw_header_stack(hop)
    segments = [p for p in ax.patches if p.get_gid() == "layer"]
    assert [round(s.get_width()) for s in segments] == [layer.size for layer in layers]
    assert [round(s.get_x()) for s in segments] == [layer.offset for layer in layers]
    assert ax.get_xlim() == (0, len(bytes(hop.packet)))
    assert ax.get_title().startswith(f"Hop {hop.index}, node-1 eth0: ")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    encapsulated = hop.state.outer is not None
    assert any("outer" in t for t in legend) == encapsulated
    png(ax, tmp_path)


def test_header_stack_labels_every_layer_even_when_the_payload_dwarfs_them(tmp_path):
    hop = underlay(cluster().trace("a", "x", size=1400))
    ax = draw_header_stack(hop)
    texts = [t.get_text() for t in ax.texts]
    for layer in header_layers(hop):
        assert f"{layer.short}\n{layer.size} B" in texts
    png(ax, tmp_path)


def test_header_stacks_share_a_scale_with_xmax(tmp_path):
    c = cluster("calico-ipip")
    hop = underlay(c.trace("a", "x"))
    ax = draw_header_stack(hop, xmax=148)
    assert ax.get_xlim() == (0, 148) and max(ax.get_xticks()) == len(bytes(hop.packet)) == 118
    png(ax, tmp_path)


def test_header_stack_on_a_given_axes_keeps_a_given_title():
    _, ax = plt.subplots()
    hop = underlay(cluster().trace("a", "x"))
    assert draw_header_stack(hop, ax=ax, title="The underlay hop") is ax
    assert ax.get_title() == "The underlay hop"


# -- hexdump ------------------------------------------------------------------------------

def test_hexdump_text_is_xxd_with_a_layer_ruler():
    hop = underlay(cluster().trace("a", "x", proto="tcp", dport=8080, size=100))
    data = bytes(hop.packet)
    dump = hexdump(hop)
    assert isinstance(dump, HexDump) and dump.data == data
    lines = str(dump).splitlines()
    rows = [line for line in lines if re.match(r"^[0-9a-f]{8}: ", line)]
    assert len(rows) == math.ceil(len(data) / 16) == dump.rows
    for number, row in enumerate(rows):
        chunk = data[number * 16:(number + 1) * 16]
        assert row.startswith(f"{number * 16:08x}: ")
        assert row[10:49].replace(" ", "") == chunk.hex()  # every byte's hex, in order
        ruler = lines[lines.index(row) + 1]
        assert len(ruler.replace(" ", "")) == 2 * len(chunk)
    # the key: one letter per layer, and the ruler letters follow the layer sizes
    letters = "".join(lines[lines.index(row) + 1].replace(" ", "")[::2] for row in rows)
    assert letters == "".join("abcdefgh"[i] * layer.size for i, layer in enumerate(dump.layers))
    assert lines[0] == f"hop {hop.index}, {hop.namespace} {hop.interface}: {len(data)} bytes"


def test_hexdump_html_colours_every_byte_and_is_deterministic():
    make = lambda: hexdump(underlay(cluster().trace("a", "x")))  # noqa: E731
    dump = make()
    page = dump._repr_html_()
    assert page == make()._repr_html_()
    # without its colours, the <pre> block is exactly the xxd text
    pre = page[page.index("<pre"):page.index("</pre>")]
    plain = html.unescape(re.sub(r"<[^>]+>", "", pre))
    assert plain.splitlines() == [line for line in str(dump).splitlines() if re.match(r"^[0-9a-f]{8}: ", line)]
    # every byte sits in a span titled with its layer: hex and ASCII, one span per run of a layer in a row
    spans = re.findall(r"<span style='background:#[0-9a-f]{6}' title='([^']+), bytes (\d+)-(\d+)'>([^<]*)</span>", pre)
    hex_digits = sum(len(text.replace(" ", "")) for name, _, _, text in spans if re.fullmatch(r"[0-9a-f ]+", text))
    assert hex_digits >= 2 * len(dump.data)
    assert {name for name, *_ in spans} == {layer.name for layer in dump.layers}
    for layer in dump.layers:
        assert f"{layer.name} {layer.size} B" in page


# -- capture summary ----------------------------------------------------------------------

def test_pcap_summary_reads_back_every_wire_hop(tmp_path):
    t = cluster().trace("a", "x", proto="tcp", dport=8080)
    table = pcap_summary(t.to_pcap(tmp_path / "walk.pcap"))
    assert len(table.rows) == len(t.wire_hops)
    outer = underlay(t).state.outer
    row = table.rows[[h.state.outer is not None for h in t.wire_hops].index(True)]
    assert row[2:6] == ("10.244.0.2", "10.244.2.2", "TCP", str(len(bytes(underlay(t).packet))))
    assert row[7] == f"192.168.0.11 → 192.168.0.13 UDP {outer.sport} → 8472 VXLAN VNI 1"
    assert [r[1] for r in table.rows] == ["0.000000", "0.001000", "0.002000"]
    assert "[SYN]" in row[6]


def test_pcap_summary_dissects_geneve_and_ipip(tmp_path):
    g = cluster("cilium-geneve").trace("a", "x")
    row = pcap_summary(g.to_pcap(tmp_path / "g.pcap")).rows[1]
    assert "Geneve VNI" in row[7] and "6081" in row[7] and row[4] == "ICMP"
    i = cluster("calico-ipip").trace("a", "x")
    assert pcap_summary([h.packet for h in i.wire_hops]).rows[1][7].endswith("IP-in-IP (protocol 4)")


# -- tunnels and walks --------------------------------------------------------------------

@pytest.mark.parametrize("cni, nodes, expected", [
    ("flannel-vxlan", 3, 3), ("flannel-vxlan", 4, 6), ("calico-vxlan", 3, 3), ("calico-ipip", 3, 3),
    ("cilium-vxlan", 3, 3), ("cilium-geneve", 4, 6), ("native-routing", 3, 0), ("calico-bgp", 3, 0),
])
def test_one_tunnel_line_per_node_pair(cni, nodes, expected, tmp_path):
    c = cluster(cni, nodes=nodes)
    assert len(tunnels(c)) == expected == math.comb(nodes, 2) * (c.network.datapath.encapsulation is not None)
    ax = draw_tunnels(c)
    assert len([p for p in ax.patches if p.get_gid() == "tunnel"]) == expected
    assert ax.get_title()
    png(ax, tmp_path)


def test_tunnel_labels_name_device_and_vni():
    assert {t.label for t in tunnels(cluster())} == {"flannel.1 · VNI 1"}
    assert {t.label for t in tunnels(cluster("calico-vxlan"))} == {"vxlan.calico · VNI 4096"}
    assert {t.label for t in tunnels(cluster("cilium-geneve"))} == {"cilium_geneve · VNI identity"}
    assert {t.label for t in tunnels(cluster("calico-ipip"))} == {"tunl0 · IP proto 4"}
    ax = draw_tunnels(cluster())
    assert [t.get_text() for t in ax.texts].count("flannel.1 · VNI 1") == 3


def test_direct_routing_draws_the_same_rack_pair_routed_directly(tmp_path):
    c = cluster(racks=RACKS, same_subnet_direct=True)
    assert [(t.a, t.b, t.kind) for t in tunnels(c)] == [
        ("node-1", "node-2", "direct"), ("node-1", "node-3", "tunnel"), ("node-2", "node-3", "tunnel")]
    ax = draw_tunnels(c)
    assert len([p for p in ax.patches if p.get_gid() == "tunnel"]) == 2
    assert len([p for p in ax.patches if p.get_gid() == "direct"]) == 1
    png(ax, tmp_path)


def test_trace_legs_follow_the_wire_hops():
    c = cluster()
    t = c.trace("a", "x")
    legs = trace_legs(t, c)
    assert [(leg.src, leg.dst, leg.kind) for leg in legs] == [
        ("pod:default/a", "node:node-1", "veth"), ("node:node-1", "node:node-3", "tunnel"),
        ("node:node-3", "pod:default/x", "veth")]
    assert [leg.hop for leg in legs] == [h.index for h in t.wire_hops]
    racked = cluster(racks=RACKS)
    kinds = [(leg.src, leg.kind) for leg in trace_legs(racked.trace("a", "x"), racked)]
    assert kinds == [("pod:default/a", "veth"), ("node:node-1", "tunnel"), ("tor:rack-1", "tunnel"),
                     ("fabric", "tunnel"), ("tor:rack-2", "tunnel"), ("node:node-3", "veth")]
    native = cluster("native-routing")
    assert [leg.kind for leg in trace_legs(native.trace("a", "x"), native)] == ["veth", "underlay", "veth"]
    assert [leg.kind for leg in trace_legs(c.trace("a", "b"), c)] == ["veth"]  # bridged on cni0


def test_draw_trace_numbers_each_leg_and_titles_the_outcome(tmp_path):
    c = cluster(racks=RACKS)
    t = c.trace("a", "x", proto="tcp", dport=8080)
    ax = draw_trace(t, c)
    legs = trace_legs(t, c)
    assert len([p for p in ax.patches if p.get_gid() == "leg"]) == len(legs) == 6
    texts = [x.get_text() for x in ax.texts]
    assert all(str(leg.hop) in texts for leg in legs)
    assert ax.get_title().endswith(": delivered")
    png(ax, tmp_path)


def test_draw_trace_marks_a_drop(tmp_path):
    c = cluster()
    t = c.trace("a", "10.244.2.99")
    ax = draw_trace(t, c)
    assert ax.get_title().endswith(": dropped")
    assert len([line for line in ax.lines if line.get_gid() == "drop"]) == 1
    png(ax, tmp_path)
