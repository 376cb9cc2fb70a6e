"""Scenario files: Kubernetes objects in, Kubernetes objects out.

A scenario is what ``kubectl get nodes,pods,services,endpointslices -A -o
json`` prints (a ``List``), or the same objects as a multi-document YAML
stream, plus exactly one ``kubenet-lab.io/v1alpha1 ClusterNetwork`` object
with the cluster-wide settings (:mod:`kubenet_lab.network`). Fields the model
does not use are ignored, so a dump of a real cluster loads as it is.

Reading follows the order the real controllers rebuild their state in:
objects that already carry addresses (a node's ``spec.podCIDRs``, a pod's
``status.podIPs``, a Service's ``spec.clusterIPs``) are registered first, as
kube-controller-manager occupies existing node CIDRs at start-up, and only
then are addresses handed out to the objects that lack them.
EndpointSlices of the EndpointSlice controller are recomputed from the
selectors; any other slice is kept as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import InvalidValue, ScenarioError
from .network import API_VERSION, KIND, ClusterNetwork
from .objects import ContainerPort, Endpoint, EndpointPort, EndpointSlice
from .addresses import parse_address

if TYPE_CHECKING:
    from .cluster import Cluster

CONTROLLER = "endpointslice-controller.k8s.io"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME = "kubernetes.io/service-name"
# Written for terminating pods; only its presence matters to the EndpointSlice controller.
DELETION_TIMESTAMP = "1970-01-01T00:00:00Z"

__all__ = ["read_objects", "write_objects", "cluster_from_objects", "cluster_to_objects"]


# -- reading files ---------------------------------------------------------------------------


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """The Kubernetes objects in a JSON or YAML file, with ``List`` objects flattened."""
    path = Path(path)
    where = f"scenario {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(where, "path", str(path), "must name an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(where, "path", str(path), f"must be a readable UTF-8 text file ({exc.__class__.__name__})") from None
    try:
        if path.suffix.lower() == ".json":
            documents = [json.loads(text)]
        else:
            documents = list(yaml.safe_load_all(text))
    except json.JSONDecodeError as exc:
        raise ScenarioError(where, f"line {exc.lineno} column {exc.colno}", exc.msg, "must be valid JSON") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(where, at, problem, "must be valid YAML") from None
    objects: list[dict[str, Any]] = []
    for number, document in enumerate(documents):
        _flatten(where, f"document {number + 1}", document, objects)
    return objects


def _flatten(where: str, field: str, document: object, out: list[dict[str, Any]], kind: str | None = None) -> None:
    if document is None:
        return
    if not isinstance(document, Mapping):
        raise ScenarioError(where, field, document, "must be a Kubernetes object (a mapping with apiVersion and kind)")
    document = dict(document)
    if kind and "kind" not in document:
        document["kind"] = kind  # items of a typed list (NodeList) carry no kind of their own
    if str(document.get("kind", "")).endswith("List") and "items" in document:
        items = document["items"] or []
        if not isinstance(items, list):
            raise ScenarioError(where, f"{field}.items", items, "must be a list of objects")
        item_kind = document["kind"][:-4] or None
        for i, item in enumerate(items):
            _flatten(where, f"{field}.items[{i}]", item, out, item_kind)
        return
    out.append(document)


def write_objects(objects: list[dict[str, Any]], path: str | Path) -> Path:
    """Write objects as a YAML stream (``.yaml``, ``.yml``) or a JSON ``List``."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False), encoding="utf-8")
    else:
        document = {"apiVersion": "v1", "kind": "List", "items": objects}
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


# -- objects to cluster ------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any], kind: str) -> str:
    name = _meta(obj).get("name")
    if not name:
        raise ScenarioError(f"{kind} object", "metadata.name", name, "must be set")
    return name


def cluster_from_objects(objects: list[dict[str, Any]]) -> Cluster:
    """Build a Cluster from parsed objects; kinds the model does not know are ignored."""
    from .cluster import Cluster

    networks = [o for o in objects if o.get("kind") == KIND and str(o.get("apiVersion", "")).startswith("kubenet-lab.io/")]
    if len(networks) != 1:
        raise ScenarioError("scenario", f"kind: {KIND}", len(networks),
                            f"must appear exactly once ({API_VERSION}), holding the cluster-wide network settings")
    cluster = Cluster.from_network(ClusterNetwork.from_object(networks[0]))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind"), []).append(obj)

    nodes = by_kind.get("Node", [])
    for node in sorted(nodes, key=lambda n: not _node_pod_cidrs(n)):  # occupy before allocate
        spec, status = node.get("spec") or {}, node.get("status") or {}
        ips = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
        cluster.add_node(_name(node, "Node"), ips or None, pod_cidr=_node_pod_cidrs(node) or None,
                         labels=_meta(node).get("labels"))

    pods = by_kind.get("Pod", [])
    for pod in sorted(pods, key=lambda p: not _pod_ips(p)):
        _add_pod(cluster, pod)

    services = [s for s in by_kind.get("Service", []) if (s.get("spec") or {}).get("type") != "ExternalName"]
    for service in sorted(services, key=lambda s: not _cluster_ips(s)):
        _add_service(cluster, service)

    for endpoint_slice in by_kind.get("EndpointSlice", []):
        labels = _meta(endpoint_slice).get("labels") or {}
        if labels.get(MANAGED_BY) != CONTROLLER:
            cluster.add_endpoint_slice(_endpoint_slice(endpoint_slice))
    return cluster


def _node_pod_cidrs(node: Mapping[str, Any]) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


def _pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    if (pod.get("spec") or {}).get("hostNetwork"):
        return []
    return [entry.get("ip") for entry in status.get("podIPs") or []] or ([status["podIP"]] if status.get("podIP") else [])


def _add_pod(cluster: Cluster, pod: Mapping[str, Any]) -> None:
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    ports = [
        ContainerPort(port=p.get("containerPort"), name=p.get("name"), protocol=p.get("protocol") or "TCP")
        for container in spec.get("containers") or []
        for p in container.get("ports") or []
    ]
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    cluster.add_pod(
        _name(pod, "Pod"),
        spec.get("nodeName"),
        namespace=meta.get("namespace") or "default",
        labels=meta.get("labels"),
        ip=_pod_ips(pod) or None,
        ports=ports,
        ready=conditions.get("Ready", "True") == "True",
        terminating=bool(meta.get("deletionTimestamp")),
        host_network=bool(spec.get("hostNetwork")),
        phase=status.get("phase") or "Running",
    )


def _cluster_ips(service: Mapping[str, Any]) -> list[str]:
    spec = service.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip != "None"]


def _add_service(cluster: Cluster, service: Mapping[str, Any]) -> None:
    meta, spec, status = _meta(service), service.get("spec") or {}, service.get("status") or {}
    affinity = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    kind = spec.get("type") or "ClusterIP"
    cluster.add_service(
        _name(service, "Service"),
        namespace=meta.get("namespace") or "default",
        selector=spec.get("selector"),
        ports=spec.get("ports") or [],
        type=kind,
        cluster_ip=_cluster_ips(service) or None,
        headless=spec.get("clusterIP") == "None",
        ip_families=spec.get("ipFamilies"),
        ip_family_policy=spec.get("ipFamilyPolicy") or "SingleStack",
        external_traffic_policy=spec.get("externalTrafficPolicy") or "Cluster",
        internal_traffic_policy=spec.get("internalTrafficPolicy") or "Cluster",
        session_affinity=spec.get("sessionAffinity") or "None",
        session_affinity_timeout=affinity,
        external_ips=spec.get("externalIPs") or (),
        load_balancer_ips=[i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")],
        load_balancer_source_ranges=spec.get("loadBalancerSourceRanges") or (),
        publish_not_ready_addresses=bool(spec.get("publishNotReadyAddresses")),
        labels=meta.get("labels"),
        health_check_node_port=spec.get("healthCheckNodePort"),
    )


def _endpoint_slice(obj: Mapping[str, Any]) -> EndpointSlice:
    meta = _meta(obj)
    name = _name(obj, "EndpointSlice")
    where = f"EndpointSlice {meta.get('namespace') or 'default'}/{name}"
    labels = meta.get("labels") or {}
    # Without the label the slice belongs to no Service: kube-proxy's EndpointSliceCache logs "no
    # kubernetes.io/service-name label set on endpoint slice" and ignores it, so it is kept with no Service
    # (service "") and the kube-proxy model skips it with that warning.
    address_type = obj.get("addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise InvalidValue(where, "addressType", address_type, "must be IPv4, IPv6 or FQDN")
    endpoints = []
    for i, entry in enumerate(obj.get("endpoints") or []):
        conditions = entry.get("conditions") or {}
        # Unset conditions read as kube-proxy reads them: ready and serving unless false, terminating only if true.
        endpoints.append(Endpoint(
            addresses=tuple(parse_address(a, obj=where, field=f"endpoints[{i}].addresses") for a in entry.get("addresses") or []),
            ready=conditions.get("ready") is not False,
            serving=conditions.get("serving") is not False,
            terminating=conditions.get("terminating") is True,
            node_name=entry.get("nodeName"),
            target_pod=(entry.get("targetRef") or {}).get("name"),
        ))
    ports = tuple(EndpointPort(port=p.get("port"), name=p.get("name"), protocol=p.get("protocol") or "TCP")
                  for p in obj.get("ports") or [])
    return EndpointSlice(name=name, service=labels.get(SERVICE_NAME) or "", namespace=meta.get("namespace") or "default",
                         address_type=address_type, endpoints=tuple(endpoints), ports=ports,
                         managed_by=labels.get(MANAGED_BY, ""))


# -- cluster to objects ------------------------------------------------------------------


def _metadata(name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def cluster_to_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """The ClusterNetwork, then Nodes, Pods, Services and EndpointSlices, as ``kubectl -o json`` shapes."""
    objects = [cluster.network.to_object()]
    for node in cluster.nodes:
        spec = {"podCIDR": str(node.pod_cidr), "podCIDRs": [str(c) for c in node.pod_cidrs]} if node.pod_cidrs else {}
        objects.append({
            "apiVersion": "v1", "kind": "Node", "metadata": _metadata(node.name, labels=node.labels), "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": str(a)} for a in node.ips]},
        })
    for pod in cluster.pods:
        meta = _metadata(pod.name, pod.namespace, pod.labels)
        if pod.terminating:
            meta["deletionTimestamp"] = DELETION_TIMESTAMP
        spec: dict[str, Any] = {}
        if pod.node:
            spec["nodeName"] = pod.node
        if pod.host_network:
            spec["hostNetwork"] = True
        container: dict[str, Any] = {"name": "app"}
        if pod.ports:
            container["ports"] = [{**({"name": p.name} if p.name else {}), "containerPort": p.port, "protocol": p.protocol}
                                  for p in pod.ports]
        spec["containers"] = [container]
        status: dict[str, Any] = {"phase": pod.phase,
                                  "conditions": [{"type": "Ready", "status": "True" if pod.ready else "False"}]}
        if pod.ips:
            status["podIP"] = str(pod.ip)
            status["podIPs"] = [{"ip": str(a)} for a in pod.ips]
        objects.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
    for service in cluster.services:
        objects.append(_service_object(service))
    for endpoint_slice in cluster.endpoint_slices():
        objects.append(_endpoint_slice_object(endpoint_slice))
    return objects


def _service_object(service) -> dict[str, Any]:
    ports = []
    for sp in service.ports:
        port: dict[str, Any] = {"name": sp.name} if sp.name else {}
        port.update({"protocol": sp.protocol, "port": sp.port, "targetPort": sp.target_port})
        if sp.node_port is not None:
            port["nodePort"] = sp.node_port
        ports.append(port)
    spec: dict[str, Any] = {"type": service.type}
    if service.selector is not None:
        spec["selector"] = dict(service.selector)
    spec["ports"] = ports
    if service.headless:
        spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
    else:
        spec["clusterIP"], spec["clusterIPs"] = str(service.cluster_ip), [str(a) for a in service.cluster_ips]
    spec["ipFamilies"] = list(service.ip_families)
    spec["ipFamilyPolicy"] = service.ip_family_policy
    if service.type != "ClusterIP" or service.external_ips:
        spec["externalTrafficPolicy"] = service.external_traffic_policy
    spec["internalTrafficPolicy"] = service.internal_traffic_policy
    spec["sessionAffinity"] = service.session_affinity
    if service.session_affinity_timeout is not None:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": service.session_affinity_timeout}}
    if service.external_ips:
        spec["externalIPs"] = [str(a) for a in service.external_ips]
    if service.load_balancer_source_ranges:
        spec["loadBalancerSourceRanges"] = [str(r) for r in service.load_balancer_source_ranges]
    if service.publish_not_ready_addresses:
        spec["publishNotReadyAddresses"] = True
    if service.health_check_node_port is not None:
        spec["healthCheckNodePort"] = service.health_check_node_port
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                           "metadata": _metadata(service.name, service.namespace, service.labels), "spec": spec}
    if service.load_balancer_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": str(a)} for a in service.load_balancer_ips]}}
    return obj


def _endpoint_slice_object(endpoint_slice: EndpointSlice) -> dict[str, Any]:
    labels = {SERVICE_NAME: endpoint_slice.service} if endpoint_slice.service else {}  # an unlabelled slice stays so
    if endpoint_slice.managed_by:
        labels[MANAGED_BY] = endpoint_slice.managed_by
    endpoints = []
    for e in endpoint_slice.endpoints:
        entry: dict[str, Any] = {
            "addresses": [str(a) for a in e.addresses],
            "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
        }
        if e.node_name:
            entry["nodeName"] = e.node_name
        if e.target_pod:
            entry["targetRef"] = {"kind": "Pod", "namespace": endpoint_slice.namespace, "name": e.target_pod}
        endpoints.append(entry)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": _metadata(endpoint_slice.name, endpoint_slice.namespace, labels),
        "addressType": endpoint_slice.address_type,
        "endpoints": endpoints,
        "ports": [{"name": p.name or "", "port": p.port, "protocol": p.protocol} for p in endpoint_slice.ports],
    }
