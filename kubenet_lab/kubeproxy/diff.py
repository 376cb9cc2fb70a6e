"""What one kube-proxy sync changes: the rules added and deleted between two rulesets.

Pods come and go all the time, and every change makes kube-proxy sync again.
Comparing two full ``iptables-restore`` inputs chain by chain shows what the
sync really touched: a pod moving changes one ``KUBE-SEP-`` chain and the
probabilities of its Service's ``KUBE-SVC-`` chain; a new Service adds a
jump in ``KUBE-SERVICES`` and its own chains. The result speaks iptables:
``-A`` lines that appear, ``-D`` lines that disappear, ``:CHAIN`` for chains
created and ``-X CHAIN`` for chains deleted. (A rule that only moves within
its chain is not listed: kube-proxy rewrites whole chains, so order changes
show up as the rules around them.)

>>> before = "*nat\\n:KUBE-SERVICES - [0:0]\\n-A KUBE-SERVICES -j KUBE-SVC-A\\nCOMMIT\\n"
>>> after = "*nat\\n:KUBE-SERVICES - [0:0]\\n:KUBE-SVC-B - [0:0]\\n-A KUBE-SERVICES -j KUBE-SVC-B\\nCOMMIT\\n"
>>> print(ruleset_diff(before, after))
*nat
:KUBE-SVC-B - [0:0]
-D KUBE-SERVICES -j KUBE-SVC-A
-A KUBE-SERVICES -j KUBE-SVC-B
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RulesetDiff", "ruleset_diff"]


def _tables(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (chains in order, rules in order) of an iptables-restore text."""
    tables: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], ([], []))
        elif current is not None and line.startswith(":"):
            current[0].append(line.split()[0][1:])
        elif current is not None and line.startswith("-A "):
            current[1].append(line)
    return tables


@dataclass(frozen=True)
class RulesetDiff:
    """Per table: chains created and deleted, rules deleted and added (in ruleset order)."""

    changes: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]

    @property
    def empty(self) -> bool:
        return not any(created or deleted or removed or added for _, created, deleted, removed, added in self.changes)

    @property
    def counts(self) -> dict[str, int]:
        """How many chains and rules the sync creates and deletes, over all tables."""
        return {
            "chains created": sum(len(c[1]) for c in self.changes),
            "chains deleted": sum(len(c[2]) for c in self.changes),
            "rules deleted": sum(len(c[3]) for c in self.changes),
            "rules added": sum(len(c[4]) for c in self.changes),
        }

    def __str__(self) -> str:
        lines: list[str] = []
        for table, created, deleted, removed, added in self.changes:
            if not (created or deleted or removed or added):
                continue
            lines.append(f"*{table}")
            lines += [f":{chain} - [0:0]" for chain in created]
            lines += ["-D" + rule[2:] for rule in removed]
            lines += list(added)
            lines += [f"-X {chain}" for chain in deleted]
        return "\n".join(lines)


def ruleset_diff(before: str, after: str) -> RulesetDiff:
    """The difference between two iptables-restore inputs of kube-proxy, table by table."""
    old, new = _tables(before), _tables(after)
    changes = []
    for table in [*old, *(t for t in new if t not in old)]:
        old_chains, old_rules = old.get(table, ([], []))
        new_chains, new_rules = new.get(table, ([], []))
        old_set, new_set = set(old_rules), set(new_rules)
        changes.append((
            table,
            tuple(c for c in new_chains if c not in set(old_chains)),
            tuple(c for c in old_chains if c not in set(new_chains)),
            tuple(r for r in old_rules if r not in new_set),
            tuple(r for r in new_rules if r not in old_set),
        ))
    return RulesetDiff(tuple(changes))
