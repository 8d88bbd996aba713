"""The input to the route table: one rule per configured route, independent of the config model.

A rule matches when every condition it names holds; ``payload`` is whatever the caller wants back
(the proxy stores its runtime route object there).

Example:
    >>> r = RouteRule(name="api", payload="api-upstream", host="api.example.com", path_prefix="/v1/")
    >>> r.conditions()
    2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class RouteRule(Generic[P]):
    """One route's match conditions, as text from the config.

    - ``host``: exact (``api.example.com``) or wildcard (``*.example.com`` matches any name ending
      in ``.example.com``, at any depth, but not ``example.com`` itself); case-insensitive; None = any.
    - at most one of ``path`` (exact), ``path_prefix``, ``path_regex`` (Python ``re`` syntax, matched
      with ``re.match`` against the path without the query string); a ``path_prefix`` of ``/`` is the
      same as no path condition.
    - ``methods``: upper-case method names; empty = any.
    - ``headers``: header name -> exact value; names are case-insensitive, values are not.
    """

    name: str
    payload: P
    host: str | None = None
    path: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=())

    def conditions(self) -> int:
        """How many conditions this rule names (used to order rules sharing a path key)."""
        path_given = self.path is not None or self.path_regex is not None
        path_given = path_given or (self.path_prefix is not None and self.path_prefix != "/")
        return (self.host is not None) + path_given + bool(self.methods) + len(self.headers)
