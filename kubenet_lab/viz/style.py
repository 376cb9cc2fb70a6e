"""The one plotting style of the course.

Colours name concepts, not series, so a pod is the same colour in every
chapter. Figures have an opaque white background so they stay readable under
JupyterLab's dark theme, and a fixed size that reads well at notebook width.
"""

from __future__ import annotations

COLORS = {
    "underlay": "#4d4d4d",   # the physical network: switches, L2 segments, links
    "node": "#1f77b4",       # Kubernetes nodes (hosts)
    "pod": "#2ca02c",        # pods
    "podcidr": "#aec7e8",    # a node's podCIDR / Calico block
    "service": "#9467bd",    # ClusterIPs and other virtual IPs
    "tor": "#ff7f0e",        # top-of-rack routers
    "free": "#eeeeee",       # unallocated address space
    "highlight": "#d62728",  # the one thing a figure is about
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

    matplotlib.rcParams.update(RC)


def new_axes(ax=None, figsize=FIGSIZE):
    """Return ``ax``, or a fresh Axes in the course style."""
    import matplotlib.pyplot as plt

    apply_style()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax
