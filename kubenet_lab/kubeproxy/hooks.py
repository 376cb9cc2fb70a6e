"""The jumps kube-proxy inserts into the built-in chains, outside its iptables-restore input.

kube-proxy's restore input fills only its own chains (KUBE-SERVICES, KUBE-NODEPORTS, ...).
Packets reach them because, on every full sync, kube-proxy also makes sure that each
built-in chain starts with a jump into its chain (``iptables -I``, so each new jump goes
to the top). The table is kube-proxy's ``iptablesJumpChains`` and
``iptablesKubeletJumpChains`` (pkg/proxy/iptables/proxier.go), as listed in
shared/reference/kube-proxy.md §4.1:

>>> print(hook_rules().splitlines()[1])
:INPUT ACCEPT [0:0]
>>> [l for l in hook_rules().splitlines() if "KUBE-POSTROUTING" in l]
['-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
"""

from __future__ import annotations

__all__ = ["JUMP_CHAINS", "hook_rules"]

# (table, built-in chain, kube-proxy chain, extra match, comment), in kube-proxy's order.
JUMP_CHAINS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW", "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW", "kubernetes externally-visible service portals"),
    ("filter", "INPUT", "KUBE-NODEPORTS", "", "kubernetes health check service ports"),
    ("filter", "FORWARD", "KUBE-SERVICES", "-m conntrack --ctstate NEW", "kubernetes service portals"),
    ("filter", "OUTPUT", "KUBE-SERVICES", "-m conntrack --ctstate NEW", "kubernetes service portals"),
    ("filter", "FORWARD", "KUBE-FORWARD", "", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW", "kubernetes load balancer firewall"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW", "kubernetes load balancer firewall"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW", "kubernetes load balancer firewall"),
    ("nat", "OUTPUT", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "", "kubernetes postrouting rules"),
    ("filter", "INPUT", "KUBE-FIREWALL", "", None),
    ("filter", "OUTPUT", "KUBE-FIREWALL", "", None),
)

_BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}


def hook_rules() -> str:
    """The jumps as ``iptables-restore --noflush`` input, in the order kube-proxy leaves them.

    Each jump was prepended, so within a built-in chain the last one inserted comes
    first: the rules are written in reverse of kube-proxy's list.
    """
    lines = []
    for table in ("filter", "nat"):
        lines.append(f"*{table}")
        lines.extend(f":{chain} ACCEPT [0:0]" for chain in _BUILTIN[table])
        for t, chain, target, extra, comment in reversed(JUMP_CHAINS):
            if t != table:
                continue
            parts = ["-A", chain] + (extra.split() if extra else [])
            if comment:
                parts += ["-m", "comment", "--comment", f'"{comment}"']
            lines.append(" ".join(parts + ["-j", target]))
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
