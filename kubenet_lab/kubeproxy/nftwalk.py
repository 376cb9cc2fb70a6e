"""The nftables walk: one packet through kube-proxy's nftables ruleset, the way the kernel evaluates it.

The twin of :mod:`.netfilter` for kube-proxy's nftables mode. :meth:`NftRuleset.parse`
reads an ``nft -f`` transaction of ``add`` commands (what :meth:`KubeProxy.nft_ruleset
<kubenet_lab.kubeproxy.proxy.KubeProxy.nft_ruleset>` returns): tables, sets, maps and
their elements, chains and rules. :meth:`NftRuleset.walk` follows the *first packet*
of a connection (conntrack state ``new``) through the **base chains**, the chains with a
``hook``: at each hook, every base chain registered there runs in order of ``priority``
(lower first), whichever table it belongs to:

=====================  ===================================================================
packet                 hooks, in order (kube-proxy's base chains, priority)
=====================  ===================================================================
arrives on a device    prerouting (filter-prerouting-pre-dnat −110, nat-prerouting −100)
                       → routing → input (filter-input 0) for this host, or forward
                       (filter-forward 0) → postrouting (nat-postrouting 100)
locally generated      output (filter-output-pre-dnat −110, nat-output −100,
                       filter-output 0) → routing → postrouting (→ input over ``lo``)
=====================  ===================================================================

**Rules.** A rule is a row of expressions read left to right: a match
(``ip daddr 10.96.0.1``, ``ip saddr != { 203.0.113.0/25 }``, ``fib daddr type local``,
``ip daddr @nodeport-ips``) stops the rule when it fails; a statement changes the
packet (``mark set mark or 0x4000``, ``update @affinity-… { ip saddr }``, ``dnat to
10.244.1.2:8080``, ``masquerade``); a verdict ends it: ``jump`` enters a chain and comes
back, ``goto`` enters a chain and does *not* come back (at its end the walk returns to
whoever jumped last), ``return`` goes back, ``accept`` ends this base chain (the next base
chain still runs), ``drop`` and ``reject`` end the packet. ``dnat`` and ``masquerade``
are terminal: they accept. A base chain's end applies its policy (``accept``).

**Maps instead of rule lists.** Where iptables compares a packet with one
``KUBE-SERVICES`` rule per Service, nftables builds a key from the packet and looks it
up once: ``ip daddr . meta l4proto . th dport vmap @service-ips`` hashes
``(10.96.0.1, tcp, 443)`` and jumps to the verdict stored there; no element, and the
rule does not match. The walk counts such a rule as **one** rule evaluated, whatever
the size of the map, so ``evaluated`` compares fairly with the iptables walk's count.

**Load balancing.** ``numgen random mod n vmap { 0 : goto endpoint-A , 1 : … }`` draws
one number per new connection: each endpoint gets exactly ``1/n`` (``probability``). In
the kernel (``nft_numgen.c``) the draw is ``reciprocal_scale(get_random_u32(), n)``,
``(r * n) >> 32`` for a 32-bit random ``r``, so index ``i`` really has
``(ceil((i+1)·2³²/n) − ceil(i·2³²/n)) / 2³²``: 1/3 becomes 1431655766/2³² for the first
endpoint and 1431655765/2³² for the others (``kernel_probability``). The walk follows
every index for the exact odds; the branch reported as taken is a seeded draw, or the
one that DNATs to ``endpoint``. Session affinity: ``Flow.recent`` names the
``affinity-…`` sets that already hold the source.

The result is the same :class:`~kubenet_lab.kubeproxy.netfilter.NetfilterResult` as the
iptables walk gives; its steps are :class:`NftRule` objects: the rules that fired and,
after a map lookup that hit, the map element that decided.

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> rules = NftRuleset.parse(c.kube_proxy("node-1").nft_ruleset())
>>> web = c.service("web").cluster_ips[0]
>>> result = rules.walk(Flow("10.244.0.3", web, "tcp", 80, in_interface="cni0"), local=["192.168.0.11"])
>>> result.verdict, result.dnat in {"10.244.0.2:8080", "10.244.1.2:8080", "10.244.2.2:8080"}
('ACCEPT', True)
>>> [str(p) for p in result.probabilities.values()]
['1/3', '1/3', '1/3']
>>> [str(p) for p in result.kernel_probabilities.values()]
['715827883/2147483648', '1431655765/4294967296', '1431655765/4294967296']
>>> result.chains[:4]
('filter-prerouting-pre-dnat', 'firewall-check', 'nat-prerouting', 'services')
>>> forced = rules.walk(Flow("10.244.0.3", web, "tcp", 80, in_interface="cni0"), local=["192.168.0.11"],
...                     endpoint="10.244.1.2:8080")
>>> print(forced.dnat_rule)
add rule ip kube-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 meta l4proto tcp dnat to 10.244.1.2:8080
>>> forced.evaluated, forced.masquerade    # filter 2, nat 1+1+2+2, filter-forward 2+1+2, nat-postrouting 1+1
(15, False)

Introduced in chapter 05 (kube-proxy modes), beside the iptables walk of chapter 04;
used by :func:`kubenet_lab.datapath.trace.trace` for clusters whose ``kubeProxy.mode``
is ``nftables``.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from ..errors import InvalidValue
from .netfilter import LOOPBACK, LOOPBACK6, Branch, Flow, NetfilterResult, Step

__all__ = ["NftRuleset", "NftRule", "NftChain", "NftSet", "numgen_kernel_probability", "Flow"]

_TOKEN = re.compile(r'"[^"]*"|[{},]|[^\s{},]+')
BREAK = object()  # an expression did not match: the rule ends, the next rule is tried
_KEY_TYPES = {"ipv4_addr": "addr", "ipv6_addr": "addr", "inet_proto": "proto", "inet_service": "port",
              "mark": "mark", "ifname": "iface"}


@lru_cache(maxsize=256)
def numgen_kernel_probability(index: int, modulus: int) -> Fraction:
    """The share of 32-bit random numbers ``r`` for which ``(r * modulus) >> 32 == index``.

    That is how ``numgen random mod <modulus>`` picks (``nft_ng_random_gen`` calls
    ``reciprocal_scale(get_random_u32(), modulus)``), so it is the kernel's exact probability.

    >>> numgen_kernel_probability(0, 3), numgen_kernel_probability(2, 3)
    (Fraction(715827883, 2147483648), Fraction(1431655765, 4294967296))
    >>> sum(numgen_kernel_probability(i, 7) for i in range(7)), numgen_kernel_probability(1, 4)
    (Fraction(1, 1), Fraction(1, 4))
    """
    def first(i: int) -> int:  # the smallest r with r * modulus >= i * 2**32
        return -(-(i << 32) // modulus)

    return Fraction(first(index + 1) - first(index), 1 << 32)


@dataclass(eq=False)
class NftRule:
    """One line of the transaction that decided something: an ``add rule`` (``number`` is its position
    in the chain, from 1; nft's own handles are numbered differently) or an ``add element`` of a verdict map.

    ``target`` names what it does, in the iptables walk's terms where they exist: the chain of a
    ``jump``/``goto`` (``mark-for-masquerade``), ``DNAT``, ``MASQUERADE``, ``ACCEPT``, ``DROP``,
    ``REJECT``, ``RETURN``; ``None`` for a rule that only sets something.
    """

    table: str
    chain: str
    number: int
    text: str
    target: str | None = None
    comment: str | None = None
    ops: tuple = field(default=(), repr=False)  # the compiled expressions, see _Parser

    def __str__(self) -> str:
        return self.text


@dataclass
class NftSet:
    """A named set or map: its key fields (``addr``, ``proto``, ``port``...), flags, and elements.

    A map's elements map a key to ``(verdict, element line)``; a ``dynamic`` set (kube-proxy's
    ``affinity-…`` sets) is filled by ``update`` statements while packets pass, so its contents
    are the walk's (``Flow.recent``), not the transaction's.
    """

    name: str
    fields: tuple[str, ...]
    is_map: bool
    flags: frozenset[str] = frozenset()
    elements: dict = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return "dynamic" in self.flags


@dataclass
class NftChain:
    """A chain's rules in order; a base chain also has its ``type``, ``hook``, ``priority`` and policy."""

    name: str
    rules: list[NftRule] = field(default_factory=list)
    kind: str | None = None
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"


@dataclass
class _Table:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return 6 if self.family == "ip6" else 4


# -- parsing -------------------------------------------------------------------------------------


def _literal(kind: str, text: str, where: str):
    """A constant as the field of ``kind`` holds it: an address or network, a name, a number."""
    try:
        if kind == "addr":
            return ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
        if kind in ("port", "mark"):
            return int(text, 0)
        if kind == "ctstate":
            return frozenset(text.split(","))
        return text.strip('"')
    except ValueError:
        raise InvalidValue(where, kind, text, f"must be a valid {kind} value") from None


def _value_test(kind: str, literal) -> Callable[[object], bool]:
    """A predicate comparing a packet field of ``kind`` with one constant."""
    if kind == "addr":
        if isinstance(literal, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return lambda v: v in literal
        return lambda v: v == literal
    if kind == "iface" and literal.endswith("*"):
        prefix = literal[:-1]
        return lambda v: v is not None and v.startswith(prefix)
    if kind == "ctstate":
        return lambda v: v in literal
    return lambda v: v == literal


class _Parser:
    """Compiles one rule's words into expressions: functions of the walk's state returning ``None``
    (go on), :data:`BREAK` (no match) or a verdict (``"accept"``, ``("goto", chain)``...)."""

    def __init__(self, words: list[str], table: _Table, rule: NftRule):
        self.words, self.table, self.rule, self.i = words, table, rule, 0
        self.where = f"nft {table.family} {table.name} {rule.chain}"

    def fail(self, why: str):
        raise InvalidValue(self.where, "rule", " ".join(self.words), why)

    def peek(self, offset: int = 0) -> str | None:
        j = self.i + offset
        return self.words[j] if j < len(self.words) else None

    def take(self) -> str:
        word = self.peek()
        if word is None:
            self.fail("ends too early")
        self.i += 1
        return word

    def selector(self):
        """(getter, kind) for the packet field at the cursor, or ``None``."""
        w0, w1 = self.peek(), self.peek(1)
        if w0 in ("ip", "ip6") and w1 in ("daddr", "saddr"):
            self.i += 2
            return ((lambda s: s.dst) if w1 == "daddr" else (lambda s: s.flow.src)), "addr"
        if (w0, w1) == ("meta", "l4proto"):
            self.i += 2
            return (lambda s: s.flow.proto), "proto"
        if (w0, w1) == ("th", "dport"):
            self.i += 2
            return (lambda s: s.dport), "port"
        if w0 == "fib" and w1 in ("daddr", "saddr") and self.peek(2) == "type":
            self.i += 3
            if w1 == "daddr":
                return (lambda s: "local" if s.is_local(s.dst) else "unicast"), "fibtype"
            return (lambda s: "local" if s.is_local(s.flow.src) else "unicast"), "fibtype"
        if (w0, w1) == ("ct", "state"):
            self.i += 2
            return (lambda s: "new"), "ctstate"  # the walk follows a connection's first packet
        if w0 == "mark":
            self.i += 1
            return (lambda s: s.mark), "mark"
        if w0 == "iifname":
            self.i += 1
            return (lambda s: s.flow.in_interface), "iface"
        return None

    def anonymous_set(self, kind: str) -> list:
        self.take()  # {
        values = []
        while (word := self.take()) != "}":
            if word != ",":
                values.append(_literal(kind, word, self.where))
        return values

    def named_set(self, name: str) -> NftSet:
        found = self.table.sets.get(name)
        if found is None:
            self.fail(f"uses @{name}, which is not a set or map of the table")
        return found

    def compile(self) -> tuple:
        ops = []
        while self.peek() is not None:
            word = self.peek()
            if word == "comment":
                self.i += 1
                self.rule.comment = self.take().strip('"')
            elif word in ("jump", "goto"):
                self.i += 1
                target = self.take()
                self.rule.target = target
                ops.append(lambda s, v=(word, target): v)
            elif word in ("accept", "drop", "reject", "return"):
                self.i += 1
                self.rule.target = word.upper()
                ops.append(lambda s, v=word: v)
            elif word == "masquerade":
                self.i += 1
                while self.peek() in ("fully-random", "random", "persistent"):
                    self.i += 1
                self.rule.target = "MASQUERADE"
                ops.append(_masquerade)
            elif word == "dnat":
                self.i += 1
                if self.take() != "to":
                    self.fail("'dnat' must be followed by 'to <address>[:port]'")
                self.rule.target = "DNAT"
                ops.append(_dnat(self.take()))
            elif word == "update":
                self.i += 1
                name = self.take().lstrip("@")
                self.named_set(name)
                self._skip_braces()
                ops.append(_update(name))
            elif word == "numgen":
                ops.append(self.numgen())
            elif (w := (word, self.peek(1))) in (("tcp", "dport"), ("udp", "dport"), ("sctp", "dport")):
                self.i += 2
                port = _literal("port", self.take(), self.where)
                ops.append(lambda s, p=w[0], n=port: None if s.flow.proto == p and s.dport == n else BREAK)
            else:
                ops.append(self.expression())
        return tuple(ops)

    def _skip_braces(self) -> None:
        if self.take() != "{":
            self.fail("'update @set' must be followed by '{ <key> }'")
        while self.take() != "}":
            pass

    def numgen(self):
        self.i += 1
        if (self.take(), self.take()) != ("random", "mod"):
            self.fail("only 'numgen random mod <n>' is modelled")
        modulus = _literal("port", self.take(), self.where)
        if self.take() != "vmap" or self.take() != "{":
            self.fail("'numgen random mod <n>' must be followed by 'vmap { <i> : <verdict> , ... }'")
        table: dict[int, object] = {}
        entry: list[str] = []
        while True:
            word = self.take()
            if word in (",", "}"):
                if len(entry) < 3 or entry[1] != ":":
                    self.fail("each numgen vmap entry must read '<i> : <verdict>'")
                table[int(entry[0])] = _verdict(entry[2:], self)
                entry = []
                if word == "}":
                    break
            else:
                entry.append(word)
        if sorted(table) != list(range(modulus)):
            self.fail(f"the numgen vmap must map every index 0..{modulus - 1}")
        choices = tuple(table[i] for i in range(modulus))
        return lambda s: choices[s.draw(modulus)]

    def expression(self):
        first = self.selector()
        if first is None:
            self.fail(f"'{self.peek()}' is not an expression kube-proxy writes")
        parts = [first]
        while self.peek() == ".":
            self.i += 1
            part = self.selector()
            if part is None:
                self.fail("'.' must join packet fields")
            parts.append(part)
        getters = tuple(g for g, _ in parts)
        kinds = tuple(k for _, k in parts)
        key = getters[0] if len(getters) == 1 else (lambda s: tuple(g(s) for g in getters))
        word = self.peek()
        if word == "vmap":
            self.i += 1
            target = self.take()
            if not target.startswith("@"):
                self.fail("only named verdict maps (vmap @name) are modelled outside numgen")
            return _map_lookup(self.named_set(target[1:]), key, self.rule)
        if word is not None and word.startswith("@"):
            self.i += 1
            return _set_lookup(self.named_set(word[1:]), key, negated=False)
        if len(parts) > 1:
            self.fail("a concatenation must be looked up in a set or map")
        (getter, kind) = parts[0]
        if kind == "mark" and word == "set":
            return self.mark_set()
        if kind == "mark" and word == "and":
            self.i += 1
            mask = _literal("mark", self.take(), self.where)
            negated = {"==": False, "!=": True}.get(self.take())
            if negated is None:
                self.fail("'mark and <mask>' must be followed by '== <value>' or '!= <value>'")
            value = _literal("mark", self.take(), self.where)
            return lambda s: None if ((s.mark & mask) == value) != negated else BREAK
        negated = False
        if word in ("!=", "=="):
            negated = word == "!="
            self.i += 1
            word = self.peek()
        if word is None:
            self.fail("a match needs a value")
        if word.startswith("@"):
            self.i += 1
            return _set_lookup(self.named_set(word[1:]), getter, negated)
        if word == "{":
            tests = [_value_test(kind, v) for v in self.anonymous_set(kind)]
            return lambda s: None if any(t(getter(s)) for t in tests) != negated else BREAK
        test = _value_test(kind, _literal(kind, self.take(), self.where))
        return lambda s: None if test(getter(s)) != negated else BREAK

    def mark_set(self):
        self.i += 1
        if self.peek() == "mark":
            self.i += 1
            operator = self.take()
            bits = _literal("mark", self.take(), self.where)
            apply = {"or": lambda m: m | bits, "xor": lambda m: m ^ bits, "and": lambda m: m & bits}.get(operator)
            if apply is None:
                self.fail("'mark set mark' must be followed by or, xor or and")
        else:
            value = _literal("mark", self.take(), self.where)
            apply = lambda m: value  # noqa: E731

        def op(s):
            s.mark = apply(s.mark)
        return op


def _verdict(words: list[str], parser: _Parser):
    """A verdict as a map value: ``goto <chain>``, ``jump <chain>``, ``accept``, ``drop``, ``return``."""
    if len(words) == 2 and words[0] in ("jump", "goto"):
        return (words[0], words[1])
    if len(words) == 1 and words[0] in ("accept", "drop", "return"):
        return words[0]
    return parser.fail(f"'{' '.join(words)}' is not a verdict")


def _masquerade(s):
    s.masquerade_rule = s.rule
    return "accept"


def _dnat(to: str):
    host, _, port = to.rpartition(":")
    if not host or not host.endswith("]") and ":" in host:  # "10.0.0.1" or "fd00::1": no port given
        host, port = to, ""
    address = ipaddress.ip_address(host.strip("[]"))
    number = int(port) if port else None

    def op(s):
        s.dst = address
        if number is not None:
            s.dport = number
        s.dnat, s.dnat_rule = to, s.rule
        return "accept"
    return op


def _update(name: str):
    def op(s):
        s.recent.add(name)
        s.recent_set.append(name)
    return op


def _set_lookup(found: NftSet, key, negated: bool):
    if found.dynamic:  # kube-proxy's affinity sets hold sources: the flow says which hold this one
        name = found.name
        return lambda s: None if (name in s.recent) != negated else BREAK
    elements = found.elements
    return lambda s: None if (key(s) in elements) != negated else BREAK


def _map_lookup(found: NftSet, key, rule: NftRule):
    if not found.is_map:
        raise InvalidValue(f"nft {rule.table} {rule.chain}", "vmap", f"@{found.name}", "must name a map, not a set")
    elements = found.elements

    def op(s):
        hit = elements.get(key(s))
        if hit is None:
            return BREAK
        verdict, s.element = hit
        return verdict
    return op


# -- the ruleset ------------------------------------------------------------------------------------

_ADD = re.compile(r"add (table|chain|set|map|rule|element) (ip6?|inet) (\S+)(?: (.*))?$")


class NftRuleset:
    """The tables of an ``nft -f`` transaction of ``add`` commands, ready to walk packets through.

    ``ruleset.chain("services")`` is an :class:`NftChain`, ``ruleset.set("service-ips")`` an
    :class:`NftSet`; ``len(ruleset)`` counts the rules.
    """

    def __init__(self, tables: list[_Table]) -> None:
        self.tables = tables
        self._hooks: dict[tuple[int, str], tuple[tuple[_Table, NftChain], ...]] = {}
        for version in (4, 6):
            for hook in ("prerouting", "input", "forward", "output", "postrouting"):
                chains = [(t, c) for t in tables if t.version == version or t.family == "inet"
                          for c in t.chains.values() if c.hook == hook]
                chains.sort(key=lambda tc: tc[1].priority)  # stable: equal priorities keep their order
                self._hooks[(version, hook)] = tuple(chains)

    @classmethod
    def parse(cls, text: str) -> NftRuleset:
        """Read ``add table|set|map|chain|rule|element`` lines (blank lines and ``#`` comments skipped).

        Raises :class:`InvalidValue` naming the line for anything else, for a reference to a chain,
        set or map that was not added before, and for an expression kube-proxy never writes.
        """
        tables: dict[tuple[str, str], _Table] = {}
        rules: list[tuple[int, str, _Table, str, str]] = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parsed = _ADD.match(line)
            if parsed is None:
                raise InvalidValue("nft -f", f"line {number}", line,
                                   "must be an 'add table|chain|set|map|rule|element' command")
            what, family, table_name, rest = parsed.groups()
            rest = rest or ""
            if what == "table":
                tables.setdefault((family, table_name), _Table(family, table_name))
                continue
            table = tables.get((family, table_name))
            if table is None:
                raise InvalidValue("nft -f", f"line {number}", line,
                                   f"uses table {family} {table_name} before adding it")
            name, _, body = rest.partition(" ")
            if what == "chain":
                table.chains.setdefault(name, _chain(name, body, line, number))
            elif what in ("set", "map"):
                table.sets.setdefault(name, _set(name, what == "map", body, line, number))
            elif what == "rule":
                if name not in table.chains:
                    raise InvalidValue("nft -f", f"line {number}", line, f"adds to chain {name}, which was not added")
                rules.append((number, line, table, name, body))
            else:
                target = table.sets.get(name)
                if target is None:
                    raise InvalidValue("nft -f", f"line {number}", line, f"adds to {name}, which is not a set or map")
                _add_elements(target, body, table, line, number)
        for number, line, table, chain_name, body in rules:  # sets and chains may follow the rules using them
            chain = table.chains[chain_name]
            rule = NftRule(f"{table.family} {table.name}", chain_name, len(chain.rules) + 1, line)
            rule.ops = _Parser(_TOKEN.findall(body), table, rule).compile()
            chain.rules.append(rule)
        ruleset = cls(list(tables.values()))
        ruleset._check_jumps()
        return ruleset

    def _check_jumps(self) -> None:
        for table in self.tables:
            for chain in table.chains.values():
                for rule in chain.rules:
                    if rule.target and rule.target not in ("DNAT", "MASQUERADE", "ACCEPT", "DROP", "REJECT", "RETURN") \
                            and rule.target not in table.chains:
                        raise InvalidValue(f"nft {rule.table} {rule.chain}", "jump", rule.target,
                                           "must name a chain of the table")

    def chain(self, name: str, family: str = "ip") -> NftChain:
        return next(t.chains[name] for t in self.tables if t.family == family and name in t.chains)

    def set(self, name: str, family: str = "ip") -> NftSet:
        return next(t.sets[name] for t in self.tables if t.family == family and name in t.sets)

    def __len__(self) -> int:
        return sum(len(c.rules) for t in self.tables for c in t.chains.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{t.family} {t.name}: {len(t.chains)} chains, {len(t.sets)} sets/maps" for t in self.tables)
        return f"<NftRuleset {inner}; {len(self)} rules>"

    # -- the walk ---------------------------------------------------------------------------------

    def walk(self, flow: Flow, *, local: Iterable = (), seed: int | None = 0, endpoint: str | None = None,
             ) -> NetfilterResult:
        """Walk ``flow`` through the base chains; ``local`` are the host's own addresses (``fib … type local``).

        Every index of every ``numgen`` is followed, for the exact probabilities; the branch reported as
        taken is a seeded draw at each ``numgen`` (``seed``), or the one that DNATs to ``endpoint``
        (``"ip:port"`` or the IP; :class:`InvalidValue` if no branch does).
        """
        local = frozenset(ipaddress.ip_address(a) for a in local)
        branches, pending = [], [()]
        while pending:
            forced = pending.pop()
            state = _State(flow, local, forced, pending)
            branches.append(self._run(state))
        branches.sort(key=lambda b: b.decisions)
        rng = random.Random(seed)
        drawn = self._run(_State(flow, local, (), None, rng)).decisions
        result = NetfilterResult(flow, next(b for b in branches if b.decisions == drawn), tuple(branches))
        return result if endpoint is None else result.choose(endpoint)

    def _run(self, s: _State) -> Branch:
        flow, version = s.flow, s.flow.dst.version
        try:
            if flow.locally_generated:
                self._hook(version, "output", s)
                self._hook(version, "postrouting", s)
                if s.is_local(s.dst):
                    self._hook(version, "input", s)
            else:
                self._hook(version, "prerouting", s)
                if s.is_local(s.dst):
                    self._hook(version, "input", s)
                else:
                    self._hook(version, "forward", s)
                    self._hook(version, "postrouting", s)
        except _Stop:
            pass
        return Branch(tuple(s.decisions), s.probability, s.kernel, tuple(s.steps), tuple(s.chains), s.evaluated,
                      s.verdict, s.verdict_rule, s.dnat, s.dnat_rule, s.masquerade_rule is not None,
                      s.masquerade_rule, s.mark, tuple(s.recent_set))

    def _hook(self, version: int, hook: str, s: _State) -> None:
        for table, chain in self._hooks[(version, hook)]:
            if self._chain(table, chain, s) is None and chain.policy == "drop":
                s.verdict, s.verdict_rule = "DROP", None
                raise _Stop

    def _chain(self, table: _Table, chain: NftChain, s: _State) -> str | None:
        """Run one chain; ``"accept"`` ends the base chain, ``None`` goes back to the caller."""
        s.chains.append(chain.name)
        for rule in chain.rules:
            s.evaluated += 1
            s.rule, s.element = rule, None
            verdict = None
            for op in rule.ops:
                verdict = op(s)
                if verdict is not None:
                    break
            if verdict is BREAK:
                continue
            s.steps.append(Step(rule, s.mark))
            decider = rule
            if s.element is not None:
                s.steps.append(Step(s.element, s.mark))
                decider = s.element
            if verdict is None:
                continue
            if verdict == "return":
                return None
            if verdict == "accept":
                return "accept"
            if verdict in ("drop", "reject"):
                s.verdict, s.verdict_rule = verdict.upper(), decider
                raise _Stop
            how, target = verdict
            outcome = self._chain(table, table.chains[target], s)
            if outcome is not None or how == "goto":
                return outcome
        return None


def _chain(name: str, body: str, line: str, number: int) -> NftChain:
    chain = NftChain(name)
    if "hook" in body:
        spec = re.search(r"type (\w+) hook (\w+) priority (-?\d+|\w+)", body)
        if spec is None:
            raise InvalidValue("nft -f", f"line {number}", line, "a base chain needs 'type <t> hook <h> priority <p>'")
        chain.kind, chain.hook = spec[1], spec[2]
        named = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
        chain.priority = int(spec[3]) if spec[3].lstrip("-").isdigit() else named.get(spec[3], 0)
        policy = re.search(r"policy (accept|drop)", body)
        chain.policy = policy[1] if policy else "accept"
    return chain


def _set(name: str, is_map: bool, body: str, line: str, number: int) -> NftSet:
    spec = re.search(r"type ([^;]+?)\s*;", body)
    if spec is None:
        raise InvalidValue("nft -f", f"line {number}", line, "a set or map needs 'type <key>[ : verdict]'")
    key = spec[1].split(":")[0]
    fields = tuple(_KEY_TYPES.get(t.strip(), t.strip()) for t in key.split(" . "))
    flags = re.search(r"flags ([\w,]+)", body)
    return NftSet(name, fields, is_map, frozenset(flags[1].split(",")) if flags else frozenset())


def _add_elements(target: NftSet, body: str, table: _Table, line: str, number: int) -> None:
    inner = body.strip()
    if not (inner.startswith("{") and inner.endswith("}")):
        raise InvalidValue("nft -f", f"line {number}", line, "elements must be written '{ ... }'")
    where = f"nft {table.family} {table.name} {target.name}"
    for element in re.findall(r'(?:[^,"]|"[^"]*")+', inner[1:-1]):
        comment = re.search(r'comment "([^"]*)"', element)
        text = re.sub(r'\s*comment "[^"]*"', "", element).strip()
        key_text, _, value_text = text.partition(" : ")
        words = [w.strip() for w in key_text.split(" . ")]
        if len(words) != len(target.fields):
            raise InvalidValue(where, "element", text, f"must have {len(target.fields)} key fields")
        values = tuple(_literal(kind, w, where) for kind, w in zip(target.fields, words))
        key = values[0] if len(values) == 1 else values
        if target.is_map:
            shown = NftRule(f"{table.family} {table.name}", target.name, len(target.elements) + 1,
                            f"add element {table.family} {table.name} {target.name} {{ {element.strip()} }}",
                            comment=comment[1] if comment else None)
            verdict = _verdict(value_text.split(), _Parser([], table, shown))
            shown.target = verdict[1] if isinstance(verdict, tuple) else verdict.upper()
            target.elements[key] = (verdict, shown)
        else:
            target.elements[key] = True


class _Stop(Exception):
    """The packet's fate is sealed (drop or reject)."""


class _State:
    """What one branch of the walk carries and changes."""

    __slots__ = ("flow", "local", "forced", "pending", "rng", "dst", "dport", "mark", "recent", "decisions",
                 "probability", "kernel", "steps", "chains", "evaluated", "verdict", "verdict_rule", "dnat",
                 "dnat_rule", "masquerade_rule", "recent_set", "rule", "element")

    def __init__(self, flow: Flow, local: frozenset, forced: tuple, pending: list | None,
                 rng: random.Random | None = None):
        self.flow, self.local, self.forced, self.pending, self.rng = flow, local, forced, pending, rng
        self.dst, self.dport, self.mark, self.recent = flow.dst, flow.dport, 0, set(flow.recent)
        self.decisions: list[int] = []
        self.probability = self.kernel = Fraction(1)
        self.steps: list[Step] = []
        self.chains: list[str] = []
        self.evaluated = 0
        self.verdict, self.verdict_rule = "ACCEPT", None
        self.dnat = self.dnat_rule = self.masquerade_rule = None
        self.recent_set: list[str] = []
        self.rule = self.element = None

    def is_local(self, address) -> bool:
        return address in self.local or address in (LOOPBACK if address.version == 4 else LOOPBACK6)

    def draw(self, modulus: int) -> int:
        """The index ``numgen random mod <modulus>`` gives on this branch."""
        i = len(self.decisions)
        if self.rng is not None:
            index = self.rng.randrange(modulus)
        elif i < len(self.forced):
            index = self.forced[i]
        else:  # a new draw: take 0 here, and come back for every other index
            index = 0
            self.pending.extend((*self.decisions, k) for k in range(modulus - 1, 0, -1))
        self.decisions.append(index)
        self.probability *= Fraction(1, modulus)
        self.kernel *= numgen_kernel_probability(index, modulus)
        return index
