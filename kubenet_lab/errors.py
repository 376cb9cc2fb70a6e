"""The one exception family of kubenet_lab.

Every error names the object it concerns, the field, and the bad value, in the
shape ``<object>: '<field>' <expectation> (got <value>)``, so a learner can find
the line of their scenario or notebook cell that caused it. Where the real
system has its own wording (kube-controller-manager, the CNI host-local
plugin, Calico, kube-apiserver), that text follows in brackets, so the message
can be searched for in their logs and sources.

Each class also inherits the builtin exception it refines, so ``except
ValueError`` and ``except KeyError`` keep working::

    KubenetLabError
     ├── InvalidValue        (ValueError)   a malformed or out-of-range value
     │    ├── Overlap                        two ranges that must be disjoint are not
     │    └── ScenarioError                  a scenario file that cannot be read
     ├── AlreadyExists       (ValueError)   a second object with a taken name/address
     ├── NotFound            (KeyError)     a reference to an object that does not exist
     ├── NotAllocated        (KeyError)     releasing something that was never handed out
     └── Exhausted           (RuntimeError) an allocator with nothing left to give

A call that raises leaves the allocator or cluster exactly as it was.

>>> from kubenet_lab.errors import InvalidValue
>>> raise InvalidValue("Cluster", "pod_cidr", "10.244.0.0/33", "must be an IPv4 or IPv6 CIDR")
Traceback (most recent call last):
...
kubenet_lab.errors.InvalidValue: Cluster: 'pod_cidr' must be an IPv4 or IPv6 CIDR (got '10.244.0.0/33')
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "KubenetLabError",
    "InvalidValue",
    "Overlap",
    "ScenarioError",
    "AlreadyExists",
    "NotFound",
    "NotAllocated",
    "Exhausted",
]


class KubenetLabError(Exception):
    """Base of every kubenet_lab error.

    Attributes:
        obj: what the error is about, e.g. ``"Node node-1"`` or ``"HostLocal 10.244.1.0/24"``.
        field: the field or argument holding the bad value, e.g. ``"spec.podCIDR"``.
        value: the bad value itself.
        expected: what the field should have been, as a sentence fragment.
        upstream: the real system's own error text, when there is one.
    """

    def __init__(self, obj: str, field: str, value: object, expected: str, upstream: str | None = None):
        self.obj = obj
        self.field = field
        self.value = value
        self.expected = expected
        self.upstream = upstream
        super().__init__(obj, field, value, expected, upstream)

    def __str__(self) -> str:
        # Addresses and networks are shown as the strings a user typed, anything else as its repr.
        value = self.value
        shown = repr(str(value)) if isinstance(value, (ipaddress._BaseAddress, ipaddress._BaseNetwork)) else repr(value)
        message = f"{self.obj}: '{self.field}' {self.expected} (got {shown})"
        if self.upstream:
            message += f" [{self.upstream}]"
        return message


class InvalidValue(KubenetLabError, ValueError):
    """A value that is malformed or outside what the real system accepts."""


class Overlap(InvalidValue):
    """Two ranges that must not share addresses do, e.g. pod CIDR and service CIDR."""


class ScenarioError(InvalidValue):
    """A scenario file that cannot be parsed or lacks what a scenario needs."""


class AlreadyExists(KubenetLabError, ValueError):
    """A name or address that is already taken."""


class NotFound(KubenetLabError, KeyError):
    """A reference to a node, pod or service that does not exist."""


class NotAllocated(KubenetLabError, KeyError):
    """Releasing an address or range that the allocator never handed out."""


class Exhausted(KubenetLabError, RuntimeError):
    """An allocator has no free address or range left."""
