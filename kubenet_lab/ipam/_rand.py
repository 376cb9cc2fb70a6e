"""Reproducible random draws for the allocators that pick at random.

Calico (block choice) and kube-apiserver (ClusterIP start point) draw from Go's
``math/rand``, whose stream Python cannot reproduce. The allocators here draw
from :class:`random.Random` instead, and only through :func:`rand_below`,
which uses nothing but ``Random.random()``: the one method whose sequence
Python promises to keep identical across versions for the same seed. So a
lesson's output is the same on every machine and every Python >= 3.10.

>>> import random
>>> a, b = random.Random(7), random.Random(7)
>>> [rand_below(a, 1000) for _ in range(3)] == [rand_below(b, 1000) for _ in range(3)]
True
"""

from __future__ import annotations

import random

_WORD = 32
_SCALE = 1 << _WORD


def rand_below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)`` built from 32-bit slices of ``rng.random()``.

    Works for any positive ``n``, including the 2**64-sized IPv6 ranges that a
    float cannot index directly (rejection sampling, as Go's ``Int63n`` does).
    """
    bits = n.bit_length()
    while True:
        value, have = 0, 0
        while have < bits:
            value = (value << _WORD) | int(rng.random() * _SCALE)
            have += _WORD
        value >>= have - bits
        if value < n:
            return value
