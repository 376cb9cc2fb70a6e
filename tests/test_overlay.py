"""What each CNI programs on a node, and its MTU arithmetic.

Expected values come from the CNIs' sources as recorded in shared/reference/datapath.md
(§1.1-1.5, anchors 1-3) and from RFC header sizes, not from this code: flannel VNI 1 on
the kernel's default port 8472 and device flannel.1; Calico VNI 4096, port 4789,
vxlan.calico and tunl0; Cilium 8472/6081; overheads 50 (VXLAN/Geneve over IPv4:
20 + 8 + 8 + 14), 70 over IPv6, 20 for IP-in-IP.
"""

import hashlib
import ipaddress

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import InvalidValue, Overlap
from kubenet_lab.overlay.modes import MODES, mode_for
from kubenet_lab.overlay.topology import veth_name

ip = ipaddress.ip_address


def cluster(cni="flannel-vxlan", ipam="host-local", nodes=3, racks=None, **kwargs) -> Cluster:
    c = Cluster(cni=cni, ipam=ipam, racks=racks or [], **kwargs)
    for i in range(1, nodes + 1):
        c.add_node(f"node-{i}", rack=None if not racks else ("rack-1" if i <= 2 else "rack-2"))
        c.add_pod(f"pod-{i}", node=f"node-{i}")
    return c


TWO_RACKS = [{"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}},
             {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}}]


@pytest.mark.parametrize("cni, encap, device, vni, port", [
    ("flannel-vxlan", "vxlan", "flannel.1", 1, 8472),
    ("calico-vxlan", "vxlan", "vxlan.calico", 4096, 4789),
    ("calico-ipip", "ipip", "tunl0", None, None),
    ("cilium-vxlan", "vxlan", "cilium_vxlan", None, 8472),
    ("cilium-geneve", "geneve", "cilium_geneve", None, 6081),
    ("calico-bgp", None, None, None, None),
    ("native-routing", None, None, None, None),
])
def test_real_defaults(cni, encap, device, vni, port):
    mode = mode_for(cni)
    assert (mode.encapsulation, mode.device, mode.vni, mode.udp_port) == (encap, device, vni, port)


@pytest.mark.parametrize("cni, v4_1500, v6_1500, v4_9000", [
    ("flannel-vxlan", 1450, 1430, 8950),
    ("calico-vxlan", 1450, 1430, 8950),
    ("cilium-geneve", 1450, 1430, 8950),
    ("calico-ipip", 1480, 1480, 8980),
    ("calico-bgp", 1500, 1500, 9000),
])
def test_pod_mtu_as_the_cnis_compute_it(cni, v4_1500, v6_1500, v4_9000):
    mode = MODES[cni]
    assert (mode.pod_mtu(1500, 4), mode.pod_mtu(1500, 6), mode.pod_mtu(9000, 4)) == (v4_1500, v6_1500, v4_9000)


def test_flannel_programs_one_route_neighbour_and_fdb_entry_per_remote_node():
    c = cluster()
    host = c.host("node-1")
    node2, node3 = c.node("node-2"), c.node("node-3")
    routes = [str(r) for r in host.routes if r.dev == "flannel.1"]
    assert routes == ["10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink", "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]
    assert [str(n.ip) for n in host.neighbors] == ["10.244.1.0", "10.244.2.0"]
    assert all(n.state == "PERMANENT" and n.dev == "flannel.1" for n in host.neighbors)
    # the neighbour's MAC is the remote VTEP's, and the FDB maps that MAC to the remote node's underlay IP
    assert [(f.mac, f.dst) for f in host.fdb] == [(n.lladdr, node.ip) for n, node in zip(host.neighbors, (node2, node3))]
    assert str(host.fdb[0]) == f"{host.neighbors[0].lladdr} dev flannel.1 dst 192.168.0.12 self permanent"
    vtep = c.host("node-2").interfaces["flannel.1"]
    assert vtep.mac == host.neighbors[0].lladdr and str(vtep.addresses[0]) == "10.244.1.0/32"
    assert (vtep.vni, vtep.port, vtep.mtu, vtep.local) == (1, 8472, 1450, ip("192.168.0.12"))
    assert "10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1" in [str(r) for r in host.routes]


def test_macs_are_stable_locally_administered_unicast():
    a, b = cluster(), cluster()
    mac = a.host("node-1").interfaces["flannel.1"].mac
    assert mac == b.host("node-1").interfaces["flannel.1"].mac
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01


def test_direct_routing_inside_a_rack_vxlan_across():
    c = cluster(racks=TWO_RACKS, same_subnet_direct=True)
    routes = {str(r.dst): r for r in c.host("node-1").routes}
    assert str(routes["10.244.1.0/24"]) == "10.244.1.0/24 via 192.168.1.12 dev eth0"
    assert str(routes["10.244.2.0/24"]) == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    assert [str(n.ip) for n in c.host("node-1").neighbors] == ["10.244.2.0"]


def test_calico_ipip_and_vxlan_and_bgp_routes():
    ipip = cluster("calico-ipip", "calico")
    block = ipip.blocks("node-2")[0]
    assert f"{block} via 192.168.0.12 dev tunl0 proto bird onlink" in [str(r) for r in ipip.host("node-1").routes]
    assert f"blackhole {ipip.blocks('node-1')[0]} proto bird" in [str(r) for r in ipip.host("node-1").routes]
    # calico-node takes tunl0's address from IPAM at start-up: the block's first address, so the
    # first pod gets the second one.
    assert ipip.tunnel_addresses["node-1"] == ipip.blocks("node-1")[0].network_address
    assert ipip.pod("pod-1").ip == ipip.blocks("node-1")[0].network_address + 1
    vx = cluster("calico-vxlan", "calico")
    remote = vx.tunnel_addresses["node-2"]
    route = next(r for r in vx.host("node-1").routes if r.dev == "vxlan.calico")
    assert str(route) == f"{vx.blocks('node-2')[0]} via {remote} dev vxlan.calico proto 80 onlink"
    bgp = cluster("calico-bgp", "calico")
    assert not bgp.tunnel_addresses and not bgp.host("node-1").fdb
    assert f"{bgp.blocks('node-2')[0]} via 192.168.0.12 dev eth0 proto bird" in [str(r) for r in bgp.host("node-1").routes]


def test_calico_veth_names_are_calicos():
    # libcalico-go VethNameForWorkload: "cali" + hex(sha1("<namespace>.<pod>"))[:11]
    assert veth_name("calico", "default/web-1") == "cali" + hashlib.sha1(b"default.web-1").hexdigest()[:11]
    c = cluster("calico-vxlan", "calico")
    name = veth_name("calico", "default/pod-1")
    host_if = c.host("node-1").interfaces[name]
    assert host_if.mac == "ee:ee:ee:ee:ee:ee" and host_if.proxy_arp


def test_cilium_uses_a_tunnel_map_not_fdb():
    c = cluster("cilium-vxlan")
    host = c.host("node-1")
    assert not host.fdb and not host.neighbors
    assert [(str(t.prefix), str(t.endpoint)) for t in host.tunnel_map] == [("10.244.1.0/24", "192.168.0.12"),
                                                                            ("10.244.2.0/24", "192.168.0.13")]
    pod_routes = [str(r) for r in c.topology()["pod:default/pod-1"].routes]
    assert pod_routes[0] == "default via 10.244.0.1 dev eth0 mtu 1450"  # Cilium: veth at 1500, route MTU 1450
    assert c.topology()["pod:default/pod-1"].interfaces["eth0"].mtu == 1500


def test_racks_add_tors_and_a_spine():
    c = cluster("calico-bgp", "calico", racks=TWO_RACKS)
    tor = c.topology()["tor-1"]
    assert str(tor.routes[0]) == "default via 172.31.255.0 dev uplink"
    assert any(str(r).startswith(f"{c.blocks('node-1')[0]} via 192.168.1.11 dev rack") for r in tor.routes)
    spine = c.topology()["spine"]
    assert any(str(r) == "192.168.2.0/24 via 172.31.255.3 dev tor-2 proto bgp" for r in spine.routes)


@pytest.mark.parametrize("kwargs, field", [
    ({"overlay_vni": 2**24}, "overlay.vni"),
    ({"overlay_vni": -1}, "overlay.vni"),
    ({"overlay_port": 0}, "overlay.port"),
    ({"overlay_port": 65536}, "overlay.port"),
    ({"cni": "calico-ipip", "overlay_port": 4789}, "overlay.port"),
    ({"cni": "cilium-vxlan", "overlay_vni": 5}, "overlay.vni"),
    ({"cni": "calico-bgp", "same_subnet_direct": True}, "overlay.directRouting"),
    ({"mtu": 110}, "underlay.mtu"),
    ({"cni": "flannel-udp"}, "cni"),
])
def test_bad_overlay_settings(kwargs, field):
    with pytest.raises(InvalidValue) as info:
        Cluster(**kwargs)
    assert info.value.field == field


def test_ipv6_pods_need_1280():
    with pytest.raises(InvalidValue, match="IPv6 minimum of 1280"):
        Cluster(pod_cidr="10.244.0.0/16,fd00::/56", service_cidr="10.96.0.0/12,fd01::/112", mtu=1320)
    Cluster(pod_cidr="10.244.0.0/16,fd00::/56", service_cidr="10.96.0.0/12,fd01::/112", mtu=1330)


def test_fabric_range_clash_is_refused():
    with pytest.raises(Overlap, match="fabric links.*podCIDRs 172.31.0.0/16"):
        Cluster(pod_cidr="172.31.0.0/16", service_cidr="10.96.0.0/12", racks=TWO_RACKS)


def test_mtu_table_matches_the_cnis_constants():
    # datapath.md §1.5: VXLAN 1450/8950 (v4) 1430/8930 (v6); IP-in-IP 1480/8980; WireGuard Calico 1440/1420,
    # Cilium/flannel 1420; WireGuard + VXLAN 1370 (Cilium getRouteMTU); Geneve + DSR option 1438.
    from kubenet_lab.overlay.mtu import mtu_table

    rows = {r[0]: r[1:] for r in mtu_table().rows}
    assert rows["VXLAN (flannel, Calico, Cilium)"] == ("50", "1450", "8950", "70", "1430", "8930")
    assert rows["IP-in-IP (Calico tunl0)"] == ("20", "1480", "8980", "-", "-", "-")
    assert rows["WireGuard (Calico)"][:2] == ("60", "1440") and rows["WireGuard (Calico)"][4] == "1420"
    assert rows["WireGuard (Cilium, flannel)"][1] == "1420"
    assert rows["WireGuard + VXLAN (Cilium)"][1] == "1370"
    assert rows["Geneve + 12-byte DSR option (Cilium)"][1] == "1438"
