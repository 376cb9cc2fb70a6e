"""Scenario files: load, dump, round trip, real kubectl dumps, and bad files."""

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from kubenet_lab import Cluster
from kubenet_lab.design import REQUIREMENTS_KIND
from kubenet_lab.errors import AlreadyExists, InvalidValue, NotFound, ScenarioError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
ip = ipaddress.ip_address
net = ipaddress.ip_network

NETWORK = {"apiVersion": "kubenet-lab.io/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "t"},
           "spec": {"podCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/12"]}}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_round_trip(path, tmp_path):
    cluster = Cluster.load(path)
    # A design brief (chapter 09's) holds a ClusterNetwork and its requirements, no objects yet.
    brief = any(doc and doc.get("kind") == REQUIREMENTS_KIND for doc in yaml.safe_load_all(path.read_text()))
    assert brief or (cluster.nodes and cluster.pods and cluster.services)
    for suffix in (".yaml", ".json"):
        again = Cluster.load(cluster.dump(tmp_path / f"again{suffix}"))
        assert again.to_objects() == cluster.to_objects()
        assert str(again) == str(cluster)


def test_three_node_scenario_addresses():
    c = Cluster.load(SCENARIOS / "three-node-vxlan.yaml")
    assert [str(n.pod_cidr) for n in c.nodes] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert c.pod("web-1").ip == ip("10.244.0.2") and c.pod("client").ip == ip("10.244.0.3")
    assert c.service("web-nodeport").ports[0].node_port == 30080
    (web,) = c.endpoint_slices("web")
    assert [e.target_pod for e in web.endpoints] == ["web-1", "web-2", "web-3"]
    assert [(p.name, p.port) for p in web.ports] == [("http", 8080)]


def test_dual_stack_scenario():
    c = Cluster.load(SCENARIOS / "dual-stack.yaml")
    assert c.node("node-2").pod_cidrs == (net("10.244.1.0/24"), net("fd00:10:244:1::/64"))
    assert [a.version for a in c.service("web").cluster_ips] == [4, 6]
    assert c.service("web-v6").ip_families == ("IPv6",)


def test_two_rack_scenario_uses_calico_blocks_and_racks():
    c = Cluster.load(SCENARIOS / "two-rack-bgp.yaml")
    assert c.network.bgp_design == "per-rack-ebgp" and [r.tor_asn for r in c.network.racks] == [65001, 65002]
    assert c.node("node-3").rack == "rack-2"
    assert all(b.prefixlen == 26 for n in c.nodes for b in c.blocks(n.name))
    assert c.pod("web-2").ip in c.blocks("node-3")[0]


def test_existing_addresses_are_kept_and_others_fill_around_them(tmp_path):
    # As kube-controller-manager at start-up: existing podCIDRs are occupied before any is allocated,
    # so a node listed first without a podCIDR cannot take one a later node already has.
    objects = [NETWORK,
               {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "new"}},
               {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "old"}, "spec": {"podCIDR": "10.244.0.0/24"}},
               {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "fresh"}, "spec": {"nodeName": "old"}},
               {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "kept"}, "spec": {"nodeName": "old"},
                "status": {"podIP": "10.244.0.2"}}]
    c = Cluster.from_objects(objects)
    assert c.node("new").pod_cidr == net("10.244.1.0/24")
    assert c.pod("kept").ip == ip("10.244.0.2") and c.pod("fresh").ip == ip("10.244.0.3")


def test_real_kubectl_dump_loads(tmp_path):
    """A trimmed but verbatim-shaped `kubectl get nodes,pods,svc,endpointslices -A -o json` dump."""
    dump = {
        "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": "kind-control-plane", "uid": "3b5e", "labels": {"kubernetes.io/os": "linux"},
                          "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock"}},
             "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "kind://docker/kind/kind-control-plane",
                      "taints": [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]},
             "status": {"addresses": [{"address": "172.18.0.2", "type": "InternalIP"},
                                      {"address": "kind-control-plane", "type": "Hostname"}],
                        "capacity": {"cpu": "8", "pods": "110"}, "nodeInfo": {"kubeletVersion": "v1.34.0"}}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "coredns-674b8bbfcf-8xk2p", "namespace": "kube-system",
                          "labels": {"k8s-app": "kube-dns", "pod-template-hash": "674b8bbfcf"},
                          "ownerReferences": [{"kind": "ReplicaSet", "name": "coredns-674b8bbfcf"}]},
             "spec": {"nodeName": "kind-control-plane", "containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0",
                      "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}]}]},
             "status": {"phase": "Running", "podIP": "10.244.0.3", "podIPs": [{"ip": "10.244.0.3"}], "hostIP": "172.18.0.2",
                        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "kube-proxy-x7k2q", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
             "spec": {"nodeName": "kind-control-plane", "hostNetwork": True, "containers": [{"name": "kube-proxy"}]},
             "status": {"phase": "Running", "podIP": "172.18.0.2", "podIPs": [{"ip": "172.18.0.2"}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
             "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "internalTrafficPolicy": "Cluster",
                      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                      "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                      "sessionAffinity": "None", "type": "ClusterIP"}, "status": {"loadBalancer": {}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
             "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                      "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
                      "selector": {"k8s-app": "kube-dns"}, "sessionAffinity": "None", "type": "ClusterIP"}},
            {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "endpoints": [{"addresses": ["172.18.0.2"], "conditions": {"ready": True}}],
             "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/skip-mirror": "true"}},
             "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
            {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "endpoints": [{"addresses": ["10.244.0.3"], "conditions": {"ready": True, "serving": True, "terminating": False},
                            "nodeName": "kind-control-plane",
                            "targetRef": {"kind": "Pod", "name": "coredns-674b8bbfcf-8xk2p", "namespace": "kube-system"}}],
             "metadata": {"name": "kube-dns-6xq4v", "namespace": "kube-system",
                          "labels": {"kubernetes.io/service-name": "kube-dns",
                                     "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
             "ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"},
                       {"name": "metrics", "port": 9153, "protocol": "TCP"}]},
        ],
    }
    (tmp_path / "dump.json").write_text(json.dumps(dump))
    (tmp_path / "network.yaml").write_text(yaml.safe_dump(NETWORK | {"spec": NETWORK["spec"] | {"underlay": {"subnet": "172.18.0.0/16"}}}))
    c = Cluster.load(tmp_path / "dump.json", tmp_path / "network.yaml")
    assert c.node("kind-control-plane").ip == ip("172.18.0.2")
    assert c.pod("kube-system/coredns-674b8bbfcf-8xk2p").ip == ip("10.244.0.3")
    assert c.pod("kube-proxy-x7k2q", "kube-system").ips == (ip("172.18.0.2"),)
    assert c.service("kubernetes").cluster_ip == ip("10.96.0.1")
    # The kubernetes slice is not the controller's: kept as written. kube-dns's is recomputed from the selector.
    (kubernetes,) = c.endpoint_slices("kubernetes")
    assert kubernetes.endpoints[0].address == ip("172.18.0.2") and kubernetes.ports[0].port == 6443
    (dns,) = c.endpoint_slices("kube-dns", "kube-system")
    assert dns.endpoints[0].address == ip("10.244.0.3")
    assert sorted((p.name, p.protocol, p.port) for p in dns.ports) == [
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)]


@pytest.mark.parametrize(
    "text, suffix, error, words",
    [
        ("nodes: [a, b", ".yaml", ScenarioError, "line 1"),
        ('{"kind": "List", "items": [', ".json", ScenarioError, "must be valid JSON"),
        ("- 1\n- 2\n", ".yaml", ScenarioError, "must be a Kubernetes object"),
        ("kind: Node\nmetadata: {name: a}\n", ".yaml", ScenarioError, "exactly once"),
        (yaml.safe_dump_all([NETWORK, NETWORK]), ".yaml", ScenarioError, "got 2\\)"),
        (yaml.safe_dump_all([NETWORK | {"spec": {"podCIDRs": ["10.244.0.0/16"]}}]), ".yaml", InvalidValue, "serviceCIDRs"),
        (yaml.safe_dump_all([NETWORK, {"kind": "Node", "metadata": {"name": "a"}}, {"kind": "Node", "metadata": {"name": "a"}}]),
         ".yaml", AlreadyExists, "'a'"),
        (yaml.safe_dump_all([NETWORK, {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "ghost"}}]),
         ".yaml", NotFound, "ghost"),
        (yaml.safe_dump_all([NETWORK, {"kind": "Node", "metadata": {"name": "a"}, "spec": {"podCIDR": "10.9.0.0/24"}}]),
         ".yaml", InvalidValue, "10.9.0.0/24"),
        (yaml.safe_dump_all([NETWORK, {"kind": "Node", "metadata": {}}]), ".yaml", ScenarioError, "metadata.name"),
    ],
)
def test_bad_scenarios(tmp_path, text, suffix, error, words):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(error, match=words):
        Cluster.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="must name an existing file"):
        Cluster.load(tmp_path / "nope.yaml")
