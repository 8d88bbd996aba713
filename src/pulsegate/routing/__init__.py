"""Request routing: ``RouteRule`` (one configured route) compiled into a ``RouteTable``.

Example:
    >>> from pulsegate.routing import RouteRule, RouteTable
    >>> table = RouteTable([RouteRule("api", "api-pool", path_prefix="/api/")])
    >>> table.match(b"GET", b"example.com", b"/api/users", []).payload
    'api-pool'
"""

from pulsegate.routing.rule import RouteRule
from pulsegate.routing.table import Match, RouteTable

__all__ = ["Match", "RouteRule", "RouteTable"]
