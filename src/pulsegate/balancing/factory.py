"""Build a balancer by algorithm name (the ``balancer`` field of an upstream in the config).

Example:
    >>> import random
    >>> from pulsegate.balancing.target import Target
    >>> b = make_balancer("p2c_ewma", [Target("a:1"), Target("b:1")], rng=random.Random(0))
    >>> type(b).__name__
    'P2CEwmaBalancer'
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pulsegate.balancing.base import BALANCER_KINDS, Balancer
from pulsegate.balancing.consistent_hash import ConsistentHashBalancer
from pulsegate.balancing.least_conn import LeastConnBalancer
from pulsegate.balancing.p2c_ewma import P2CEwmaBalancer
from pulsegate.balancing.random_choice import RandomBalancer
from pulsegate.balancing.round_robin import RoundRobinBalancer
from pulsegate.balancing.target import Target


def make_balancer(kind: str, targets: Sequence[Target], *, rng: random.Random | None = None) -> Balancer:
    """A balancer of algorithm ``kind`` over ``targets``; ValueError for an unknown ``kind``.

    ``kind`` is one of ``round_robin``, ``least_conn``, ``p2c_ewma``, ``consistent_hash``,
    ``random``. ``rng`` feeds the randomised algorithms (``p2c_ewma``, ``random``); the default
    is a fresh ``random.Random()`` per balancer. The target tuple and weights are fixed: build a
    new balancer when they change (state such as the round-robin position starts over).

    >>> from pulsegate.balancing.target import Target
    >>> make_balancer("fastest", [Target("a:1")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown balancer 'fastest': expected one of round_robin, least_conn, ..., random
    """
    if kind == "round_robin":
        return RoundRobinBalancer(targets)
    if kind == "least_conn":
        return LeastConnBalancer(targets)
    if kind == "p2c_ewma":
        return P2CEwmaBalancer(targets, rng=rng)
    if kind == "consistent_hash":
        return ConsistentHashBalancer(targets)
    if kind == "random":
        return RandomBalancer(targets, rng=rng)
    raise ValueError(f"unknown balancer {kind!r}: expected one of {', '.join(BALANCER_KINDS)}")
