"""A netfilter walk: one packet through the rules kube-proxy wrote, the way the kernel evaluates them.

kube-proxy's iptables mode turns a Service into rules; this module turns the
rules back into what happens to a packet. :meth:`Ruleset.parse` reads an
``iptables-restore`` input (what :meth:`KubeProxy.iptables_restore
<kubenet_lab.kubeproxy.proxy.KubeProxy.iptables_restore>` returns) into
tables, chains and rules, and adds the jumps kube-proxy ensures in the
built-in chains with ``iptables -I`` (kube-proxy.md §4.1; they are not part of
the restore input). :meth:`Ruleset.walk` then follows the *first packet* of a
connection (conntrack state NEW, nothing remembered yet) through the hooks
netfilter runs, in the kernel's order:

=====================  ==================================================================
packet                 hooks, in order
=====================  ==================================================================
arrives on a device    nat PREROUTING → routing → filter INPUT (for this host), or
                       filter FORWARD → nat POSTROUTING (for anyone else)
locally generated      nat OUTPUT → routing → filter OUTPUT → nat POSTROUTING
                       (→ filter INPUT when it is for this host, over ``lo``)
=====================  ==================================================================

Inside a chain the rules are tried in order; the first whose matches all hold
fires its target. ``-j <chain>`` enters a user chain and comes back to the
next rule when that chain ends or ``RETURN``\\ s; ``MARK`` and rules without a
target go on with the next rule; ``DNAT`` and ``MASQUERADE`` end the nat
table's hook; ``ACCEPT`` ends the table's hook, ``DROP`` and ``REJECT`` end
the packet. At the end of a built-in chain its policy (``ACCEPT`` on a
Kubernetes node) applies.

**Load balancing.** ``-m statistic --mode random --probability p`` matches
with probability *p*, drawn afresh at every such rule. kube-proxy writes
``1/n, 1/(n-1), …, 1/2`` and no statistic on the last rule, so endpoint *i*
gets ``(1 - 1/n)(1 - 1/(n-1))…·1/(n-i) = 1/n``. The walk follows *every*
branch and multiplies exactly (:class:`fractions.Fraction`) the probabilities
as printed with ten decimals, and also as the kernel really uses them:
iptables stores ``lround(0x80000000 * p)`` and ``xt_statistic`` matches when
``(get_random_u32() & 0x7FFFFFFF)`` is below it, a 31-bit threshold.

**Rules evaluated.** The kernel tries the rules of ``KUBE-SERVICES`` one by
one: a packet to the last of 10,000 Services is compared with 10,000 rules
first. The walk counts exactly those comparisons, but finds the rule without
scanning: each chain indexes its rules by (destination host, protocol,
destination port), so a lookup costs a few dictionary probes whatever the
size of the chain.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> rules = Ruleset.parse(c.kube_proxy("node-1").iptables_restore())
>>> web = c.service("web").cluster_ips[0]
>>> result = rules.walk(Flow("10.244.0.3", web, "tcp", 80, in_interface="cni0"), local=["192.168.0.11"])
>>> result.verdict, result.dnat in {"10.244.0.2:8080", "10.244.1.2:8080", "10.244.2.2:8080"}
('ACCEPT', True)
>>> [str(p) for p in result.probabilities.values()]    # 0.3333333333, then 0.6666666667 x 0.5 twice
['3333333333/10000000000', '6666666667/20000000000', '6666666667/20000000000']
>>> sum(result.probabilities.values())
Fraction(1, 1)
>>> [float(d) for d in result.deviations.values()]    # printed with 10 decimals: 1/3 within 4e-11
[-3.3333333333333335e-11, 1.6666666666666667e-11, 1.6666666666666667e-11]
>>> result.chains[:3]
('nat PREROUTING', 'nat KUBE-SERVICES', 'nat KUBE-SVC-CDGGSHYLG3RE2FKL')
>>> forced = rules.walk(Flow("10.244.0.3", web, "tcp", 80, in_interface="cni0"), local=["192.168.0.11"],
...                     endpoint="10.244.0.2:8080")
>>> print(forced.dnat_rule)
-A KUBE-SEP-QA4PSDNF5R2OJOPA -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:8080
>>> forced.evaluated, forced.masquerade    # nat 1+1+2+2, filter FORWARD 4+3, nat POSTROUTING 1+1
(15, False)

Introduced in chapter 04 (the walk of one packet to a ClusterIP) and used by
:func:`kubenet_lab.datapath.trace.trace`.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from itertools import product

from ..addresses import IPAddress
from ..errors import InvalidValue

__all__ = ["Flow", "Rule", "Chain", "Ruleset", "Step", "Branch", "NetfilterResult", "kernel_probability",
           "BUILTIN_JUMPS", "LOOPBACK"]

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")  # the kernel's local table always holds it (IPv6: ::1)
LOOPBACK6 = ipaddress.ip_network("::1/128")
BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}  # chains with a policy

# The jumps kube-proxy keeps at the top of the built-in chains (proxier.go ``iptablesJumpChains``, each
# ensured with ``iptables -I``, so the last one ensured comes first), and kubelet's/kube-proxy's
# KUBE-FIREWALL jump appended after them. As ``iptables-save`` shows them on a node.
BUILTIN_JUMPS = {
    ("filter", "INPUT"): (
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        "-j KUBE-FIREWALL",
    ),
    ("filter", "FORWARD"): (
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
    ),
    ("filter", "OUTPUT"): (
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-j KUBE-FIREWALL",
    ),
    ("nat", "PREROUTING"): ('-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',),
    ("nat", "OUTPUT"): ('-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',),
    ("nat", "POSTROUTING"): ('-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',),
}

MODULES = {"comment", "tcp", "udp", "sctp", "addrtype", "mark", "recent", "statistic", "conntrack", "nfacct"}
# Options that take a value, and the ones that stand alone (targets' flags and recent's commands).
_VALUED = {"-s", "-d", "-p", "-i", "-o", "--dport", "--sport", "--src-type", "--dst-type", "--mark", "--ctstate",
           "--name", "--seconds", "--mode", "--probability", "--nfacct-name", "--comment", "-j",
           "--to-destination", "--or-mark", "--xor-mark", "--and-mark", "--set-xmark", "--set-mark", "--reject-with"}
_FLAGS = {"--rcheck", "--set", "--reap", "--random-fully", "--random"}
_MATCHES = {"-s", "-d", "-p", "-i", "-o", "--dport", "--sport", "--src-type", "--dst-type", "--mark", "--ctstate",
            "--rcheck", "--set", "--probability"}
TERMINAL = {"ACCEPT", "DROP", "REJECT", "DNAT", "MASQUERADE", "SNAT"}


def _words(text: str) -> list[str]:
    """Split a rule as a shell would: a double-quoted comment is one word, without its quotes."""
    return [quoted if quoted else bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', text)]


@lru_cache(maxsize=4096)
def _network(text: str):
    return ipaddress.ip_network(text, strict=False)


@lru_cache(maxsize=1024)
def _probability(text: str) -> tuple[Fraction, Fraction]:
    """A printed ``--probability`` as written (exact decimal) and as the kernel applies it."""
    return Fraction(text), kernel_probability(text)


def kernel_probability(printed: str) -> Fraction:
    """The probability the kernel really applies for ``--probability <printed>``.

    iptables (``libxt_statistic.c``) stores ``lround(0x80000000 * p)`` and the kernel
    (``xt_statistic.c``) matches when ``(get_random_u32() & 0x7FFFFFFF)`` is below it.

    >>> kernel_probability("0.5000000000")
    Fraction(1, 2)
    >>> kernel_probability("0.3333333333")
    Fraction(715827883, 2147483648)
    """
    scaled = Fraction(0x80000000 * float(printed))  # C's double product, exactly
    return Fraction(int(scaled + Fraction(1, 2)), 0x80000000)  # lround: halves away from zero


@dataclass(frozen=True)
class Flow:
    """The first packet of a connection, as netfilter sees it.

    ``in_interface`` is the device it arrived on; ``locally_generated`` says it
    comes from a socket of this host (then it enters at nat OUTPUT).
    ``recent`` names the ``-m recent`` lists that already hold the source
    (session affinity remembered from an earlier connection); for the nftables
    walk (:mod:`.nftwalk`), the ``affinity-…`` sets that hold it.
    """

    src: IPAddress
    dst: IPAddress
    proto: str
    dport: int = 0
    sport: int = 0
    in_interface: str | None = None
    locally_generated: bool = False
    recent: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", ipaddress.ip_address(self.src))
        object.__setattr__(self, "dst", ipaddress.ip_address(self.dst))
        object.__setattr__(self, "proto", self.proto.lower())
        object.__setattr__(self, "recent", frozenset(self.recent))


@dataclass(frozen=True)
class Match:
    """One condition of a rule: its option (``-d``, ``--dport``, ...), value, and ``!``."""

    option: str
    value: object
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    """One ``-A`` line: where it sits (``number`` counts from 1, as ``iptables -L --line-numbers``),
    its matches in order, its target and the target's options."""

    table: str
    chain: str
    number: int
    text: str
    matches: tuple[Match, ...]
    target: str | None
    options: tuple[tuple[str, str], ...] = ()
    comment: str | None = None

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.options if k == name), None)

    @property
    def key(self) -> tuple:
        """(destination host, protocol, destination port) this rule requires, ``None`` where it does not."""
        host = proto = port = None
        for m in self.matches:
            if m.negated:
                continue
            if m.option == "-d" and m.value.prefixlen == m.value.max_prefixlen:
                host = m.value.network_address
            elif m.option == "-p":
                proto = m.value
            elif m.option == "--dport":
                port = m.value
        return host, proto, port

    def __str__(self) -> str:
        return self.text


def _parse_rule(table: str, number: int, line: str) -> Rule:
    words = _words(line)
    if len(words) < 2 or words[0] != "-A":
        raise InvalidValue(f"iptables {table}", "rule", line, "must be '-A <chain> ...'")
    chain, matches, options = words[1], [], []
    target = comment = None
    negated, i = False, 2
    while i < len(words):
        word = words[i]
        if word == "!":
            negated, i = True, i + 1
            continue
        if word == "-m":
            if i + 1 >= len(words) or words[i + 1] not in MODULES:
                raise InvalidValue(f"iptables {table} {chain}", "-m", words[i + 1] if i + 1 < len(words) else "",
                                   f"must be a module kube-proxy uses ({', '.join(sorted(MODULES))})")
            i += 2
            continue
        if word == "--comment":  # kube-proxy quotes comments with spaces; its hand-written test data does not
            end = next((j for j in range(i + 1, len(words)) if words[j].startswith("-") or words[j] == "!"), len(words))
            comment, i = " ".join(words[i + 1:end]), end
            continue
        if word not in _VALUED and word not in _FLAGS:
            raise InvalidValue(f"iptables {table} {chain}", "option", word,
                               f"is not an option kube-proxy writes: {line}")
        value = None
        if word in _VALUED:
            if i + 1 >= len(words):
                raise InvalidValue(f"iptables {table} {chain}", word, "", f"needs a value: {line}")
            value = words[i + 1]
        if word == "-j":
            target = value
        elif target is not None:
            options.append((word, value or ""))
        elif word in ("-s", "-d"):
            matches.append(Match(word, _network(value), negated))
        elif word in ("--dport", "--sport"):
            matches.append(Match(word, int(value), negated))
        elif word == "--mark":
            mark, _, mask = value.partition("/")
            matches.append(Match(word, (int(mark, 0), int(mask, 0) if mask else 0xFFFFFFFF), negated))
        elif word == "--ctstate":
            matches.append(Match(word, frozenset(value.split(",")), negated))
        elif word == "--probability":
            matches.append(Match(word, _probability(value), negated))
        elif word in ("--rcheck", "--set"):
            name = next((words[j + 1] for j in range(2, i) if words[j] == "--name"), "DEFAULT")
            matches.append(Match(word, name, negated))
        elif word in _MATCHES:
            matches.append(Match(word, value, negated))
        # the rest (--name, --seconds, --reap, --mode, --nfacct-name) qualify a match and never decide
        negated = False
        i += 2 if word in _VALUED else 1
    return Rule(table, chain, number, line, tuple(matches), target, tuple(options), comment)


@dataclass
class Chain:
    """A chain's rules in order, and the index that finds the rules a packet can match without a scan."""

    table: str
    name: str
    rules: list[Rule] = field(default_factory=list)
    policy: str | None = None  # built-in chains only: what happens at their end
    buckets: dict[tuple, list[int]] = field(default_factory=dict)

    def add(self, line: str) -> Rule:
        rule = _parse_rule(self.table, len(self.rules) + 1, line)
        self.rules.append(rule)
        self.buckets.setdefault(rule.key, []).append(len(self.rules) - 1)
        return rule

    def candidates(self, dst: IPAddress, proto: str, dport: int) -> list[int]:
        """Positions of the rules that may match a packet to ``dst``/``proto``/``dport``, in order.

        Every other rule requires another destination, protocol or port, so the kernel tries it and
        moves on: it is counted as evaluated but never looked at.
        """
        found = [self.buckets[k] for k in product((dst, None), (proto, None), (dport, None)) if k in self.buckets]
        if len(found) == 1:
            return found[0]
        return list(heapq.merge(*found))


@dataclass(frozen=True)
class Step:
    """A rule that matched, where it sits, and what the packet looked like then."""

    rule: Rule
    mark: int

    def __str__(self) -> str:
        return f"{self.rule.table} {self.rule.chain} #{self.rule.number}: {self.rule.text}"


@dataclass(frozen=True)
class Branch:
    """One way through the ruleset: the random draws taken, what matched, and how it ended.

    ``probability`` multiplies the ``--probability`` values as printed (exact decimals);
    ``kernel_probability`` as the kernel applies them (31-bit thresholds).
    """

    decisions: tuple[bool, ...]
    probability: Fraction
    kernel_probability: Fraction
    steps: tuple[Step, ...]
    chains: tuple[str, ...]
    evaluated: int
    verdict: str
    verdict_rule: Rule | None
    dnat: str | None
    dnat_rule: Rule | None
    masquerade: bool
    masquerade_rule: Rule | None
    mark: int
    recent_set: tuple[str, ...]


@dataclass(frozen=True)
class NetfilterResult:
    """The walk of one packet: the branch taken (seeded, or forced with ``endpoint=``) and all branches.

    ``verdict`` is ``ACCEPT``, ``DROP`` or ``REJECT``; ``verdict_rule`` the rule that decided it
    (``None``: the built-in chain's policy). ``dnat`` is ``ip:port`` or ``None``. ``probabilities``
    maps each DNAT destination (``None`` for none) to its exact probability. The nftables walk
    (:mod:`.nftwalk`) returns the same type; its rules are ``add rule``/``add element`` lines.
    """

    flow: Flow
    chosen: Branch
    branches: tuple[Branch, ...]

    verdict = property(lambda self: self.chosen.verdict, doc="ACCEPT, DROP or REJECT (the branch taken)")
    verdict_rule = property(lambda self: self.chosen.verdict_rule, doc="the rule that decided; None: a policy")
    dnat = property(lambda self: self.chosen.dnat, doc="the DNAT destination ip:port, or None")
    dnat_rule = property(lambda self: self.chosen.dnat_rule, doc="the KUBE-SEP rule that DNATed")
    masquerade = property(lambda self: self.chosen.masquerade, doc="whether POSTROUTING masquerades it")
    masquerade_rule = property(lambda self: self.chosen.masquerade_rule, doc="the MASQUERADE rule")
    steps = property(lambda self: self.chosen.steps, doc="the rules that matched, in order")
    chains = property(lambda self: self.chosen.chains, doc="the chains entered, in order")
    evaluated = property(lambda self: self.chosen.evaluated, doc="how many rules the kernel tried")
    mark = property(lambda self: self.chosen.mark, doc="the packet mark at the end")

    def choose(self, endpoint: str) -> NetfilterResult:
        """The same walk with the branch that DNATs to ``endpoint`` (``ip:port``, or an IP) taken."""
        chosen = next((b for b in self.branches if b.dnat is not None and endpoint in (
            b.dnat, b.dnat.rpartition(":")[0].strip("[]"))), None)
        if chosen is None:
            reachable = ", ".join(sorted(str(b.dnat) for b in self.branches))
            raise InvalidValue("netfilter walk", "endpoint", endpoint, f"must be one of {reachable}")
        return NetfilterResult(self.flow, chosen, self.branches)

    @property
    def probabilities(self) -> dict[str | None, Fraction]:
        out: dict[str | None, Fraction] = {}
        for b in self.branches:
            out[b.dnat] = out.get(b.dnat, Fraction(0)) + b.probability
        return out

    @property
    def deviations(self) -> dict[str, Fraction]:
        """How far each endpoint's share, from the printed probabilities, is from the ideal 1/n."""
        shares = {d: p for d, p in self.probabilities.items() if d is not None}
        return {d: p - Fraction(1, len(shares)) for d, p in shares.items()}

    @property
    def kernel_probabilities(self) -> dict[str | None, Fraction]:
        out: dict[str | None, Fraction] = {}
        for b in self.branches:
            out[b.dnat] = out.get(b.dnat, Fraction(0)) + b.kernel_probability
        return out

    def __str__(self) -> str:
        f = self.flow
        head = (f"{f.src} -> {f.dst} {f.proto}/{f.dport}: {self.verdict}"
                + (f", DNAT to {self.dnat}" if self.dnat else "") + (", masqueraded" if self.masquerade else "")
                + f"; {self.evaluated} rules evaluated")
        return "\n".join([head, *(f"  {s}" for s in self.steps)])


class _Stop(Exception):
    """The packet's fate is sealed (DROP or REJECT)."""


@dataclass
class _State:
    """What one branch of the walk carries and changes."""

    flow: Flow
    local: frozenset
    decide: object
    dst: IPAddress = None
    dport: int = 0
    mark: int = 0
    ctstate: set = field(default_factory=lambda: {"NEW"})
    recent: set = field(default_factory=set)
    decisions: list = field(default_factory=list)
    probability: Fraction = Fraction(1)
    kernel: Fraction = Fraction(1)
    steps: list = field(default_factory=list)
    chains: list = field(default_factory=list)
    evaluated: int = 0
    verdict: str = "ACCEPT"
    verdict_rule: Rule | None = None
    dnat: str | None = None
    dnat_rule: Rule | None = None
    masquerade_rule: Rule | None = None
    recent_set: list = field(default_factory=list)

    def is_local(self, address: IPAddress) -> bool:
        return address in self.local or address in (LOOPBACK if address.version == 4 else LOOPBACK6)


def _matches(m: Match, s: _State) -> bool:
    o = m.option
    if o == "-d":
        hit = s.dst in m.value
    elif o == "-s":
        hit = s.flow.src in m.value
    elif o == "-p":
        hit = s.flow.proto == m.value
    elif o == "--dport":
        hit = s.dport == m.value
    elif o == "--sport":
        hit = s.flow.sport == m.value
    elif o == "--dst-type":
        hit = m.value == "LOCAL" and s.is_local(s.dst)
    elif o == "--src-type":
        hit = m.value == "LOCAL" and s.is_local(s.flow.src)
    elif o in ("-i", "-o"):
        device = s.flow.in_interface if o == "-i" else None  # kube-proxy never matches -o
        hit = device is not None and (device.startswith(m.value[:-1]) if m.value.endswith("+") else device == m.value)
    elif o == "--mark":
        value, mask = m.value
        hit = s.mark & mask == value
    elif o == "--ctstate":
        hit = bool(m.value & s.ctstate)
    elif o == "--rcheck":
        hit = m.value in s.recent
    elif o == "--set":
        s.recent.add(m.value)
        s.recent_set.append(m.value)
        hit = True
    else:  # --probability
        p, k = m.value
        hit = s.decide(p)
        s.decisions.append(hit)
        s.probability *= p if hit else 1 - p
        s.kernel *= k if hit else 1 - k
    return hit != m.negated


def _mark(value: str) -> tuple[int, int]:
    mark, _, mask = value.partition("/")
    return int(mark, 0), int(mask, 0) if mask else 0xFFFFFFFF


class Ruleset:
    """The tables and chains of an ``iptables-restore`` input, plus kube-proxy's built-in jumps.

    ``ruleset["nat"]["KUBE-SERVICES"]`` is a :class:`Chain`; ``len(ruleset)`` counts the rules.
    """

    def __init__(self, tables: dict[str, dict[str, Chain]]) -> None:
        self.tables = tables

    @classmethod
    def parse(cls, text: str, *, builtin_jumps: bool = True) -> Ruleset:
        """Read ``*table``, ``:CHAIN`` declarations, ``-A`` rules, ``-X`` deletions and ``COMMIT``.

        With ``builtin_jumps`` the jumps of :data:`BUILTIN_JUMPS` whose target is declared are
        added to the built-in chains (policy ACCEPT), as kube-proxy keeps them on a node.
        """
        tables: dict[str, dict[str, Chain]] = {}
        table: dict[str, Chain] | None = None
        name = ""
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("*"):
                name = line[1:].strip()
                table = tables.setdefault(name, {})
            elif table is None:
                raise InvalidValue("iptables-restore", f"line {number}", line, "must come after a '*table' line")
            elif line == "COMMIT":
                table = None
            elif line.startswith(":"):
                chain, policy = (line[1:].split() + ["-"])[:2]
                table[chain] = Chain(name, chain, policy=None if policy == "-" and chain not in BUILTIN else
                                     ("ACCEPT" if policy == "-" else policy))
            elif line.startswith("-X "):
                table.pop(line[3:].strip(), None)
            elif line.startswith("-A "):
                chain = line[3:].split(" ", 1)[0]
                if chain not in table:
                    raise InvalidValue("iptables-restore", f"line {number}", line, f"adds to undeclared chain {chain}")
                table[chain].add(line)
            else:
                raise InvalidValue("iptables-restore", f"line {number}", line, "is not a table, chain, rule or COMMIT")
        if table is not None:
            raise InvalidValue("iptables-restore", "COMMIT", name, "must end every table")
        if builtin_jumps:
            for (table_name, chain_name), jumps in BUILTIN_JUMPS.items():
                chains = tables.setdefault(table_name, {})
                if chain_name in chains:  # a whole iptables-save dump: its built-in chains are as it says
                    continue
                chain = chains[chain_name] = Chain(table_name, chain_name, policy="ACCEPT")
                for jump in jumps:
                    if jump.rsplit("-j ", 1)[1] in chains:
                        chain.add(f"-A {chain_name} {jump}")
        return cls(tables)

    def __getitem__(self, table: str) -> dict[str, Chain]:
        return self.tables[table]

    def __len__(self) -> int:
        return sum(len(c.rules) for t in self.tables.values() for c in t.values())

    def __repr__(self) -> str:
        return f"<Ruleset {', '.join(f'{t}: {len(c)} chains' for t, c in self.tables.items())}; {len(self)} rules>"

    # -- the walk -------------------------------------------------------------------------------

    def walk(self, flow: Flow, *, local: Iterable = (), seed: int | None = 0, endpoint: str | None = None,
             ) -> NetfilterResult:
        """Walk ``flow`` through the hooks; ``local`` are the host's own addresses (``addrtype LOCAL``).

        Every branch of the ``-m statistic`` rules is followed, for the exact probabilities; the branch
        reported as taken is the one a seeded draw at each statistic rule gives (``seed``), or the one
        that DNATs to ``endpoint`` (``"ip:port"`` or the IP; :class:`InvalidValue` if no branch does).
        """
        local = frozenset(ipaddress.ip_address(a) for a in local)
        branches, pending = [], [()]
        while pending:
            forced = pending.pop()

            def decide(p: Fraction, forced=forced) -> bool:
                i = len(current.decisions)
                if i < len(forced):
                    return forced[i]
                pending.append((*current.decisions, False))
                return True

            current = _State(flow, local, decide)
            branches.append(self._run(current))
        branches.sort(key=lambda b: [not d for d in b.decisions])
        rng = random.Random(seed)
        drawn = self._run(_State(flow, local, lambda p: rng.random() < p)).decisions
        result = NetfilterResult(flow, next(b for b in branches if b.decisions == drawn), tuple(branches))
        return result if endpoint is None else result.choose(endpoint)

    def _run(self, s: _State) -> Branch:
        flow = s.flow
        s.dst, s.dport, s.recent = flow.dst, flow.dport, set(flow.recent)
        try:
            if flow.locally_generated:
                self._hook("nat", "OUTPUT", s)
                self._hook("filter", "OUTPUT", s)
                self._hook("nat", "POSTROUTING", s)
                if s.is_local(s.dst):
                    self._hook("filter", "INPUT", s)
            else:
                self._hook("nat", "PREROUTING", s)
                if s.is_local(s.dst):
                    self._hook("filter", "INPUT", s)
                else:
                    self._hook("filter", "FORWARD", s)
                    self._hook("nat", "POSTROUTING", s)
        except _Stop:
            pass
        return Branch(tuple(s.decisions), s.probability, s.kernel, tuple(s.steps), tuple(s.chains), s.evaluated,
                      s.verdict, s.verdict_rule, s.dnat, s.dnat_rule, s.masquerade_rule is not None,
                      s.masquerade_rule, s.mark, tuple(s.recent_set))

    def _hook(self, table: str, chain: str, s: _State) -> None:
        if chain in self.tables.get(table, {}) and self._chain(table, chain, s) is None \
                and self.tables[table][chain].policy in ("DROP", "REJECT"):
            s.verdict, s.verdict_rule = self.tables[table][chain].policy, None
            raise _Stop

    def _chain(self, table: str, name: str, s: _State) -> str | None:
        """Run one chain; return the verdict that ends the table's hook, or ``None`` to go on."""
        chain = self.tables[table][name]
        s.chains.append(f"{table} {name}")
        done = 0
        for position in chain.candidates(s.dst, s.flow.proto, s.dport):
            if position < done:
                continue
            rule = chain.rules[position]
            s.evaluated += position + 1 - done
            done = position + 1
            if not all(_matches(m, s) for m in rule.matches):
                continue
            s.steps.append(Step(rule, s.mark))
            verdict = self._target(rule, s)
            if verdict == "RETURN":
                return None
            if verdict is not None:
                return verdict
        s.evaluated += len(chain.rules) - done
        return None

    def _target(self, rule: Rule, s: _State) -> str | None:
        target = rule.target
        if target is None:
            return None
        if target == "MARK":
            for option, value in rule.options:
                if option in ("--or-mark", "--xor-mark", "--and-mark"):
                    bits = int(value, 0)
                    s.mark = s.mark | bits if option == "--or-mark" else (
                        s.mark ^ bits if option == "--xor-mark" else s.mark & bits)
                elif option in ("--set-xmark", "--set-mark"):
                    bits, mask = _mark(value)
                    s.mark = (s.mark & ~mask) ^ bits if option == "--set-xmark" else (s.mark & ~mask) | bits
            return None
        if target == "RETURN":
            return "RETURN"
        if target == "DNAT":
            address = rule.option("--to-destination")
            host, _, port = address.rpartition(":")
            s.dst = ipaddress.ip_address(host.strip("[]") or address)
            s.dport = int(port) if host else s.dport
            s.dnat, s.dnat_rule = address, rule
            s.ctstate.add("DNAT")
            return "ACCEPT"
        if target in ("MASQUERADE", "SNAT"):
            s.masquerade_rule = rule
            return "ACCEPT"
        if target == "ACCEPT":
            s.verdict_rule = rule
            return "ACCEPT"
        if target in ("DROP", "REJECT"):
            s.verdict, s.verdict_rule = target, rule
            raise _Stop
        if target not in self.tables[rule.table]:
            raise InvalidValue(f"iptables {rule.table} {rule.chain}", "-j", target, "must name a chain of the table")
        return self._chain(rule.table, target, s)
