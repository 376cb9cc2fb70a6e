"""kube-proxy's own test harness, ported, so its expected outputs can be checked as its tests check them.

From kubernetes/kubernetes ``pkg/proxy/iptables/proxier_test.go`` (v1.33 line) and
``pkg/util/iptables/testing/parse.go``:

* ``NewFakeProxier``'s configuration, as :func:`fake_proxier_settings`;
* ``makeTestService`` / ``makeTestEndpointSlice`` equivalents building
  :mod:`kubenet_lab.objects` values, with the API's reading of unset fields;
* ``ParseIPTablesDump`` (the parts the tests use) and ``IPTablesDump.String``;
* ``sortIPTablesRules``, with Go's ``sort.SliceStable`` algorithm, so that even
  comparisons that are not a strict weak order come out as they do in Go;
* ``assertIPTablesRulesEqual``, ``assertIPTablesChainEqual``,
  ``checkIPTablesRuleJumps``;
* the packet tracer (``tracePacket`` / ``runPacketFlowTests``).

These are test helpers, not a model of netfilter: the tracer follows every
``-m statistic`` branch and treats matches it does not know as matching,
exactly like the upstream one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from kubenet_lab.kubeproxy import ProxierSettings
from kubenet_lab.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort

# "Conventions for tests using NewFakeProxier" (proxier_test.go).
TEST_NODE_NAME = "test-node"
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IP_ALT = "192.168.1.2"
TEST_EXTERNAL_IP = "192.168.99.11"
TEST_NODE_IPV6 = "2001:db8::1"
TEST_NODE_IPV6_ALT = "2001:db8:1::2"
TEST_EXTERNAL_CLIENT = "203.0.113.2"
TEST_EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"
TEST_NODE_IPS = [TEST_NODE_IP, TEST_NODE_IP_ALT, TEST_EXTERNAL_IP, TEST_NODE_IPV6, TEST_NODE_IPV6_ALT]


def fake_proxier_settings(**overrides) -> ProxierSettings:
    """``NewFakeProxier``: node ``test-node`` with nodeIP 192.168.0.2, the local detector on
    10.0.0.0/8 (fd00:10::/64 for IPv6), mark printed ``0x4000``, localhost NodePorts on,
    nodePortAddresses unset, interfaces ``lo`` and ``eth0`` with the test addresses, both
    nfacct counters present, and a fake iptables without ``--random-fully``.
    """
    values = dict(
        node_ips=(TEST_NODE_IP,),
        cluster_cidrs=("10.0.0.0/8", "fd00:10::/64"),
        masquerade_mark="0x4000",
        localhost_nodeports=True,
        interface_addresses=("127.0.0.1", "::1", *TEST_NODE_IPS),
        nfacct=True,
        random_fully=False,
    )
    values.update(overrides)
    return ProxierSettings(TEST_NODE_NAME, **values)


def _ips(values) -> tuple:
    return tuple(ipaddress.ip_address(v) for v in values)


def make_service(namespace: str, name: str, cluster_ip: str, ports, *, type: str = "ClusterIP",
                 external_traffic_policy: str = "Cluster", internal_traffic_policy: str = "Cluster",
                 external_ips=(), load_balancer_ips=(), load_balancer_source_ranges=(),
                 session_affinity_timeout: int | None = None) -> Service:
    """``makeTestService``: a Service with the fields the tests set (unset ones as the API defaults them)."""
    return Service(
        name=name,
        namespace=namespace,
        ports=tuple(ports),
        cluster_ips=_ips([cluster_ip]),
        type=type,
        ip_families=("IPv6" if ":" in cluster_ip else "IPv4",),
        external_traffic_policy=external_traffic_policy,
        internal_traffic_policy=internal_traffic_policy,
        session_affinity="ClientIP" if session_affinity_timeout else "None",
        session_affinity_timeout=session_affinity_timeout,
        external_ips=_ips(external_ips),
        load_balancer_ips=_ips(load_balancer_ips),
        load_balancer_source_ranges=tuple(ipaddress.ip_network(r.strip()) for r in load_balancer_source_ranges),
    )


def port(name: str, number: int, protocol: str = "TCP", node_port: int | None = None) -> ServicePort:
    """A ``v1.ServicePort`` (targetPort does not reach kube-proxy: the slices carry the pod port)."""
    return ServicePort(port=number, target_port=number, protocol=protocol, name=name, node_port=node_port)


def endpoint(address: str, node: str | None = None, *, ready: bool | None = None, serving: bool | None = None,
             terminating: bool | None = None) -> Endpoint:
    """A ``discovery.Endpoint``; unset conditions read as kube-proxy reads them (ready and serving
    unless false, terminating only if true)."""
    return Endpoint(addresses=_ips([address]), ready=ready is not False, serving=serving is not False,
                    terminating=terminating is True, node_name=node)


def make_endpoint_slice(namespace: str, service: str, slice_num: int, endpoints, ports,
                        address_type: str = "IPv4") -> EndpointSlice:
    """``makeTestEndpointSlice``: named ``<service>-<n>``, labelled with the Service name."""
    return EndpointSlice(name=f"{service}-{slice_num}", service=service, namespace=namespace,
                         address_type=address_type, endpoints=tuple(endpoints), ports=tuple(ports))


def endpoint_port(name: str | None, number: int, protocol: str = "TCP") -> EndpointPort:
    return EndpointPort(port=number, name=name, protocol=protocol)


# -- ParseIPTablesDump ----------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """``IPTablesValue``: an option's value and whether it was negated with ``!``."""

    value: str
    negated: bool = False

    def matches(self, value: str) -> bool:
        return (self.value == value) != self.negated


# The options the tests look at, and the Rule attribute each one fills.
_FIELDS = {
    "--comment": "comment",
    "-p": "protocol",
    "-s": "source_address",
    "--src-type": "source_type",
    "-d": "destination_address",
    "--dport": "destination_port",
    "--dst-type": "destination_type",
    "-j": "jump",
    "--rcheck": "affinity_check",
    "--mark": "mark_check",
    "--ctstate": "ctstate_check",
    "--probability": "probability",
    "--to-destination": "dnat_destination",
}


def _words(text: str) -> list[str]:
    """Split a rule into words; a double-quoted string (a comment) is one word, without its quotes."""
    return [quoted if quoted else bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', text)]


@dataclass
class Rule:
    """``iptablestest.Rule``: the raw text plus the parsed options."""

    raw: str
    chain: str
    comment: Value | None = None
    protocol: Value | None = None
    source_address: Value | None = None
    source_type: Value | None = None
    destination_address: Value | None = None
    destination_port: Value | None = None
    destination_type: Value | None = None
    jump: Value | None = None
    affinity_check: Value | None = None
    mark_check: Value | None = None
    ctstate_check: Value | None = None
    probability: Value | None = None
    dnat_destination: Value | None = None

    @classmethod
    def parse(cls, raw: str) -> Rule:
        words = _words(raw)
        assert words[0] == "-A", raw
        rule = cls(raw=raw, chain=words[1])
        i, negated = 2, False
        while i < len(words):
            word = words[i]
            if word == "!":
                negated, i = True, i + 1
                continue
            has_value = i + 1 < len(words) and not words[i + 1].startswith("-") and words[i + 1] != "!"
            value = words[i + 1] if has_value and word.startswith("-") else ""
            if word in _FIELDS:
                setattr(rule, _FIELDS[word], Value(value, negated))
            negated = False
            i += 2 if value else 1
        return rule


@dataclass
class Chain:
    name: str
    packets: int = 0
    bytes: int = 0
    rules: list[Rule] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Table:
    name: str
    chains: list[Chain] = field(default_factory=list)

    def chain(self, name: str) -> Chain | None:
        return next((c for c in self.chains if c.name == name), None)


@dataclass
class IPTablesDump:
    tables: list[Table]

    @classmethod
    def parse(cls, data: str) -> IPTablesDump:
        """``ParseIPTablesDump``: tables, chain declarations, ``-A`` rules and ``-X`` deletions."""
        tables: list[Table] = []
        table: Table | None = None
        for line in data.rstrip("\n").split("\n"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                assert all(t.name != line[1:] for t in tables), f"duplicate table {line}"
                table = Table(line[1:])
                tables.append(table)
                continue
            assert table is not None, f"no table at {line!r}"
            if line == "COMMIT":
                table = None
            elif declared := re.fullmatch(r":([^ ]+) ([^ ]+) \[([0-9]+):([0-9]+)\]", line):
                assert table.chain(declared[1]) is None, f"duplicate chain {declared[1]}"
                table.chains.append(Chain(declared[1], int(declared[3]), int(declared[4])))
            elif added := re.fullmatch(r"-A ([^ ]+) (.*)", line):
                chain = table.chain(added[1])
                assert chain is not None, f"no such chain {added[1]}"
                chain.rules.append(Rule.parse(line))
            elif deleted := re.fullmatch(r"-X (.*)", line):
                chain = table.chain(deleted[1])
                assert chain is not None, f"no such chain {deleted[1]}"
                chain.deleted = True
            else:
                raise AssertionError(f"unrecognized line {line!r}")
        assert table is None, "missing COMMIT"
        return cls(tables)

    def chain(self, table: str, chain: str) -> Chain | None:
        t = next((t for t in self.tables if t.name == table), None)
        return None if t is None else t.chain(chain)

    def __str__(self) -> str:
        out = []
        for t in self.tables:
            out.append(f"*{t.name}\n")
            out.extend(f":{c.name} - [{c.packets}:{c.bytes}]\n" for c in t.chains)
            out.extend(f"{r.raw}\n" for c in t.chains for r in c.rules)
            out.extend(f"-X {c.name}\n" for c in t.chains if c.deleted)
            out.append("COMMIT\n")
        return "".join(out)


# -- Go's sort.SliceStable (insertion sort in blocks of 20, then SymMerge) --------------------


def go_slice_stable(items: list, less) -> None:
    """Sort ``items`` in place exactly as Go's ``sort.SliceStable(items, less)`` does."""

    def swap(i: int, j: int) -> None:
        items[i], items[j] = items[j], items[i]

    def lt(i: int, j: int) -> bool:
        return less(items[i], items[j])

    def insertion_sort(a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and lt(j, j - 1):
                swap(j, j - 1)
                j -= 1

    def swap_range(a: int, b: int, n: int) -> None:
        for i in range(n):
            swap(a + i, b + i)

    def rotate(a: int, m: int, b: int) -> None:
        i, j = m - a, b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def sym_merge(a: int, m: int, b: int) -> None:
        if m - a == 1:
            i, j = m, b
            while i < j:
                h = (i + j) >> 1
                if lt(h, a):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:
            i, j = a, m
            while i < j:
                h = (i + j) >> 1
                if not lt(m, h):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) >> 1
        n = mid + m
        if m > mid:
            start, r = n - b, mid
        else:
            start, r = a, m
        p = n - 1
        while start < r:
            c = (start + r) >> 1
            if not lt(p - c, c):
                start = c + 1
            else:
                r = c
        end = n - start
        if start < m < end:
            rotate(start, m, end)
        if a < start < mid:
            sym_merge(a, start, mid)
        if mid < end < b:
            sym_merge(mid, end, b)

    n = len(items)
    block = 20
    a, b = 0, block
    while b <= n:
        insertion_sort(a, b)
        a, b = b, b + block
    insertion_sort(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a, b = b, b + 2 * block
        if a + block < n:
            sym_merge(a, a + block, n)
        block *= 2


# -- sortIPTablesRules and the assertions built on it -----------------------------------------


def _order_by_comment_service_name(rule1: Rule, rule2: Rule) -> bool:
    if rule1.comment is None or rule2.comment is None:
        return False
    name1, name2 = re.split(r"[ :]", rule1.comment.value, maxsplit=1)[0], re.split(r"[ :]", rule2.comment.value, maxsplit=1)[0]
    return name1 < name2


def _chain_order(name: str) -> tuple:
    # KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-* alphabetically, then the rest alphabetically.
    return (name != "KUBE-NODEPORTS", name != "KUBE-SERVICES", not name.startswith("KUBE-"), name)


def sort_iptables_rules(rule_data: str) -> str:
    """``sortIPTablesRules``: order-independent form of kube-proxy output, keeping each chain's rule order."""
    dump = IPTablesDump.parse(rule_data)
    dump.tables.sort(key=lambda t: t.name)
    for table in dump.tables:
        table.chains.sort(key=lambda c: _chain_order(c.name))
    for table_name in ("filter", "nat"):
        chain = dump.chain(table_name, "KUBE-NODEPORTS")
        if chain is not None:
            go_slice_stable(chain.rules, _order_by_comment_service_name)
    chain = dump.chain("filter", "KUBE-SERVICES")
    if chain is not None:
        go_slice_stable(chain.rules, _order_by_comment_service_name)
    chain = dump.chain("nat", "KUBE-SERVICES")
    if chain is not None:
        def less(rule1: Rule, rule2: Rule) -> bool:
            if rule1.comment is not None and "must be the last rule" in rule1.comment.value:
                return False
            if rule2.comment is not None and "must be the last rule" in rule2.comment.value:
                return True
            return _order_by_comment_service_name(rule1, rule2)
        go_slice_stable(chain.rules, less)
    return str(dump)


def parse_iptables_data(rule_data: str) -> dict[str, list[str]]:
    """``parseIPTablesData``: each table's lines, split at the COMMIT lines."""
    raw_tables = rule_data.removeprefix("\n").split("COMMIT\n")
    assert len(raw_tables) - 1 >= 2 and raw_tables[-1] == "", f"bad ruleData ({len(raw_tables) - 1} tables)"
    tables = {}
    for raw in raw_tables[:-1]:
        lines = raw.strip("\n").split("\n")
        assert lines[0].startswith("*"), lines[0]
        tables[lines[0][1:]] = lines + ["COMMIT"]
    assert "nat" in tables and "filter" in tables
    return tables


def _find_all(lines: list[str], pattern: str) -> set[str]:
    return {m[1] for line in lines if (m := re.search(pattern, line))}


def check_iptables_rule_jumps(rule_data: str) -> None:
    """``checkIPTablesRuleJumps``: every jump goes to a declared, non-empty chain; no declared chain is unused."""
    for table, lines in parse_iptables_data(rule_data).items():
        created = _find_all(lines, r"^:([^ ]*)") - _find_all(lines, r"-X ([^ ]*)")
        filled = _find_all(lines, r"-A ([^ ]*)")
        jumped = _find_all(lines, r"-j ([^ ]*)") - {"ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT",
                                                      "MASQUERADE"}
        missing = (jumped - created) | (filled - created)
        assert not missing, f"some chains in {table} are used but were not created: {sorted(missing)}"
        empty = jumped - filled - {"KUBE-NODEPORTS"}
        assert not empty, f"some chains in {table} are jumped to but have no rules: {sorted(empty)}"
        extra = created - jumped - {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING",
                                    "KUBE-FORWARD", "KUBE-MARK-MASQ", "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"}
        assert not extra, f"some chains in {table} are created but not used: {sorted(extra)}"


def assert_iptables_rules_equal(expected: str, result: str, check_consistency: bool = True) -> None:
    """``assertIPTablesRulesEqual``: the sorted result equals the expected text."""
    expected = expected.lstrip(" \t\n")
    assert sort_iptables_rules(result.lstrip(" \t\n")) == expected
    if check_consistency:
        check_iptables_rule_jumps(expected)


def assert_iptables_chain_equal(table: str, chain: str, expected: str, result: str) -> None:
    """``assertIPTablesChainEqual``: exactly these rules, in this order, in one chain."""
    found = IPTablesDump.parse(result.lstrip(" \t\n")).chain(table, chain)
    text = "".join(rule.raw + "\n" for rule in found.rules) if found else ""
    assert text == expected.lstrip(" \t\n")


# -- the packet tracer ------------------------------------------------------------------------


def _address_matches(address: Value, ip_text: str) -> bool:
    ip = ipaddress.ip_address(ip_text)
    if "/" in address.value:
        matches = ip in ipaddress.ip_network(address.value)
    else:
        matches = ip == ipaddress.ip_address(address.value)
    return matches != address.negated


@dataclass
class _Tracer:
    dump: IPTablesDump
    local_ips: set[str]
    matches: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    mark_masq: bool = False

    def rule_matches(self, rule: Rule, source: str, protocol: str, dest: str, dport: str) -> bool:
        if rule.source_address is not None and not _address_matches(rule.source_address, source):
            return False
        if rule.source_type is not None and not rule.source_type.matches("LOCAL" if source in self.local_ips else "not-matched"):
            return False
        if rule.protocol is not None and not rule.protocol.matches(protocol):
            return False
        if rule.destination_address is not None and not _address_matches(rule.destination_address, dest):
            return False
        if rule.destination_type is not None and not rule.destination_type.matches("LOCAL" if dest in self.local_ips else "not-matched"):
            return False
        if rule.destination_port is not None and not rule.destination_port.matches(dport):
            return False
        # Any rule that checks for past state/history does not match.
        return rule.affinity_check is None and rule.mark_check is None and rule.ctstate_check is None

    def run_chain(self, table: str, chain_name: str, source: str, protocol: str, dest: str, dport: str) -> bool:
        chain = self.dump.chain(table, chain_name)
        if chain is None:
            return False
        for rule in chain.rules:
            if rule.jump is None or not self.rule_matches(rule, source, protocol, dest, dport):
                continue
            self.matches.append(rule.raw)
            target = rule.jump.value
            if target == "KUBE-MARK-MASQ":
                self.mark_masq = True
            elif target in ("ACCEPT", "REJECT", "DROP"):
                self.outputs.append(target)
                return True
            elif target == "DNAT":
                self.outputs.append(rule.dnat_destination.value)
                return True
            elif self.run_chain(table, target, source, protocol, dest, dport) and rule.probability is None:
                return True
        return False


def trace_packet(rule_data: str, source: str, protocol: str, dest: str, dport: str,
                 node_ips: list[str]) -> tuple[list[str], str, bool]:
    """``tracePacket``: the matched rules, the destinations (or ACCEPT/DROP/REJECT), and masquerading.

    Upstream starts at nat PREROUTING, whose only rule kube-proxy ensures is the
    jump to KUBE-SERVICES; the restore input does not contain it, so we start there.
    """
    tracer = _Tracer(IPTablesDump.parse(rule_data), {"127.0.0.1", "::1", *node_ips})
    tracer.run_chain("nat", "KUBE-SERVICES", source, protocol, dest, dport)
    if tracer.outputs:
        dest = tracer.outputs[0].split(":")[0]
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"):
        tracer.run_chain("filter", chain, source, protocol, dest, dport)
    return tracer.matches, ", ".join(tracer.outputs), tracer.mark_masq


@dataclass(frozen=True)
class Flow:
    """``packetFlowTest``."""

    name: str
    source: str
    dest: str
    dport: int
    output: str
    masq: bool = False
    protocol: str = "TCP"


def run_packet_flow_tests(rule_data: str, flows: list[Flow], node_ips: list[str] = TEST_NODE_IPS) -> None:
    """``runPacketFlowTests``: every flow's output and masquerade flag, all failures reported together."""
    errors = []
    for flow in flows:
        matches, output, masq = trace_packet(rule_data, flow.source, flow.protocol.lower(), flow.dest,
                                             str(flow.dport), node_ips)
        if output != flow.output or masq != flow.masq:
            errors.append(f"{flow.name}: expected {flow.output!r} masq={flow.masq}, got {output!r} masq={masq}\n  "
                          + "\n  ".join(matches))
    assert not errors, "\n".join(errors)
