"""MTU budgets drawn, and the explorer's verdicts.

Expected values come from the MTU arithmetic (datapath.md §1.5: VXLAN and Geneve
50 bytes over IPv4 and 70 over IPv6, Cilium's DSR option 12 more, IP-in-IP 20,
WireGuard 60/80 (Calico) or 80 (Cilium, flannel)) and from how Linux treats a
packet bigger than an MTU: DF set, the sender's own stack refuses (EMSGSIZE) or a
forwarding node answers ICMP type 3 code 4 with the next-hop MTU; DF clear,
fragments whose payload is (MTU - 20) rounded down to a multiple of 8.
"""

import html

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from kubenet_lab.errors import InvalidValue
from kubenet_lab.overlay.mtu import mtu_table
from kubenet_lab.viz.mtu import (VERDICTS, budget_rows, draw_mtu_budget, draw_pod_mtu_vs_underlay, mtu_explorer,
                                 mtu_explorer_model, mtu_explorer_table)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bars(ax):
    """(labels top to bottom, pod MTUs, overheads) as drawn."""
    pods, overheads = ax.containers[0], ax.containers[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    return labels, [round(p.get_width()) for p in pods], [round(p.get_width()) for p in overheads]


# -- the budget ------------------------------------------------------------------------


@pytest.mark.parametrize("underlay, version", [(1500, 4), (9000, 4), (1500, 6), (9000, 6)])
def test_budget_bars_equal_the_table(underlay, version):
    ax = draw_mtu_budget(underlay, underlay_version=version)
    labels, pods, overheads = bars(ax)
    table = mtu_table((1500, 9000))
    # columns: name, v4 overhead, v4 @1500, v4 @9000, v6 overhead, v6 @1500, v6 @9000
    first = 1 if version == 4 else 4
    pod_column = first + (1 if underlay == 1500 else 2)
    expected = [(r[0], int(r[pod_column]), int(r[first])) for r in table.rows if r[first] != "-"]
    assert list(zip(labels, pods, overheads)) == expected
    assert all(p + o == underlay for p, o in zip(pods, overheads))


def test_budget_on_1500_ipv4_has_the_known_pod_mtus():
    labels, pods, overheads = bars(draw_mtu_budget(1500))
    budget = dict(zip(labels, zip(pods, overheads)))
    assert budget["VXLAN (flannel, Calico, Cilium)"] == (1450, 50)          # 20 IP + 8 UDP + 8 VXLAN + 14 Ethernet
    assert budget["Geneve + 12-byte DSR option (Cilium)"] == (1438, 62)
    assert budget["IP-in-IP (Calico tunl0)"] == (1480, 20)
    assert budget["WireGuard (Calico)"] == (1440, 60)
    assert budget["WireGuard (Cilium, flannel)"] == (1420, 80)
    assert budget["WireGuard + VXLAN (Cilium)"] == (1370, 130)
    assert budget["none: routed natively (BGP, host-gw)"] == (1500, 0)


def test_ipv6_budget_leaves_out_ip_in_ip_and_costs_20_more():
    labels, pods, overheads = bars(draw_mtu_budget(9000, underlay_version=6))
    assert "IP-in-IP (Calico tunl0)" not in labels
    budget = dict(zip(labels, zip(pods, overheads)))
    assert budget["VXLAN (flannel, Calico, Cilium)"] == (8930, 70)
    assert budget["WireGuard (Calico)"] == (8920, 80)


def test_budget_labels_print_the_numbers():
    ax = draw_mtu_budget(1500)
    texts = {t.get_text() for t in ax.texts}
    assert {"1450", "+ 50 = 1500", "1480", "+ 20 = 1500"} <= texts


def test_budget_rows_reject_an_unknown_family():
    with pytest.raises(InvalidValue, match="underlay_version"):
        budget_rows(1500, 5)


@pytest.mark.parametrize("draw", [lambda: draw_mtu_budget(1500), draw_pod_mtu_vs_underlay])
def test_figures_are_titled_labelled_and_have_a_legend(draw):
    ax = draw()
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_legend() is not None and ax.get_legend().get_texts()


def test_drawing_into_a_given_axes_returns_it():
    fig, (top, bottom) = plt.subplots(2, 1)
    assert draw_mtu_budget(1500, ax=top) is top
    assert draw_pod_mtu_vs_underlay(ax=bottom) is bottom


def test_pod_mtu_lines_are_underlay_minus_overhead():
    ax = draw_pod_mtu_vs_underlay(underlay_range=(1280, 9216))
    lines = {line.get_label(): line for line in ax.get_lines()}
    vxlan4 = next(l for name, l in lines.items() if name.startswith("VXLAN") and "over IPv4" in name)
    vxlan6 = next(l for name, l in lines.items() if name.startswith("VXLAN") and "over IPv6" in name)
    assert list(vxlan4.get_xdata()) == [1280, 9216] and list(vxlan4.get_ydata()) == [1230, 9166]
    assert list(vxlan6.get_ydata()) == [1210, 9146]
    minimums = sorted(line.get_ydata()[0] for name, line in lines.items() if "minimum" in name)
    assert minimums == [68, 1280]


def test_pod_mtu_vs_underlay_rejects_an_empty_range():
    with pytest.raises(InvalidValue, match="underlay_range"):
        draw_pod_mtu_vs_underlay(underlay_range=(9000, 1500))


# -- the explorer's verdicts -----------------------------------------------------------


def test_flannel_1500_delivers_1450_bytes_whole():
    v = mtu_explorer_model(1500, "flannel-vxlan", size=1450)
    assert (v.verdict, v.pod_mtu, v.tunnel_mtu) == ("delivered", 1450, 1450)
    assert (v.fragments, v.largest) == (1, 1500)  # 1450 + 50 fills the underlay exactly


def test_one_byte_more_with_df_is_refused_by_the_sender():
    v = mtu_explorer_model(1500, "flannel-vxlan", size=1451)
    assert (v.verdict, v.where) == ("EMSGSIZE", "pod:default/client eth0")
    assert (v.fragments, v.largest) == (0, 0)
    assert "EMSGSIZE" in str(v)


def test_one_byte_more_without_df_is_fragmented_by_the_sender():
    v = mtu_explorer_model(1500, "flannel-vxlan", size=1451, df=False)
    assert (v.verdict, v.where) == ("fragmented", "pod:default/client eth0")
    # first fragment (1450 - 20) // 8 * 8 = 1424 payload bytes, 1444 with its header, 1494 in VXLAN
    assert (v.fragments, v.largest) == (2, 1494)


def test_misconfigured_pod_mtu_with_df_gets_icmp_from_the_node():
    v = mtu_explorer_model(1500, "flannel-vxlan", pod_mtu_override=1500, size=1500)
    assert (v.verdict, v.where, v.next_hop_mtu) == ("frag-needed", "node-1 flannel.1", 1450)
    assert (v.pod_mtu, v.tunnel_mtu) == (1500, 1450)
    assert "next-hop MTU 1450" in str(v)


def test_misconfigured_pod_mtu_without_df_fragments_at_the_tunnel():
    v = mtu_explorer_model(1500, "flannel-vxlan", pod_mtu_override=1500, size=1500, df=False)
    assert (v.verdict, v.where) == ("fragmented", "node-1 flannel.1")
    assert (v.fragments, v.largest) == (2, 1494)


def test_tunnel_device_without_dev_fragments_the_outer_packet_on_the_underlay():
    v = mtu_explorer_model(1500, "flannel-vxlan", pod_mtu_override=1500, tunnel_mtu_override=1500, size=1500)
    assert (v.verdict, v.where, v.tunnel_mtu) == ("fragmented", "node-1 eth0", 1500)
    assert (v.fragments, v.largest) == (2, 1500)  # 1550 outer bytes: 1500, then 20 + 50


def test_calico_vxlan_mismatch_answers_from_vxlan_calico():
    v = mtu_explorer_model(1500, "calico-vxlan", pod_mtu_override=1500, size=1500)
    assert (v.verdict, v.where, v.next_hop_mtu) == ("frag-needed", "node-1 vxlan.calico", 1450)


@pytest.mark.parametrize("cni, underlay, pod_mtu, on_the_wire", [
    ("flannel-vxlan", 9000, 8950, 9000),
    ("calico-vxlan", 1500, 1450, 1500),
    ("calico-ipip", 1500, 1480, 1500),
    ("calico-ipip", 9000, 8980, 9000),
    ("cilium-vxlan", 1500, 1450, 1500),
    ("cilium-geneve", 1500, 1450, 1500),
    ("calico-bgp", 1500, 1500, 1500),
    ("native-routing", 9000, 9000, 9000),
])
def test_every_mode_delivers_its_pod_mtu_and_refuses_one_byte_more(cni, underlay, pod_mtu, on_the_wire):
    fits = mtu_explorer_model(underlay, cni, size=pod_mtu)
    assert (fits.verdict, fits.pod_mtu, fits.largest) == ("delivered", pod_mtu, on_the_wire)
    assert mtu_explorer_model(underlay, cni, size=pod_mtu + 1).verdict == "EMSGSIZE"


def test_cilium_keeps_the_tunnel_device_at_the_host_mtu_and_limits_the_route():
    v = mtu_explorer_model(1500, "cilium-vxlan", size=1450)
    assert (v.pod_mtu, v.tunnel_mtu) == (1450, 1500)
    sender = v.trace.hops[0]
    assert "mtu 1450" in sender.decided_by


def test_natively_routed_modes_have_no_tunnel():
    v = mtu_explorer_model(1500, "native-routing", size=1500)
    assert v.tunnel_mtu is None and "MTU" not in v.setup.split("pod MTU")[1]


def test_every_verdict_is_explained():
    for verdict in ("delivered", "fragmented", "EMSGSIZE", "frag-needed"):
        assert verdict in VERDICTS


def test_bad_explorer_input_names_the_field():
    with pytest.raises(InvalidValue, match="cni"):
        mtu_explorer_model(1500, "weave")
    with pytest.raises(InvalidValue, match="size"):
        mtu_explorer_model(1500, "flannel-vxlan", size=10)


def test_explorer_table_has_one_row_per_case():
    table = mtu_explorer_table([{"size": 1450}, {"size": 1451}, {"pod_mtu_override": 1500, "size": 1500}])
    assert [r[6] for r in table.rows] == ["delivered", "EMSGSIZE", "frag-needed"]
    assert table.rows[2][8] == "1450"
    assert "VERDICT" in table.headers


def test_explorer_widget_only_wires_the_model():
    box = mtu_explorer()
    answer = box.children[3]
    assert answer.value == f"<pre>{html.escape(str(mtu_explorer_model(1500, 'flannel-vxlan', size=1450)))}</pre>"
    size = box.children[2].children[0]
    size.value = 1451
    assert "EMSGSIZE" in answer.value
    pod_mtu = box.children[1].children[0]
    pod_mtu.value = 1500
    size.value = 1500
    assert "next-hop MTU 1450" in answer.value.splitlines()[-1]
