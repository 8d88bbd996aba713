"""Load balancing: choose an upstream target per attempt.

Algorithms (see ``docs/balancing.md``): ``round_robin`` (nginx's smooth weighted round robin),
``least_conn``, ``p2c_ewma`` (power of two choices on latency x load), ``consistent_hash``
(Maglev) and ``random`` (weighted). Build one with :func:`make_balancer`; extract the
consistent-hash key of a request with :func:`compile_hash_key`.

Example:
    >>> from pulsegate.balancing import Target, make_balancer
    >>> b = make_balancer("least_conn", [Target("10.0.0.1:80"), Target("10.0.0.2:80")])
    >>> b.pick().address
    '10.0.0.1:80'
"""

from pulsegate.balancing.base import BALANCER_KINDS, Balancer, BalancerKind
from pulsegate.balancing.consistent_hash import ConsistentHashBalancer, key_hash
from pulsegate.balancing.factory import make_balancer
from pulsegate.balancing.hashkey import HashKeyFunc, compile_hash_key
from pulsegate.balancing.least_conn import LeastConnBalancer
from pulsegate.balancing.p2c_ewma import P2CEwmaBalancer
from pulsegate.balancing.random_choice import RandomBalancer
from pulsegate.balancing.round_robin import RoundRobinBalancer
from pulsegate.balancing.target import Target

__all__ = [
    "BALANCER_KINDS",
    "Balancer",
    "BalancerKind",
    "ConsistentHashBalancer",
    "HashKeyFunc",
    "LeastConnBalancer",
    "P2CEwmaBalancer",
    "RandomBalancer",
    "RoundRobinBalancer",
    "Target",
    "compile_hash_key",
    "key_hash",
    "make_balancer",
]
