"""Checkers for the graded exercises of the course notebooks.

A check cell calls one checker with the learner's answer. A right answer
prints one fixed line, ``PASS: <id> – <title>``, which the instructor's
notebook stores and nbval compares (the cell carries ``# NBVAL_CHECK_OUTPUT``).
A wrong answer raises :class:`AssertionError` with a hint, so the cell fails
under nbval, in JupyterLab and in nbgrader alike.

Expected answers are not stored in the package: each checker recomputes them
with the same allocators and models the chapter teaches, so reading the
checker's source teaches the method rather than giving the value away.

>>> passed("00.1", "the mechanism works")
PASS: 00.1 – the mechanism works
>>> require("00.2", 2 + 2 == 5, "Add the numbers again.")
Traceback (most recent call last):
...
AssertionError: 00.2: not yet. Add the numbers again.
"""

from __future__ import annotations

import ipaddress

__all__ = ["passed", "require", "address_set"]


def passed(exercise: str, title: str) -> None:
    """Print the fixed success line of an exercise."""
    print(f"PASS: {exercise} – {title}")


def require(exercise: str, condition: bool, hint: str) -> None:
    """Fail the check cell with ``hint`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError(f"{exercise}: not yet. {hint}")


def address_set(answer: object) -> set[str] | None:
    """A learner's collection of IP addresses (set, list, tuple) as the set of their canonical
    spellings, or None if it is no such collection.

    >>> sorted(address_set(["192.168.1.12", ipaddress.ip_address("192.168.1.11")]))
    ['192.168.1.11', '192.168.1.12']
    >>> address_set("192.168.1.11"), address_set({"node-1"})
    (None, None)
    """
    if not isinstance(answer, (set, frozenset, list, tuple)):
        return None
    try:
        return {str(ipaddress.ip_address(str(a))) for a in answer}
    except ValueError:
        return None
