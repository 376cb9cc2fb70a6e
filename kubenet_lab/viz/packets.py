"""One packet of the walk, looked at closely: its header stack, its bytes, a capture summary.

Three views of the bytes a hop puts on the wire, all read from the scapy
packet the datapath built (:attr:`kubenet_lab.datapath.trace.Hop.packet`), so
they show the real packet, never a textbook picture of one:

* :func:`header_layers`: the layers in wire order, each with its offset and
  size measured from the scapy bytes (``len(bytes(layer)) - len(bytes(layer.payload))``),
  and its role: ``outer`` (the underlay's headers), ``tunnel`` (the VXLAN or
  Geneve header with the VNI), ``inner`` (the pod's own packet), ``payload``;
* :func:`draw_header_stack`: those layers as a bar drawn to scale in bytes;
* :func:`hexdump`: the bytes 16 a row, as ``xxd`` prints them, coloured by layer;
* :func:`pcap_summary`: a pcap written by :meth:`~kubenet_lab.datapath.trace.Trace.to_pcap`
  read back with scapy, one line a packet, in the columns of ``tshark -r``.

Every function takes a :class:`~kubenet_lab.datapath.trace.Hop`, a datapath
:class:`~kubenet_lab.datapath.packet.Packet` or a scapy packet. A hop that
travels in fragments is shown by its first fragment. Introduced in chapter 02.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> hop = c.trace("web-1", "web-3", proto="tcp", dport=8080).wire_hops[1]   # node-1 eth0 -> node-3
>>> [(layer.name, layer.size) for layer in header_layers(hop)]  # doctest: +NORMALIZE_WHITESPACE
[('outer Ethernet', 14), ('outer IPv4', 20), ('outer UDP', 8), ('VXLAN', 8),
 ('inner Ethernet', 14), ('inner IPv4', 20), ('TCP', 20)]
>>> for line in str(hexdump(hop)).splitlines()[-2:]:  # the last row: the end of the TCP header
...     print(line)
00000060: 5002 faf0 b98f 0000                      P.......
          gggg gggg gggg gggg
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from ..tables import Table
from .style import COLORS, new_axes

__all__ = ["Layer", "ROLE_COLORS", "ROLE_LABELS", "header_layers", "draw_header_stack", "HexDump", "hexdump",
           "pcap_summary"]

# One colour per role, used by every packet view: the underlay's grey for what the underlay
# routes on, the node's blue for the VTEP's own header, the pod's green for what the pod sent.
ROLE_COLORS = {
    "outer": COLORS["underlay"],
    "tunnel": COLORS["node"],
    "inner": COLORS["pod"],
    "payload": "#c7c7c7",
}
ROLE_LABELS = {
    "outer": "outer headers: what the underlay routes on",
    "tunnel": "tunnel header (VXLAN / Geneve: the VNI)",
    "inner": "inner packet: the headers the pod sent",
    "payload": "payload",
}
_PLAIN_LABELS = {"inner": "headers of the pod's packet", "payload": "payload"}

# scapy class name -> the name a network engineer reads in Wireshark.
_NAMES = {
    "Ether": "Ethernet", "IP": "IPv4", "IPv6": "IPv6", "UDP": "UDP", "TCP": "TCP", "ICMP": "ICMP",
    "VXLAN": "VXLAN", "GENEVE": "Geneve", "GeneveOptions": "Geneve option", "Raw": "payload",
    "Padding": "padding", "IPerror": "quoted IPv4", "TCPerror": "quoted TCP", "UDPerror": "quoted UDP",
    "ICMPerror": "quoted ICMP",
}
_TUNNELS = ("VXLAN", "GENEVE")
_IP = ("IP", "IPv6")
# ICMP types whose data is the packet they answer (RFC 792): destination unreachable, time exceeded.
_ICMP_ERRORS = (3, 11)
WIDTH = 16  # bytes per hexdump row, as xxd


@dataclass(frozen=True)
class Layer:
    """One header (or the payload) of a packet: where it starts, how long it is, what it is.

    ``name`` is what a figure's legend says (``outer IPv4``), ``short`` what
    fits inside a bar (``IPv4``), ``proto`` scapy's class name, ``role`` one
    of ``outer``, ``tunnel``, ``inner``, ``payload``.
    """

    name: str
    short: str
    role: str
    offset: int
    size: int
    proto: str

    @property
    def end(self) -> int:
        """Offset of the first byte after this layer."""
        return self.offset + self.size


def _resolve(packet_or_hop):
    """(scapy packet, the Hop or None, how many fragments the hop sent)."""
    from scapy.packet import Packet as ScapyPacket

    from ..datapath.packet import Packet
    from ..datapath.trace import Hop

    hop = packet_or_hop if isinstance(packet_or_hop, Hop) else None
    if hop is not None:
        built = hop.packet
    elif isinstance(packet_or_hop, Packet):
        built = packet_or_hop.to_scapy()
    else:
        built = packet_or_hop
    pieces = list(built) if isinstance(built, list) else [built]
    if not pieces or not all(isinstance(p, ScapyPacket) for p in pieces):
        from ..errors import InvalidValue

        raise InvalidValue("packet view", "packet_or_hop", packet_or_hop,
                           "must be a trace Hop, a datapath Packet or a scapy packet")
    return pieces[0], hop, len(pieces)


def _encapsulation(protos: list[str]) -> str | None:
    if "VXLAN" in protos:
        return "VXLAN"
    if "GENEVE" in protos:
        return "Geneve"
    if any(a in _IP and b in _IP for a, b in zip(protos, protos[1:])):
        return "IP-in-IP"
    return None


def header_layers(packet_or_hop) -> tuple[Layer, ...]:
    """The layers of one on-wire packet, in wire order, measured from its scapy bytes.

    The outer/inner boundary is the tunnel header (VXLAN, Geneve) or, for
    IP-in-IP (RFC 2003), the first IP header that carries another IP header.
    A packet without either is all ``inner``: the pod's packet as sent.
    The sizes add up to ``len(bytes(packet))``.
    """
    from scapy.packet import NoPayload

    packet, _, _ = _resolve(packet_or_hop)
    measured = []
    layer = packet
    while layer is not None and not isinstance(layer, NoPayload):
        measured.append((layer, len(bytes(layer)) - len(bytes(layer.payload))))
        layer = layer.payload
    protos = [type(layer).__name__ for layer, _ in measured]
    if "VXLAN" in protos or "GENEVE" in protos:
        boundary = next(i for i, p in enumerate(protos) if p in _TUNNELS)
    else:
        boundary = next((i for i, (a, b) in enumerate(zip(protos, protos[1:])) if a in _IP and b in _IP), None)
        boundary = None if boundary is None else boundary + 1  # the outer IP header is outer, all after it inner
    encapsulated = boundary is not None
    layers, offset, previous = [], 0, None
    for i, ((layer, size), proto) in enumerate(zip(measured, protos)):
        short = _NAMES.get(proto, layer.name)
        if proto == "Raw" and previous is not None and type(previous).__name__ == "ICMP" \
                and getattr(previous, "type", None) in _ICMP_ERRORS:
            short = "quoted packet"
        if proto in ("Raw", "Padding"):
            role, name = "payload", short
        elif encapsulated and i < boundary:
            role, name = "outer", f"outer {short}"
        elif encapsulated and proto in _TUNNELS:
            role, name = "tunnel", short
        else:
            role = "inner"
            name = f"inner {short}" if encapsulated and proto in ("Ether", *_IP) else short
        layers.append(Layer(name, short, role, offset, size, proto))
        offset += size
        previous = layer
    return tuple(layers)


def _describe(layers: tuple[Layer, ...]) -> str:
    return _encapsulation([layer.proto for layer in layers]) or "plain"


def _where(hop) -> str:
    return f"hop {hop.index}, {hop.namespace}" + (f" {hop.interface}" if hop.interface else "")


def _mix(colour: str, white: float) -> tuple[float, float, float]:
    """``colour`` mixed with ``white`` parts of white (0 keeps it, 1 is white)."""
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * white for c in to_rgb(colour))


def _shades(layers: tuple[Layer, ...], base: float = 0.0, step: float = 0.2) -> list[tuple[float, float, float]]:
    """A colour per layer: its role's colour in three lightnesses, in turn, so the layers of one role stay apart."""
    shades, count = [], {}
    for layer in layers:
        n = count.get(layer.role, 0)
        count[layer.role] = n + 1
        shades.append(_mix(ROLE_COLORS[layer.role], base + (1 - base) * step * (n % 3)))
    return shades


def _text_colour(rgb: tuple[float, float, float]) -> str:
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "black" if luminance > 0.55 else "white"


def draw_header_stack(packet_or_hop, ax=None, *, title: str | None = None, xmax: int | None = None):
    """Draw one on-wire packet's layers as a bar, to scale in bytes; return the Axes.

    Each segment is one layer, labelled with its name and size; outer,
    tunnel, inner and payload layers take the colours of :data:`ROLE_COLORS`.
    Segments too narrow for their label are labelled below the bar. For an
    encapsulated packet, brackets above the bar total the outer headers and
    the inner frame. ``xmax`` widens the byte axis beyond this packet's
    length, so that several packets drawn one above the other share a scale.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from kubenet_lab import Cluster
    >>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
    >>> ax = draw_header_stack(c.trace("web-1", "web-3").wire_hops[1])
    >>> len([p for p in ax.patches if p.get_gid() == "layer"]), ax.get_xlim() == (0, 148)
    (8, True)
    """
    from matplotlib.patches import Patch, Rectangle

    packet, hop, pieces = _resolve(packet_or_hop)
    layers = header_layers(packet)
    total = layers[-1].end if layers else 0
    width = max(total, xmax or 0)  # bytes the axis spans
    ax = new_axes(ax, figsize=(9.0, 3.0))
    fig = ax.figure
    axes_inches = fig.get_figwidth() * ax.get_position().width
    fontsize = 8
    colours = _shades(layers)
    outside: list[tuple[Layer, tuple]] = []
    per_inch = width / axes_inches  # bytes per inch of axis

    def label_width(label: str, size: int) -> float:  # a label's width in bytes of the axis
        return max(len(line) for line in label.split("\n")) * size * 0.68 / 72 * per_inch

    for layer, colour in zip(layers, colours):
        ax.add_patch(Rectangle((layer.offset, 0), layer.size, 1, facecolor=colour, edgecolor="white", lw=1.5,
                               gid="layer"))
        label = f"{layer.short}\n{layer.size} B"
        if label_width(label, fontsize) <= layer.size * 0.92:
            ax.text(layer.offset + layer.size / 2, 0.5, label, ha="center", va="center", fontsize=fontsize,
                    color=_text_colour(colour))
        else:
            outside.append((layer, colour))
    # Segments too narrow for their label: labels in a row below the bar, spread apart, each with a leader line.
    widths = [label_width(f"{layer.short}\n{layer.size} B", fontsize - 1) * 1.4 for layer, _ in outside]
    xs: list[float] = []
    for (layer, _), w in zip(outside, widths):
        x = max(layer.offset + layer.size / 2, w / 2)
        xs.append(x if not xs else max(x, xs[-1] + (widths[len(xs) - 1] + w) / 2))
    for i in range(len(xs) - 1, -1, -1):  # and pull back from the right edge
        limit = width - widths[i] / 2 if i == len(xs) - 1 else xs[i + 1] - (widths[i + 1] + widths[i]) / 2
        xs[i] = min(xs[i], limit)
    for (layer, colour), x in zip(outside, xs):
        ax.annotate(f"{layer.short}\n{layer.size} B", (layer.offset + layer.size / 2, 0), (x, -0.42),
                    ha="center", va="top", fontsize=fontsize - 1, color=_text_colour(colour),
                    bbox=dict(boxstyle="round,pad=0.25", fc=colour, ec="none"),
                    arrowprops=dict(arrowstyle="-", color=COLORS["underlay"], lw=0.6, shrinkA=0, shrinkB=0))
    roles = [layer.role for layer in layers]
    encapsulated = "outer" in roles
    if encapsulated:  # brackets: the outer headers, and the inner frame they carry
        split = next(layer.offset for layer in layers if layer.role in ("inner", "payload"))
        for start, end, what in ((0, split, "outer headers"), (split, total, "inner frame (the pod's packet)")):
            ax.plot([start + 0.3, start + 0.3, end - 0.3, end - 0.3], [1.08, 1.18, 1.18, 1.08],
                    color=COLORS["underlay"], lw=1)
            text = f"{what}: {end - start} B"
            if label_width(text, 9) < end - start:
                ax.text((start + end) / 2, 1.24, text, ha="center", va="bottom", fontsize=9)
            else:  # a narrow bracket: its text starts at the bracket and runs right
                ax.text(start, 1.24, text, ha="left", va="bottom", fontsize=9)
    labels = ROLE_LABELS if encapsulated else _PLAIN_LABELS
    handles = [Patch(facecolor=ROLE_COLORS[r], label=labels[r]) for r in ROLE_COLORS if r in roles]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.32 if not outside else -0.28),
              ncol=min(len(handles), 2))
    ax.set_xlim(0, width)
    ax.set_ylim(-1.05 if outside else -0.15, 1.65)
    ticks, last = [0], 0
    for layer in layers:
        if layer.end - last >= width / 22 or layer is layers[-1]:
            if layer is layers[-1] and layer.end - last < width / 22 and len(ticks) > 1:
                ticks.pop()
            ticks.append(layer.end)
            last = layer.end
    ax.set_xticks(ticks)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("bytes from the start of the frame (layer boundaries marked)")
    if title is None:
        what = _describe(layers)
        frame = f"{what} frame" if what != "plain" else "frame"
        fragment = f" (first of {pieces} fragments)" if pieces > 1 else ""
        where = f"{_where(hop)}: " if hop is not None else ""
        title = f"{where}{frame} of {total} bytes{fragment}"
        title = title[0].upper() + title[1:]
    ax.set_title(title)
    return ax


def _hex_width(count: int) -> int:
    """Characters that ``count`` bytes take in xxd's hex column: two digits each, a space every two bytes."""
    return 2 * count + max(-(-count // 2) - 1, 0)


@dataclass(frozen=True)
class HexDump:
    """The bytes of one packet, 16 a row, with the layer each byte belongs to.

    ``str()`` gives ``xxd``'s layout plus a ruler line under each row whose
    letters name the layer of the byte above (the key comes first); in a
    notebook the bytes are coloured by layer instead.
    """

    data: bytes
    layers: tuple[Layer, ...]
    title: str = ""

    @property
    def rows(self) -> int:
        return -(-len(self.data) // WIDTH)

    def _letters(self) -> str:
        codes = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(codes[i % len(codes)] * layer.size for i, layer in enumerate(self.layers))

    @staticmethod
    def _hex(row: bytes) -> str:
        return " ".join(row[i:i + 2].hex() for i in range(0, len(row), 2))

    @staticmethod
    def _ascii(row: bytes) -> str:
        return "".join(chr(b) if 32 <= b < 127 else "." for b in row)

    def __str__(self) -> str:
        codes = "abcdefghijklmnopqrstuvwxyz0123456789"
        lines = [self.title] if self.title else []
        name_width = max((len(layer.name) for layer in self.layers), default=0)
        for i, layer in enumerate(self.layers):
            lines.append(f"  {codes[i % len(codes)]}  {layer.name:<{name_width}}  bytes {layer.offset:>4}-{layer.end - 1:<4}"
                         f" ({layer.size} B)")
        letters = self._letters()
        hex_width = _hex_width(WIDTH)
        for start in range(0, len(self.data), WIDTH):
            row = self.data[start:start + WIDTH]
            lines.append(f"{start:08x}: {self._hex(row):<{hex_width}}  {self._ascii(row)}")
            ruler = "".join(letter * 2 for letter in letters[start:start + WIDTH])  # two hex digits a byte
            lines.append(" " * 10 + " ".join(ruler[i:i + 4] for i in range(0, len(ruler), 4)))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        shades = _shades(self.layers, base=0.5, step=0.3)
        css = ["#%02x%02x%02x" % tuple(round(c * 255) for c in rgb) for rgb in shades]
        owner = [i for i, layer in enumerate(self.layers) for _ in range(layer.size)]

        def span(i: int, text: str) -> str:
            layer = self.layers[i]
            return (f"<span style='background:{css[i]}' title='{html.escape(layer.name)}, bytes "
                    f"{layer.offset}-{layer.end - 1}'>{html.escape(text)}</span>")

        def runs(start: int, count: int):
            """(layer, first, end) for each run of bytes of one layer within a row."""
            j = 0
            while j < count:
                k = j
                while k < count and owner[start + k] == owner[start + j]:
                    k += 1
                yield owner[start + j], j, k
                j = k

        rows = []
        for start in range(0, len(self.data), WIDTH):
            row = self.data[start:start + WIDTH]
            hex_parts, text_parts = [], []
            for layer, first, end in runs(start, len(row)):
                # a group space before the run's first byte stays uncoloured; spaces inside the run are coloured
                if first and first % 2 == 0:
                    hex_parts.append(" ")
                digits = "".join((" " if j > first and j % 2 == 0 else "") + f"{row[j]:02x}" for j in range(first, end))
                hex_parts.append(span(layer, digits))
                text_parts.append(span(layer, self._ascii(row[first:end])))
            pad = " " * (_hex_width(WIDTH) - _hex_width(len(row)))
            rows.append(f"{start:08x}: {''.join(hex_parts)}{pad}  {''.join(text_parts)}")
        key = " ".join(
            f"<span style='background:{css[i]};padding:0 4px;margin-right:6px;white-space:nowrap'>"
            f"{html.escape(layer.name)} {layer.size} B</span>" for i, layer in enumerate(self.layers))
        caption = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return (f"<div style='color:black'>{caption}<div style='margin:4px 0'>{key}</div>"
                f"<pre style='line-height:1.35;background:white;color:black'>" + "\n".join(rows) + "</pre></div>")

    def __repr__(self) -> str:
        return f"<HexDump {len(self.data)} bytes, {len(self.layers)} layers>"


def hexdump(packet_or_hop) -> HexDump:
    """The bytes of one on-wire packet as a :class:`HexDump`, each byte tagged with its layer.

    >>> from scapy.layers.inet import IP, UDP
    >>> print(hexdump(IP(src="10.0.0.1", dst="10.0.0.2", ttl=64, id=0) / UDP(sport=1, dport=2)))
      a  IPv4  bytes    0-19   (20 B)
      b  UDP   bytes   20-27   (8 B)
    00000000: 4500 001c 0000 0000 4011 66cf 0a00 0001  E.......@.f.....
              aaaa aaaa aaaa aaaa aaaa aaaa aaaa aaaa
    00000010: 0a00 0002 0001 0002 0008 ebd8            ............
              aaaa aaaa bbbb bbbb bbbb bbbb
    """
    packet, hop, pieces = _resolve(packet_or_hop)
    layers = header_layers(packet)
    fragment = f", first of {pieces} fragments" if pieces > 1 else ""
    title = f"{_where(hop)}: {len(bytes(packet))} bytes{fragment}" if hop is not None else ""
    return HexDump(bytes(packet), layers, title)


# -- a capture, summarised ------------------------------------------------------------------

def _l4_info(ip) -> tuple[str, str]:
    """(Protocol, Info) for the innermost IP packet, in tshark's words."""
    from scapy.layers.inet import ICMP, TCP, UDP

    if ip.haslayer(TCP):
        tcp = ip[TCP]
        flags = {"S": "SYN", "A": "ACK", "P": "PSH", "F": "FIN", "R": "RST"}
        names = ", ".join(v for k, v in flags.items() if k in str(tcp.flags))
        return "TCP", f"{tcp.sport} → {tcp.dport} [{names}] Win={tcp.window} Len={len(tcp.payload)}"
    if ip.haslayer(ICMP):
        icmp = ip[ICMP]
        if icmp.type == 8:
            return "ICMP", f"Echo (ping) request id=0x{icmp.id:04x}, seq={icmp.seq}, ttl={ip.ttl}"
        if icmp.type == 0:
            return "ICMP", f"Echo (ping) reply id=0x{icmp.id:04x}, seq={icmp.seq}, ttl={ip.ttl}"
        if icmp.type == 3 and icmp.code == 4:
            return "ICMP", f"Destination unreachable (Fragmentation needed), MTU {icmp.nexthopmtu}"
        return "ICMP", f"type {icmp.type} code {icmp.code}"
    if ip.haslayer(UDP):
        udp = ip[UDP]
        return "UDP", f"{udp.sport} → {udp.dport} Len={udp.len - 8}"
    if ip.frag or ip.flags.MF:
        return "IPv4", f"Fragmented IP protocol (proto={ip.proto}, off={ip.frag * 8})"
    return "IPv4", f"protocol {ip.proto}"


def _summary_row(number: int, packet) -> tuple[str, ...]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.vxlan import VXLAN
    from scapy.contrib.geneve import GENEVE

    ips = []
    layer = packet
    while layer is not None and layer.name != "NoPayload" and not isinstance(layer, bytes):
        if isinstance(layer, IP):
            ips.append(layer)
        layer = layer.payload if layer.payload else None
    inner = ips[-1]
    protocol, info = _l4_info(inner)
    outer = ""
    if packet.haslayer(VXLAN) or packet.haslayer(GENEVE):
        tunnel = packet[VXLAN] if packet.haslayer(VXLAN) else packet[GENEVE]
        name = "VXLAN" if isinstance(tunnel, VXLAN) else "Geneve"
        udp = packet[UDP]
        outer = f"{ips[0].src} → {ips[0].dst} UDP {udp.sport} → {udp.dport} {name} VNI {tunnel.vni}"
    elif len(ips) > 1:
        outer = f"{ips[0].src} → {ips[0].dst} IP-in-IP (protocol 4)"
    return (str(number), f"{float(packet.time):.6f}", str(inner.src), str(inner.dst), protocol,
            str(len(bytes(packet))), info, outer or "-")


def pcap_summary(pcap) -> Table:
    """One line per packet of a capture, in the columns ``tshark -r`` prints, read with scapy.

    ``pcap`` is a path (what :meth:`~kubenet_lab.datapath.trace.Trace.to_pcap`
    wrote) or a list of scapy packets. Like tshark, Source and Destination are
    the innermost IP header's; the last column adds the tunnel's outer
    addresses, ports and VNI, which tshark shows only in the packet details.
    """
    from scapy.contrib.geneve import GENEVE  # noqa: F401  (binds UDP 6081 so Geneve is dissected)
    from scapy.utils import rdpcap

    packets = rdpcap(str(pcap)) if isinstance(pcap, (str, Path)) else list(pcap)
    rows = tuple(_summary_row(i, p) for i, p in enumerate(packets, start=1))
    name = Path(pcap).name if isinstance(pcap, (str, Path)) else "packets"
    return Table(f"tshark -r {name} (summarised with scapy)",
                 ("No.", "Time", "Source", "Destination", "Protocol", "Length", "Info", "Outer (underlay)"), rows)
