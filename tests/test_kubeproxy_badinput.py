"""``kubenet-lab proxy-rules`` with bad input: one line on stderr naming object, field and value, exit 2.

Each case is a scenario the real control plane would refuse, with the refusal
taken from it: kube-apiserver's Service validation (ports 1-65535; protocols
``TCP``, ``UDP``, ``SCTP``, case-sensitive; a valid IP as clusterIP) and its
allocators (``--service-node-port-range`` default 30000-32767, "provided port is
already allocated", "provided port is not in the valid range", "provided IP ... is
not in the valid range"). Nothing may reach stdout: a half-written ruleset piped into
``iptables-restore`` or ``nft -f`` would be worse than none.

The one object kube-proxy itself skips rather than refuses is an EndpointSlice
without the ``kubernetes.io/service-name`` label: ``endpointSliceCacheKeys`` in
``pkg/proxy/endpointslicecache.go`` returns "no kubernetes.io/service-name label set
on endpoint slice: <name>" and ``updatePending`` logs it and drops the slice. The
command does the same, with that message as a warning on stderr, and exit 0.
"""

from __future__ import annotations

import copy
import json

import pytest

from kubenet_lab.cli import main

NETWORK = {"apiVersion": "kubenet-lab.io/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "lab"},
           "spec": {"podCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/12"]}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.11"}]}}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
       "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
       "status": {"podIP": "10.244.0.5"}}


def service(name: str = "web", **spec) -> dict:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    obj["spec"].update(spec)
    return obj


def node_port(number, name: str = "http", port: int = 80) -> dict:
    return {"name": name, "port": port, "targetPort": 8080, "protocol": "TCP", "nodePort": number}


def proxy_rules(tmp_path, capsys, text: str, suffix: str = ".json") -> tuple[int, str, str]:
    path = tmp_path / f"scenario{suffix}"
    path.write_text(text)
    code = main(["proxy-rules", str(path), "--node", "node-1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scenario(*objects) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [NETWORK, NODE, POD, *objects]})


def assert_refused(result, *words) -> None:
    code, out, err = result
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kubenet-lab: error: "), err
    for word in words:
        assert word in err, err


def test_a_good_scenario_prints_the_rules(tmp_path, capsys):
    code, out, err = proxy_rules(tmp_path, capsys, scenario(service()))
    assert code == 0 and err == "" and "-j DNAT --to-destination 10.244.0.5:8080" in out


def test_malformed_json(tmp_path, capsys):
    text = scenario(service())[:-2]  # the List's closing brackets cut off
    assert_refused(proxy_rules(tmp_path, capsys, text), "scenario.json", "'line 1 column", "must be valid JSON")


def test_malformed_yaml(tmp_path, capsys):
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web\nspec: {}\n"  # the flow mapping is never closed
    assert_refused(proxy_rules(tmp_path, capsys, text, ".yaml"), "scenario.yaml", "'line 4 column",
                   "must be valid YAML")


def test_yaml_that_is_not_an_object(tmp_path, capsys):
    assert_refused(proxy_rules(tmp_path, capsys, "- a\n- b\n", ".yaml"), "'document 1'",
                   "must be a Kubernetes object", "['a', 'b']")


@pytest.mark.parametrize("number", [0, 65536, -1])
def test_service_port_out_of_range(tmp_path, capsys, number):
    svc = service(ports=[{"name": "http", "port": number, "protocol": "TCP"}])
    assert_refused(proxy_rules(tmp_path, capsys, scenario(svc)), "Service shop/web", "'spec.ports[0].port'",
                   "from 1 to 65535", f"(got {number})")


def test_nodeport_taken_by_another_service(tmp_path, capsys):
    first = service(type="NodePort", ports=[node_port(30080)])
    second = service("web2", type="NodePort", ports=[node_port(30080)])
    assert_refused(proxy_rules(tmp_path, capsys, scenario(first, second)), "Service shop/web2",
                   "'spec.ports[0].nodePort'", "(got 30080)", "[provided port is already allocated]")


def test_nodeport_twice_in_one_service(tmp_path, capsys):
    svc = service(type="NodePort", ports=[node_port(30080), node_port(30080, "http-alt", 81)])
    assert_refused(proxy_rules(tmp_path, capsys, scenario(svc)), "Service shop/web", "'spec.ports[1].nodePort'",
                   "(got 30080)", "already allocated")


@pytest.mark.parametrize("number", [80, 29999, 32768, 40000])
def test_nodeport_outside_the_range(tmp_path, capsys, number):
    svc = service(type="LoadBalancer", ports=[node_port(number)])
    assert_refused(proxy_rules(tmp_path, capsys, scenario(svc)), "Service shop/web", "'spec.ports[0].nodePort'",
                   "30000-32767", f"(got {number})", "[provided port is not in the valid range]")


@pytest.mark.parametrize("protocol", ["ICMP", "tcp", "HTTP"])
def test_unknown_protocol(tmp_path, capsys, protocol):
    svc = service(ports=[{"name": "http", "port": 80, "protocol": protocol}])
    assert_refused(proxy_rules(tmp_path, capsys, scenario(svc)), "Service shop/web", "'spec.ports[0].protocol'",
                   "TCP, UDP, SCTP", f"(got '{protocol}')")


@pytest.mark.parametrize("address", ["10.96.0.300", "banana", "10.96.0.0/12"])
def test_cluster_ip_that_is_not_an_address(tmp_path, capsys, address):
    assert_refused(proxy_rules(tmp_path, capsys, scenario(service(clusterIP=address))), "Service shop/web",
                   "'spec.clusterIPs'", "must be an IPv4 or IPv6 address", f"(got '{address}')")


def test_cluster_ip_outside_the_service_cidr(tmp_path, capsys):
    assert_refused(proxy_rules(tmp_path, capsys, scenario(service(clusterIP="192.168.5.5"))), "Service shop/web",
                   "'spec.clusterIPs'", "10.96.0.0/12", "(got '192.168.5.5')", "is not in the valid range")


def test_cluster_ip_taken_by_another_service(tmp_path, capsys):
    text = scenario(service(clusterIP="10.96.0.20"), service("web2", clusterIP="10.96.0.20"))
    assert_refused(proxy_rules(tmp_path, capsys, text), "Service shop/", "'spec.clusterIPs'", "(got '10.96.0.20')")


# -- what kube-proxy ignores: the same, and a warning ----------------------------------------------

SELECTORLESS = service("ext", selector=None, clusterIP="10.96.0.30")
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "ext-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "ext"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["192.168.50.7"]}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def test_endpoint_slice_without_the_service_name_label_is_ignored_with_a_warning(tmp_path, capsys):
    code, with_label, err = proxy_rules(tmp_path, capsys, scenario(SELECTORLESS, SLICE))
    assert code == 0 and err == "" and "--to-destination 192.168.50.7:8080" in with_label
    unlabelled = copy.deepcopy(SLICE)
    del unlabelled["metadata"]["labels"]
    code, out, err = proxy_rules(tmp_path, capsys, scenario(SELECTORLESS, unlabelled))
    # kube-proxy drops the slice: the Service has no endpoints, exactly as if the slice were absent
    _, without_slice, _ = proxy_rules(tmp_path, capsys, scenario(SELECTORLESS))
    assert code == 0 and out == without_slice and '"shop/ext:http has no endpoints"' in out
    assert err.count("\n") == 1 and err.startswith("kubenet-lab: warning: EndpointSlice shop/ext-1: ")
    assert "'metadata.labels[kubernetes.io/service-name]'" in err
    assert "[no kubernetes.io/service-name label set on endpoint slice: ext-1]" in err


def test_an_unlabelled_slice_round_trips_unlabelled(tmp_path):
    from kubenet_lab.scenario import cluster_from_objects, cluster_to_objects

    unlabelled = copy.deepcopy(SLICE)
    del unlabelled["metadata"]["labels"]
    cluster = cluster_from_objects(json.loads(scenario(SELECTORLESS, unlabelled))["items"])
    written = [o for o in cluster_to_objects(cluster) if o["metadata"]["name"] == "ext-1"]
    assert [o["metadata"].get("labels") for o in written] == [None]
    assert cluster.kube_proxy("node-1").state(4).endpoints == {}
