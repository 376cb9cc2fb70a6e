"""Explorers: a chapter's drawing with a few controls in front of it.

An explorer lets a learner move one knob and watch the picture change. Each one
here is built from parts a plain notebook cell can call too, so the controls
carry no logic of their own:

* a **model**, a pure function from the controls' values to what is drawn (a
  :class:`~kubenet_lab.cluster.Cluster`, a :class:`~kubenet_lab.datapath.trace.Trace`,
  kube-proxy's chain graph);
* a **view**, the ordinary drawing functions of :mod:`kubenet_lab.viz` applied
  to that model; a chapter also calls it in a normal cell, so that a static copy
  of the notebook (and nbval, which has no browser) still shows the drawing;
* the **explorer**, ipywidgets controls wired to model and view: on every
  change the view draws afresh, and the figure is shown as PNG in an
  ``Image`` widget (text beside it in an ``HTML`` widget).

Why not ``interactive_output``? Its ``Output`` area
makes nbclient, which executes the notebooks for ``tools/refresh_notebooks.py``
and the benchmarks, answer every captured output on the kernel's shell channel
while it also waits there for the cell's reply; now and then the reply is only
seen when the cell's timeout expires (jupyter/nbclient#312). ``Image`` and
``HTML`` widgets send nothing back, and a drawing shows as it will in the browser.

========  ==============================  =========================  ===========================
chapter   controls                        model                      view
========  ==============================  =========================  ===========================
01        nodes, node mask, pods          :func:`podcidr_cluster`    :func:`draw_podcidr_view`
02        source pod, destination         ``Cluster.trace``          the Trace's table, ``draw_trace``
04        ready endpoints                 :func:`endpoints_cluster`  :func:`pool_rules`, ``draw_chain_graph``
========  ==============================  =========================  ===========================

Chapter 03's failure explorer and chapter 07's MTU explorer answer in text
instead of a drawing (:func:`text_explorer`); they live beside their models in
:mod:`kubenet_lab.viz.bgp` and :mod:`kubenet_lab.viz.mtu`. So do chapter 05's
Services slider (:func:`~kubenet_lab.viz.services.rules_per_packet_explorer`) and
chapter 06's edge explorer (:func:`~kubenet_lab.exercises.ch06.edge_explorer`),
both wired with :func:`_wire`.

>>> c = podcidr_cluster(nodes=5, node_mask=26)
>>> [str(n.pod_cidr) for n in c.nodes][-2:]   # slot 4 of /26s starts the next /24
['10.244.0.192/26', '10.244.1.0/26']
>>> for rule in pool_rules(endpoints_graph(endpoints_cluster(2))):
...     print(rule)
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.109.131.193 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-QA4PSDNF5R2OJOPA
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.2:8080" -j KUBE-SEP-UIQK3OSOSTRHRPBX
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidValue
from .services import chain_graph, draw_chain_graph
from .topology import draw_address_map, draw_topology
from .walk import draw_trace

if TYPE_CHECKING:
    import networkx as nx

    from ..cluster import Cluster

__all__ = ["podcidr_cluster", "draw_podcidr_view", "podcidr_explorer", "walk_explorer", "endpoints_cluster",
           "endpoints_graph", "pool_rules", "draw_endpoints_view", "endpoints_explorer"]

# Chapter 01's explorer: the node masks it offers, and its upper bounds (wider drawings stop being readable).
NODE_MASKS = (22, 23, 24, 25, 26, 27, 28)
MAX_NODES = 6
MAX_PODS_PER_NODE = 2
# Chapter 04's explorer: the nodes its endpoints are spread over, and the most it offers.
SERVICE_NODES = ("node-1", "node-2", "node-3")
MAX_ENDPOINTS = 8


def _png(figure) -> bytes:
    """The figure as PNG bytes, cropped as the inline backend crops it; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _wire(render, controls: dict, rows, *, text: bool = False, figure: bool = True) -> object:
    """An ipywidgets box: ``controls`` laid out in ``rows`` (lists of their names), then, when
    ``text``, an HTML area, then, when ``figure``, the figure. ``render(**values)`` returns
    ``(html, figure or None)`` and runs once now and again whenever a control changes."""
    import ipywidgets as widgets

    html = widgets.HTML()
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto")) if figure else None

    def update(_change=None):
        html.value, drawn = render(**{name: control.value for name, control in controls.items()})
        if image is not None:
            image.value = _png(drawn)

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return widgets.VBox([*(widgets.HBox([controls[name] for name in row]) for row in rows),
                         *([html] if text else []), *([image] if image is not None else [])])


def text_explorer(show, controls: dict, rows) -> object:
    """An ipywidgets box whose answer is text: ``controls`` laid out in ``rows``, then what
    ``show(**values)`` returns: a :class:`~kubenet_lab.tables.Table` as its HTML table, anything
    else preformatted (as a terminal would print it)."""
    import html

    def render(**values):
        answer = show(**values)
        return (answer.html() if hasattr(answer, "html") else f"<pre>{html.escape(str(answer))}</pre>"), None

    return _wire(render, controls, rows, text=True, figure=False)


# -- chapter 01: a podCIDR per node ----------------------------------------------------------------

def podcidr_cluster(nodes: int = 3, node_mask: int = 24, pods_per_node: int = 1, *,
                    pod_cidr: str = "10.244.0.0/16") -> Cluster:
    """A flannel cluster on one L2 segment: ``nodes`` nodes join in order (node-1, node-2, ...),
    kube-controller-manager cuts ``pod_cidr`` at ``--node-cidr-mask-size=node_mask``, and each
    node runs ``pods_per_node`` pods (web-1, web-2, ... numbered across the cluster) that
    host-local addresses from its podCIDR. Chapter 01.
    """
    from ..cluster import Cluster

    if not 1 <= nodes <= MAX_NODES:
        raise InvalidValue("podcidr_cluster", "nodes", nodes, f"must be 1 to {MAX_NODES}")
    if not 0 <= pods_per_node <= MAX_PODS_PER_NODE:
        raise InvalidValue("podcidr_cluster", "pods_per_node", pods_per_node, f"must be 0 to {MAX_PODS_PER_NODE}")
    cluster = Cluster(pod_cidr=pod_cidr, node_mask=node_mask, node_subnet="192.168.0.0/24")
    for i in range(1, nodes + 1):
        cluster.add_node(f"node-{i}")
    for j in range(pods_per_node):
        for i in range(1, nodes + 1):
            cluster.add_pod(f"web-{j * nodes + i}", node=f"node-{i}")
    return cluster


def draw_podcidr_view(cluster: Cluster, *, title: str | None = None):
    """The cluster as chapter 01 draws it: the topology (nodes with their podCIDRs, pods with their
    addresses) above the address map of the cluster CIDR; return the Figure."""
    import matplotlib.pyplot as plt

    from .style import apply_style

    apply_style()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8.5), gridspec_kw={"height_ratios": [3, 1.3], "hspace": 0.45})
    mask = cluster.network.node_mask(cluster.network.families[0])
    draw_topology(cluster, ax=top, title=title or (
        f"{len(cluster.nodes)} nodes on one L2 segment (one big VLAN), a /{mask} podCIDR each"))
    draw_address_map(cluster, ax=bottom, title=f"Who holds which /{mask} of {cluster.network.pod_cidrs[0]}")
    return fig


def podcidr_explorer(nodes: int = 3, node_mask: int = 24, pods_per_node: int = 1):
    """Controls for :func:`podcidr_cluster` (a nodes slider, a ``--node-cidr-mask-size``
    dropdown, a pods-per-node slider) redrawing :func:`draw_podcidr_view`."""
    import ipywidgets as widgets

    controls = {
        "nodes": widgets.IntSlider(value=nodes, min=1, max=MAX_NODES, description="nodes", continuous_update=False),
        "node_mask": widgets.Dropdown(options=[(f"/{m}", m) for m in NODE_MASKS], value=node_mask,
                                      description="node mask"),
        "pods_per_node": widgets.IntSlider(value=pods_per_node, min=0, max=MAX_PODS_PER_NODE,
                                           description="pods/node", continuous_update=False),
    }

    def render(nodes, node_mask, pods_per_node):
        return "", draw_podcidr_view(podcidr_cluster(nodes, node_mask, pods_per_node))

    return _wire(render, controls, [["nodes", "node_mask", "pods_per_node"]])


# -- chapter 02: any pod to any pod ----------------------------------------------------------------

def walk_explorer(cluster: Cluster, src: str | None = None, dst: str | None = None, **trace_options):
    """Two dropdowns, a source pod and a destination (a pod or a node), redrawing the walk
    ``cluster.trace(src, dst, **trace_options)``: its table of hops, then :func:`draw_trace`."""
    import ipywidgets as widgets

    pods = [pod.name for pod in cluster.pods]
    targets = pods + [node.name for node in cluster.nodes]
    if not pods:
        raise InvalidValue("walk_explorer", "cluster.pods", [], "must hold at least one pod to send from")
    controls = {
        "src": widgets.Dropdown(options=pods, value=src or pods[0], description="from"),
        "dst": widgets.Dropdown(options=targets, value=dst or pods[-1], description="to"),
    }

    def render(src, dst):
        walk = cluster.trace(src, dst, **trace_options)
        return walk._repr_html_(), draw_trace(walk, cluster).figure

    return _wire(render, controls, [["src", "dst"]], text=True)


# -- chapter 04: a Service's pool --------------------------------------------------------------------

def endpoints_cluster(endpoints: int = 3) -> Cluster:
    """Chapter 04's three flannel nodes, a client pod on node-1 and a Service ``web``
    (port 80 → ``targetPort: http``) whose ``endpoints`` ready pods, web-1, web-2, ..., are
    spread over the nodes in turn, each serving ``http`` on 8080; with three, chapter 04's
    addresses. With 0 endpoints the Service still has its ClusterIP."""
    from ..cluster import Cluster

    if not 0 <= endpoints <= MAX_ENDPOINTS:
        raise InvalidValue("endpoints_cluster", "endpoints", endpoints, f"must be 0 to {MAX_ENDPOINTS}")
    cluster = Cluster(node_subnet="192.168.0.0/24", cni="flannel-vxlan", name="three-node-vxlan")
    for node in SERVICE_NODES:
        cluster.add_node(node)
    for i in range(endpoints):
        cluster.add_pod(f"web-{i + 1}", node=SERVICE_NODES[i % len(SERVICE_NODES)], labels={"app": "web"},
                        ports={"http": 8080})
        if i == 0:  # as in chapter 04: web-1 first on node-1, then client
            cluster.add_pod("client", node=SERVICE_NODES[0])
    if not endpoints:
        cluster.add_pod("client", node=SERVICE_NODES[0])
    cluster.add_service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    return cluster


def endpoints_graph(cluster: Cluster, service: str = "default/web", node: str = "node-1") -> nx.DiGraph:
    """The chains kube-proxy on ``node`` writes for ``service``, as :func:`chain_graph` reads them
    from its ``iptables-restore`` input."""
    return chain_graph(cluster.kube_proxy(node).iptables_restore(), service)


def pool_rules(graph: nx.DiGraph) -> list[str]:
    """The rules that choose an endpoint, as ``iptables-save`` prints them: every rule of the
    Service's pool chains (``KUBE-SVC-…``, ``KUBE-SVL-…``) in order, or, for a Service without
    endpoints, the filter table's ``REJECT``."""
    rules = []
    for u, v, data in graph.edges(data=True):
        if graph.nodes[u]["kind"] == "service" or graph.nodes[v]["kind"] == "verdict":
            rules.extend(rule.text for rule in data["rules"])
    return rules


def draw_endpoints_view(graph: nx.DiGraph, *, title: str | None = None):
    """:func:`draw_chain_graph` of a Service's chains, titled with its endpoint count; return the Axes."""
    endpoints = sum(1 for _, kind in graph.nodes(data="kind") if kind == "endpoint")
    return draw_chain_graph(graph, title=title or (
        f"kube-proxy's chains for {graph.graph['service']}: {endpoints} ready endpoint{'s' * (endpoints != 1)}"))


def endpoints_explorer(endpoints: int = 3):
    """A slider of ready endpoints for :func:`endpoints_cluster`, showing :func:`pool_rules` and
    redrawing :func:`draw_endpoints_view`."""
    import html

    import ipywidgets as widgets

    controls = {"endpoints": widgets.IntSlider(value=endpoints, min=0, max=MAX_ENDPOINTS,
                                               description="endpoints", continuous_update=False)}

    def render(endpoints):
        graph = endpoints_graph(endpoints_cluster(endpoints))
        rules = html.escape("\n".join(pool_rules(graph)))
        return f"<pre>{rules}</pre>", draw_endpoints_view(graph).figure

    return _wire(render, controls, [["endpoints"]], text=True)
