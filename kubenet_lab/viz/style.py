"""The one plotting style of the course.

Colours name concepts, not series, so a pod is the same colour in every
chapter. They are Okabe and Ito's colour-blind-safe set ("Color Universal
Design", 2008), so the concepts stay apart for protanopes, deuteranopes and
tritanopes too (tests/test_viz_gallery.py simulates the three); series without
a concept of their own take :data:`PALETTE`, the same set in order. Figures
have an opaque white background so they stay readable under JupyterLab's dark
theme, and a fixed size that reads well at notebook width.
"""

from __future__ import annotations

# Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, black.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

COLORS = {
    "underlay": "#4d4d4d",   # the physical network: switches, L2 segments, links
    "node": "#0072B2",       # Kubernetes nodes (hosts)
    "pod": "#009E73",        # pods
    "podcidr": "#aad9f4",    # a node's podCIDR / Calico block (sky blue, half white: a fill under text)
    "service": "#CC79A7",    # ClusterIPs and other virtual IPs
    "tor": "#E69F00",        # top-of-rack routers
    "free": "#eeeeee",       # unallocated address space
    "highlight": "#D55E00",  # the one thing a figure is about
}

FIGSIZE = (9.0, 5.0)

RC = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.size": 10,
    "svg.hashsalt": "kubenet-lab",
}


def apply_style() -> None:
    """Set the course's matplotlib defaults (called by every drawing function)."""
    import matplotlib
    from cycler import cycler

    matplotlib.rcParams.update(RC)
    matplotlib.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)


def new_axes(ax=None, figsize=FIGSIZE):
    """Return ``ax``, or a fresh Axes in the course style."""
    import matplotlib.pyplot as plt

    apply_style()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax
