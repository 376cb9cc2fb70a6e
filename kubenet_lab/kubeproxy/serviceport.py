"""Service ports as kube-proxy sees them: one VIP:port per Service port and IP family.

kube-proxy never programs "a Service"; it programs *service ports*. Each entry
of ``spec.ports`` becomes one :class:`ServicePortInfo` per IP family (the
``ServicePortMap`` of ``pkg/proxy/serviceport.go``), named
``namespace/name:port-name`` and keyed with the protocol, so a DNS Service with
``dns`` (UDP 53) and ``dns-tcp`` (TCP 53) is two independent load-balanced
VIP:ports. What each one carries, in load-balancer terms:

* the **VIP**: the ClusterIP of this family, and the port;
* **external VIPs**: ``spec.externalIPs`` and the LoadBalancer ingress IPs
  (``status.loadBalancer.ingress[].ip``) of this family;
* a **static PAT** port on every node: ``nodePort`` (0 = none);
* an **ACL**: ``spec.loadBalancerSourceRanges`` of this family;
* **stickiness**: ``sessionAffinity: ClientIP`` and its timeout (10800 s by default);
* the **traffic policies**: ``externalTrafficPolicy: Local`` keeps external
  clients on this node's endpoints (and their source address);
  ``internalTrafficPolicy: Local`` does the same for ClusterIP traffic.

Headless and ExternalName Services, and Services without a ClusterIP of the
family, get no service ports at all.

>>> from kubenet_lab.objects import Service, ServicePort
>>> import ipaddress
>>> svc = Service(name="svc1", namespace="ns1", ports=(ServicePort(80, 80, name="p80"),),
...               cluster_ips=(ipaddress.ip_address("172.30.0.41"),))
>>> [str(sp.name) for sp in service_ports(svc, 4, {}, [])], service_ports(svc, 6, {}, [])
(['ns1/svc1:p80'], ())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..addresses import IPAddress, IPNetwork, parse_port
from ..errors import InvalidValue
from ..objects import Service

__all__ = ["ServicePortName", "ServicePortInfo", "Ignored", "service_ports", "DEFAULT_STICKY_SECONDS", "PROTOCOLS"]

# spec.sessionAffinityConfig.clientIP.timeoutSeconds default (DefaultClientIPServiceAffinitySeconds).
DEFAULT_STICKY_SECONDS = 10800
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class Ignored:
    """Something kube-proxy skips and logs instead of programming (the CLI prints these as warnings).

    ``upstream`` is kube-proxy's own log message, so it can be found in its logs.
    """

    obj: str
    field: str
    value: object
    reason: str
    upstream: str

    def __str__(self) -> str:
        return f"{self.obj}: '{self.field}' {self.reason} (got {self.value!r}) [{self.upstream}]"


@dataclass(frozen=True)
class ServicePortName:
    """kube-proxy's ``ServicePortName``: namespace, Service name, port name and protocol.

    Its string form, ``namespace/name`` plus ``:port-name`` for a named port, is
    what appears in every rule comment and is hashed into the chain names.

    >>> str(ServicePortName("ns1", "svc1", "p80", "TCP")), str(ServicePortName("ns1", "svc1", "", "TCP"))
    ('ns1/svc1:p80', 'ns1/svc1')
    """

    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}" if self.port else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePortInfo:
    """One service port of one family, as kube-proxy's ``BaseServicePortInfo`` holds it."""

    name: ServicePortName
    cluster_ip: IPAddress
    port: int
    node_port: int = 0
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_vips: tuple[IPAddress, ...] = ()
    load_balancer_source_ranges: tuple[IPNetwork, ...] = ()
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def protocol(self) -> str:
        """Lower-case protocol, as iptables spells it (``tcp``, ``udp``, ``sctp``)."""
        return self.name.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        """Reachable from outside the cluster: a NodePort, an LB VIP or an externalIP."""
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Needs the cluster-wide pool: iTP Cluster, or any external access (for the pod short circuit)."""
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        """Needs this node's pool: iTP Local, or eTP Local with external access."""
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


def _check_port(obj: str, field: str, value: object, allow_zero: bool = False) -> int:
    if allow_zero and (value is None or (value == 0 and not isinstance(value, bool))):
        return 0
    return parse_port(value, obj=obj, field=field)


def service_ports(service: Service, family: int, health_check_node_ports: Mapping[str, int],
                  ignored: list[Ignored]) -> tuple[ServicePortInfo, ...]:
    """The service ports kube-proxy builds for ``service`` in IP ``family`` (``serviceToServiceMap``).

    ``health_check_node_ports`` maps ``namespace/name`` to ``spec.healthCheckNodePort``
    (the API server allocates one for each LoadBalancer Service with
    ``externalTrafficPolicy: Local``). What kube-proxy would log and skip is
    appended to ``ignored``; objects the API server would have rejected raise
    :class:`~kubenet_lab.errors.InvalidValue`.
    """
    obj = f"Service {service.key}"
    if service.headless or service.type == "ExternalName":
        return ()
    cluster_ip = next((ip for ip in service.cluster_ips if ip.version == family), None)
    if cluster_ip is None:
        return ()
    externally_accessible = service.type in ("LoadBalancer", "NodePort") or (
        service.type == "ClusterIP" and bool(service.external_ips))
    external_policy_local = externally_accessible and service.external_traffic_policy == "Local"
    affinity = service.session_affinity == "ClientIP"
    sticky = (service.session_affinity_timeout or DEFAULT_STICKY_SECONDS) if affinity else 0
    health_check = 0
    if service.type == "LoadBalancer" and external_policy_local:
        health_check = _check_port(obj, "spec.healthCheckNodePort", health_check_node_ports.get(service.key),
                                   allow_zero=True)
        if health_check == 0:
            ignored.append(Ignored(obj, "spec.healthCheckNodePort", 0,
                                   "is unset, so kube-proxy writes no health-check ACCEPT rule",
                                   "Service has no healthcheck nodeport"))
    common = dict(
        cluster_ip=cluster_ip,
        external_ips=tuple(ip for ip in service.external_ips if ip.version == family),
        load_balancer_vips=tuple(ip for ip in service.load_balancer_ips if ip.version == family),
        load_balancer_source_ranges=tuple(c for c in service.load_balancer_source_ranges if c.version == family),
        session_affinity_client_ip=affinity,
        sticky_max_age_seconds=sticky,
        external_policy_local=external_policy_local,
        internal_policy_local=service.internal_traffic_policy == "Local",
        health_check_node_port=health_check,
    )
    result = []
    seen = set()
    for i, sp in enumerate(service.ports):
        if sp.protocol not in PROTOCOLS:
            raise InvalidValue(obj, f"spec.ports[{i}].protocol", sp.protocol, f"must be one of {', '.join(PROTOCOLS)}")
        name = ServicePortName(service.namespace, service.name, sp.name or "", sp.protocol)
        if name in seen:
            raise InvalidValue(obj, f"spec.ports[{i}].name", sp.name, "must be unique within the Service")
        seen.add(name)
        result.append(ServicePortInfo(
            name=name,
            port=_check_port(obj, f"spec.ports[{i}].port", sp.port),
            node_port=_check_port(obj, f"spec.ports[{i}].nodePort", sp.node_port, allow_zero=True),
            **common,
        ))
    return tuple(result)
