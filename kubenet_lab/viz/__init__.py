"""Drawings of the model. They read a Cluster and compute no networking of their own.

Layout positions come from pure functions (:func:`topology.topology_layout`);
drawing functions take ``ax=None`` and return the matplotlib ``Axes``, and
import matplotlib only when called, so ``import kubenet_lab`` stays fast.
"""

from .bgp import (ConvergenceCounts, ScalePoint, convergence_counts, decision_table, draw_convergence, draw_sessions,
                  draw_sessions_vs_size, failure_events, failure_explorer, failure_model, scale_table, session_layout,
                  sessions_vs_size, timeline_table)
from .mtu import draw_mtu_budget, draw_pod_mtu_vs_underlay, mtu_explorer, mtu_explorer_model
from .packets import draw_header_stack, header_layers, hexdump, pcap_summary
from .services import (RulesPerPacket, chain_graph, chain_layout, draw_chain_graph, draw_load_balancing,
                       draw_rules_per_packet, path_edges, rules_per_packet, simulate_connections)
from .style import COLORS, apply_style
from .topology import draw_address_map, draw_topology, topology_graph, topology_layout
from .walk import draw_trace, draw_tunnels, trace_legs, tunnels

__all__ = ["COLORS", "apply_style", "draw_topology", "draw_address_map", "topology_graph", "topology_layout",
           "draw_mtu_budget", "draw_pod_mtu_vs_underlay", "mtu_explorer", "mtu_explorer_model",
           "draw_header_stack", "header_layers", "hexdump", "pcap_summary",
           "draw_tunnels", "draw_trace", "tunnels", "trace_legs",
           "chain_graph", "chain_layout", "path_edges", "draw_chain_graph", "simulate_connections",
           "draw_load_balancing", "RulesPerPacket", "rules_per_packet", "draw_rules_per_packet",
           "draw_sessions", "session_layout", "draw_convergence", "convergence_counts", "ConvergenceCounts",
           "sessions_vs_size", "ScalePoint", "scale_table", "draw_sessions_vs_size", "decision_table",
           "timeline_table", "failure_events", "failure_model", "failure_explorer"]
