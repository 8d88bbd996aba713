"""The balancer interface shared by every algorithm, and small helpers they reuse.

A balancer owns a fixed tuple of :class:`~pulsegate.balancing.target.Target` objects (build a new
balancer when the set or the weights change) and reads their live ``available``, ``inflight`` and
``ewma_us`` on every :meth:`Balancer.pick`.

Contract of ``pick(key=None, exclude=None)``, common to all algorithms:

- never returns a target whose ``available`` is False;
- never returns ``exclude`` while another available target exists. ``exclude`` is a preference,
  not a ban: when it is the *only* available target it is returned, so a retry after a stale
  keep-alive connection still has somewhere to go (the caller can compare ``picked is exclude``
  to refuse a same-target retry);
- returns None when no target is available (or the balancer has no targets);
- ``key`` is only used by ``consistent_hash``; the other algorithms ignore it.

Balancers are not thread-safe: each event loop (worker) owns its own instances.

Example:
    >>> from pulsegate.balancing import Target, make_balancer
    >>> b: Balancer = make_balancer("round_robin", [Target("10.0.0.1:80"), Target("10.0.0.2:80")])
    >>> [t.address for t in (b.pick(), b.pick(), b.pick())]
    ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.1:80']
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import Literal, Protocol, get_args

from pulsegate.balancing.target import Target

BalancerKind = Literal["round_robin", "least_conn", "p2c_ewma", "consistent_hash", "random"]
BALANCER_KINDS: tuple[str, ...] = get_args(BalancerKind)


class Balancer(Protocol):
    """What the proxy calls once per upstream attempt."""

    @property
    def targets(self) -> Sequence[Target]:
        """The targets this balancer chooses from (fixed at construction)."""
        ...

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """Choose a target for one attempt; see the module docstring for the contract."""
        ...


def normalized_weights(targets: Sequence[Target]) -> tuple[int, ...]:
    """Weights divided by their greatest common divisor.

    Scaling every weight by the same factor changes no algorithm's choices, and smaller weights
    keep precomputed tables (round-robin schedule, cumulative sums) short.

    >>> normalized_weights([Target("a:1", 4), Target("b:1", 6)])
    (2, 3)
    """
    weights = [t.weight for t in targets]
    if not weights:
        return ()
    g = gcd(*weights)
    return tuple(w // g for w in weights)


def cumulative(weights: Sequence[int]) -> tuple[list[float], float]:
    """Running sums for weighted sampling with ``bisect_right(cum, r * total)``.

    Floats (exact for integer sums below 2**53) because ``bisect`` compares them with the float
    ``r * total``, and float-to-float comparisons are markedly faster than float-to-int ones.
    The last running sum (the total) is left out on purpose: ``bisect_right`` then returns at
    most ``len(weights) - 1`` even if ``r * total`` rounds up to ``total``.

    >>> cumulative([1, 2, 3])
    ([1.0, 3.0], 6.0)
    """
    cum: list[float] = []
    total = 0
    for w in weights:
        total += w
        cum.append(float(total))
    return cum[:-1], float(total)
