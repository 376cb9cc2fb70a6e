"""Tables in kubectl's look: plain text for the CLI, HTML for notebooks.

A :class:`Table` is a value: a title, column headers and rows of strings. It
renders itself as aligned text (the way ``kubectl get -o wide`` prints, two
spaces between columns) or as an HTML table for a notebook cell.

>>> t = Table("Nodes", ("NAME", "INTERNAL-IP"), (("node-1", "192.168.0.11"),))
>>> print(t.text())
Nodes
NAME    INTERNAL-IP
node-1  192.168.0.11
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import Cluster
    from .objects import Service

__all__ = ["Table", "cluster_tables", "service_ports_text"]


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h) for i, h in enumerate(self.headers)]
        lines = [self.title]
        for row in (self.headers, *self.rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'><code>{html.escape(c)}</code></td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return (f"<table><caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


def _join(values: Sequence[object], empty: str = "<none>") -> str:
    return ",".join(str(v) for v in values) if values else empty


def service_ports_text(service: Service) -> str:
    """PORT(S) as kubectl prints it: ``80/TCP``, ``80:30080/TCP``, comma-separated."""
    parts = []
    for sp in service.ports:
        number = f"{sp.port}:{sp.node_port}" if sp.node_port else str(sp.port)
        parts.append(f"{number}/{sp.protocol}")
    return ",".join(parts)


def cluster_tables(cluster: Cluster) -> dict[str, Table]:
    """The Nodes, Pods and Services tables of a cluster."""
    nodes = tuple(
        (n.name, _join(n.ips), _join(n.pod_cidrs, "<calico blocks>" if cluster.block_ipam else "<none>"),
         n.rack or "-", str(len(cluster.pods_on(n.name))))
        for n in cluster.nodes
    )
    pods = tuple(
        (p.namespace, p.name, _join(p.ips), p.node or "<pending>",
         _join([f"{k}={v}" for k, v in sorted(p.labels.items())]))
        for p in cluster.pods
    )
    services = []
    for s in cluster.services:
        endpoints = sorted({str(e.address) for sl in cluster.endpoint_slices(s) for e in sl.endpoints if e.ready},
                           key=lambda a: (":" in a, a))
        external = _join([*s.load_balancer_ips, *s.external_ips], "<pending>" if s.type == "LoadBalancer" else "<none>")
        services.append((s.namespace, s.name, s.type, "None" if s.headless else _join(s.cluster_ips), external,
                         service_ports_text(s), _join(endpoints)))
    return {
        "nodes": Table("Nodes", ("NAME", "INTERNAL-IP", "POD-CIDRS", "RACK", "PODS"), nodes),
        "pods": Table("Pods", ("NAMESPACE", "NAME", "IP", "NODE", "LABELS"), pods),
        "services": Table("Services", ("NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "ENDPOINTS"),
                          tuple(services)),
    }
