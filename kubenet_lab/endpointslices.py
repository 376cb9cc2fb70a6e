"""The EndpointSlice controller: which pods back a Service, on which port.

kube-controller-manager's EndpointSlice controller watches Services and Pods
and writes ``discovery.k8s.io/v1`` EndpointSlices; kube-proxy reads only the
slices, never the pods. Its rules, from kubernetes ``pkg/controller/endpointslice``
and ``staging/src/k8s.io/endpointslice`` (``podToEndpoint``, ``getEndpointPorts``,
``ShouldPodBeInEndpoints``):

* a pod is selected when its labels contain every ``key: value`` of the
  Service's selector and it is in the same namespace; a Service without a
  selector gets no managed slices (you write them yourself);
* a pod with no IP yet, or in phase Succeeded or Failed, is left out;
  a terminating pod stays in, with ``terminating: true``;
* ``serving`` = the pod's Ready condition; ``ready`` = serving and not
  terminating, or always true with ``publishNotReadyAddresses``;
* one slice family per entry of the Service's ``ipFamilies``, with the pod's
  address of that family;
* each Service port becomes an EndpointPort with the Service port's *name*
  and the *pod's* port number: a numeric ``targetPort`` as it is, a named one
  looked up in the pod's container ports (same name and protocol); a pod that
  lacks the named port is left out of that port. Pods whose ports resolve
  differently go to different slices;
* at most 100 endpoints per slice (``--max-endpoints-per-slice`` default).

Slice names are ``<service>-<5 characters>`` like the controller's
``generateName``; the controller's suffix is random, ours is derived from a
hash of the slice's identity so scenarios stay reproducible. The controller
does not sort endpoints; we order them by pod name, for the same reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .objects import Endpoint, EndpointPort, EndpointSlice, Pod, Service, address_type

MAX_ENDPOINTS_PER_SLICE = 100
# The characters generateName draws from (k8s.io/apimachinery/pkg/util/rand alphanums).
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

__all__ = ["selects", "endpoint_slices_for", "MAX_ENDPOINTS_PER_SLICE"]


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """Whether an equality-based label selector matches a set of labels.

    >>> selects({"app": "web"}, {"app": "web", "tier": "front"}), selects({"app": "web"}, {"app": "db"})
    (True, False)
    """
    return selector is not None and all(labels.get(k) == v for k, v in selector.items())


def _resolve_ports(service: Service, pod: Pod) -> tuple[EndpointPort, ...]:
    ports = []
    for sp in service.ports:
        if isinstance(sp.target_port, int):
            number = sp.target_port
        else:
            number = next(
                (cp.port for cp in pod.ports if cp.name == sp.target_port and cp.protocol == sp.protocol), None
            )
            if number is None:
                continue
        ports.append(EndpointPort(port=number, name=sp.name or "", protocol=sp.protocol))
    return tuple(ports)


def _slice_name(service: Service, family: str, index: int) -> str:
    digest = hashlib.sha256(f"{service.key}/{family}/{index}".encode()).digest()
    suffix = "".join(_GENERATE_NAME_ALPHABET[b % len(_GENERATE_NAME_ALPHABET)] for b in digest[:5])
    # generateName keeps the base at most 63 - 5 characters long (names.SimpleNameGenerator).
    return f"{service.name}-"[:58] + suffix


def endpoint_slices_for(service: Service, pods: Iterable[Pod]) -> tuple[EndpointSlice, ...]:
    """The EndpointSlices the controller writes for ``service`` given the cluster's ``pods``."""
    if service.selector is None:
        return ()
    chosen = sorted(
        (
            p
            for p in pods
            if p.namespace == service.namespace
            and selects(service.selector, p.labels)
            and p.ips
            and p.phase not in ("Succeeded", "Failed")
        ),
        key=lambda p: p.name,
    )
    slices = []
    for family in service.ip_families:
        groups: dict[tuple[EndpointPort, ...], list[Endpoint]] = {}
        for pod in chosen:
            address = next((ip for ip in pod.ips if address_type(ip) == family), None)
            if address is None:
                continue
            ready = service.publish_not_ready_addresses or (pod.ready and not pod.terminating)
            endpoint = Endpoint(
                addresses=(address,),
                ready=ready,
                serving=pod.ready,
                terminating=pod.terminating,
                node_name=pod.node,
                target_pod=pod.name,
            )
            groups.setdefault(_resolve_ports(service, pod), []).append(endpoint)
        if not groups:
            # The controller keeps one empty slice per family, so consumers see "no endpoints".
            groups[()] = []
        for ports, endpoints in groups.items():
            for start in range(0, max(len(endpoints), 1), MAX_ENDPOINTS_PER_SLICE):
                slices.append(
                    EndpointSlice(
                        name=_slice_name(service, family, len(slices)),
                        service=service.name,
                        namespace=service.namespace,
                        address_type=family,
                        endpoints=tuple(endpoints[start : start + MAX_ENDPOINTS_PER_SLICE]),
                        ports=ports,
                    )
                )
    return tuple(slices)
