"""The route table: ``RouteRule`` s compiled once into indexes; ``match`` takes a few hundred ns.

Lookup runs on every request, so everything that can be decided ahead of time is: rule text is
encoded to bytes, grouped by host, then by path key, sorted by precedence, shadowed rules are
dropped, and one immutable ``Match`` per rule is built so a lookup allocates nothing of its own
(the only allocations are the host-suffix slices of the first request for a new Host value, whose
candidate groups are then cached, and ``re`` match objects when regex rules are reached).

Precedence (docs/routing.md has the long form with examples):

1. host group: the exact host, then wildcard hosts by longest suffix, then host-less rules;
2. within a group, path: exact path, then path prefixes longest first, then regexes in config
   order, then rules without a path condition (``path_prefix="/"`` counts as none);
3. rules sharing a path key: more ``conditions()`` first, then config order.

A rule whose method/header conditions do not hold is skipped and the search goes on in that
order, across groups too.

Example:
    >>> t = RouteTable([
    ...     RouteRule("v1", "up-v1", host="api.example.com", path_prefix="/v1/"),
    ...     RouteRule("any", "up-default"),
    ... ])
    >>> t.match(b"GET", b"api.example.com", b"/v1/users", []).name
    'v1'
    >>> t.match(b"GET", b"www.example.com", b"/v1/users", []).name
    'any'
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from pulsegate.routing._prefix import PrefixIndex
from pulsegate.routing.rule import RouteRule

__all__ = ["Match", "RouteTable"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True, eq=False)
class Match(Generic[P]):
    """The answer of ``RouteTable.match``: one immutable instance per rule, built at compile time.

    ``prefix`` is the rule's ``path_prefix`` as bytes (for strip-prefix rewriting), else None.
    Identity comparison only: the same rule always returns the same object.

    Example:
        >>> t = RouteTable([RouteRule("api", 7, path_prefix="/api/")])
        >>> m = t.match(b"GET", b"", b"/api/x", [])
        >>> (m.name, m.payload, m.prefix)
        ('api', 7, b'/api/')
        >>> m is t.match(b"POST", b"h", b"/api/y", [])
        True
    """

    name: str
    payload: P
    prefix: bytes | None


# Header condition: (lower-case name, len(name), exact value). The length lets the scan skip
# most header names without lower-casing them.
_HeaderCond: TypeAlias = tuple[bytes, int, bytes]
# A rule that has method and/or header conditions: (methods or None, header conds or None, match).
_Cond: TypeAlias = tuple[frozenset[bytes] | None, tuple[_HeaderCond, ...] | None, Match[P]]
# Everything reachable under one path key, in precedence order: the conditional rules to try,
# then the first unconditional rule (which always matches; rules after it are shadowed), or None.
_Slot: TypeAlias = tuple[tuple[_Cond[P], ...], Match[P] | None]
_RegexMatch: TypeAlias = Callable[[bytes], object]


def _headers_hold(conds: tuple[_HeaderCond, ...], headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """True if, for every condition, the first header with that name has exactly that value."""
    for name, size, value in conds:
        for k, v in headers:
            # len() first: most names differ in length, so few headers are ever lower-cased.
            if len(k) == size and k.lower() == name:
                if v != value:
                    return False
                break
        else:
            return False
    return True


def _select(
    conds: tuple[_Cond[P], ...], method: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> Match[P] | None:
    """The first rule in ``conds`` whose method and header conditions hold."""
    for methods, hconds, match in conds:
        if methods is not None and method not in methods:
            continue
        if hconds is not None and not _headers_hold(hconds, headers):
            continue
        return match
    return None


class _HostGroup(Generic[P]):
    """All rules sharing one host key, indexed by path."""

    __slots__ = ("exact", "nopath", "pchain", "pkeys", "pslots", "regexes")

    def __init__(
        self,
        exact: dict[bytes, _Slot[P]],
        prefixes: dict[bytes, _Slot[P]],
        regexes: list[tuple[_RegexMatch, _Slot[P]]],
        nopath: _Slot[P] | None,
    ) -> None:
        self.exact = exact
        index = PrefixIndex(prefixes)
        self.pkeys = index.keys
        self.pchain = index.chain
        self.pslots = [prefixes[k] for k in index.keys]
        self.regexes = tuple(regexes)
        self.nopath = nopath

    def match(self, method: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]) -> Match[P] | None:
        """This group's best rule for the request: exact, prefixes, regexes, no-path, in order."""
        slot = self.exact.get(path)
        if slot is not None:
            conds, fallback = slot
            if not conds:
                return fallback
            found = _select(conds, method, headers)
            if found is not None:
                return found
            if fallback is not None:
                return fallback

        keys = self.pkeys
        if keys:
            # Longest prefix: see _prefix.py for why the largest key <= path and its chain suffice.
            chain = self.pchain
            i = bisect_right(keys, path) - 1
            while i >= 0 and not path.startswith(keys[i]):
                i = chain[i]
            # i is now the longest matching prefix (or -1). Every further chain entry is a prefix
            # of keys[i], hence of path: shorter prefixes need no more startswith tests.
            slots = self.pslots
            while i >= 0:
                conds, fallback = slots[i]
                if not conds:
                    return fallback
                found = _select(conds, method, headers)
                if found is not None:
                    return found
                if fallback is not None:
                    return fallback
                i = chain[i]

        for regex_match, (conds, fallback) in self.regexes:
            if regex_match(path) is not None:
                if conds:
                    found = _select(conds, method, headers)
                    if found is not None:
                        return found
                if fallback is not None:
                    return fallback

        slot = self.nopath
        if slot is not None:
            conds, fallback = slot
            if not conds:
                return fallback
            found = _select(conds, method, headers)
            if found is not None:
                return found
            return fallback
        return None


def _encode_host(host: str, rule: str) -> tuple[bool, bytes]:
    """(is_wildcard, key): the exact name, or for ``*.example.com`` the suffix ``.example.com``."""
    if not host:
        raise ValueError(f"route {rule!r}: empty host")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if not name or "*" in name:
        raise ValueError(f"route {rule!r}: bad host {host!r}: only a leading '*.' wildcard is allowed")
    if ":" in name and not (name.startswith("[") and name.endswith("]")):
        raise ValueError(f"route {rule!r}: host {host!r} must not include a port")
    try:
        encoded = name.lower().encode("ascii")
    except UnicodeEncodeError:
        try:
            encoded = name.encode("idna").lower()
        except UnicodeError as exc:
            raise ValueError(f"route {rule!r}: host {host!r} is not a valid domain name") from exc
    return wildcard, (b"." + encoded if wildcard else encoded)


def _encode_token(text: str, what: str, rule: str) -> bytes:
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"route {rule!r}: {what} {text!r} must be ASCII") from exc
    if not encoded or any(c <= 0x20 or c == 0x7F for c in encoded):
        raise ValueError(f"route {rule!r}: bad {what} {text!r}")
    return encoded


@dataclass(slots=True)
class _Compiled(Generic[P]):
    """One validated rule, ready to be placed in the indexes."""

    index: int
    host: tuple[bool, bytes] | None
    kind: str  # "exact" | "prefix" | "regex" | "none"
    key: bytes | str | None  # bytes path / prefix; regex source text; None
    cond: _Cond[P]
    conditions: int

    @property
    def conditional(self) -> bool:
        return self.cond[0] is not None or self.cond[1] is not None


def _compile_rule(index: int, rule: RouteRule[P]) -> _Compiled[P]:
    name = rule.name
    given = [v for v in (rule.path, rule.path_prefix, rule.path_regex) if v is not None]
    if len(given) > 1:
        raise ValueError(f"route {name!r}: at most one of path, path_prefix, path_regex")
    if given and not given[0]:
        raise ValueError(f"route {name!r}: empty path condition (omit it to match every path)")

    prefix: bytes | None = None
    key: bytes | str | None = None
    if rule.path is not None:
        kind, key = "exact", rule.path.encode()
    elif rule.path_regex is not None:
        kind, key = "regex", rule.path_regex
    elif rule.path_prefix is not None:
        prefix = rule.path_prefix.encode()
        kind, key = ("none", None) if rule.path_prefix == "/" else ("prefix", prefix)
    else:
        kind = "none"

    methods = frozenset(_encode_token(m.upper(), "method", name) for m in rule.methods) or None
    hconds = (
        tuple(
            (lname, len(lname), value.encode())
            for lname, value in ((_encode_token(h.lower(), "header name", name), v) for h, v in rule.headers)
        )
        or None
    )
    host = None if rule.host is None else _encode_host(rule.host, name)
    match = Match(name, rule.payload, prefix)
    return _Compiled(index, host, kind, key, (methods, hconds, match), rule.conditions())


def _slot(entries: list[_Compiled[P]]) -> _Slot[P]:
    """Order one path key's rules (more conditions first, then config order); cut at the first
    unconditional rule, which always matches and so shadows everything after it."""
    conds: list[_Cond[P]] = []
    for entry in sorted(entries, key=lambda e: (-e.conditions, e.index)):
        if not entry.conditional:
            return tuple(conds), entry.cond[2]
        conds.append(entry.cond)
    return tuple(conds), None


def _compile_regex(source: str, rule: str) -> _RegexMatch:
    try:
        pattern = source.encode("ascii")
    except UnicodeEncodeError as exc:
        # Paths are matched as raw bytes; a str class like [é] has no faithful bytes equivalent.
        raise ValueError(
            f"route {rule!r}: path_regex {source!r} must be ASCII (write non-ASCII as %XX or \\xNN)"
        ) from exc
    try:
        return re.compile(pattern).match
    except re.error as exc:
        raise ValueError(f"route {rule!r}: invalid path_regex {source!r}: {exc}") from exc


def _build_group(entries: list[_Compiled[P]]) -> _HostGroup[P]:
    exact: dict[bytes, list[_Compiled[P]]] = {}
    prefixes: dict[bytes, list[_Compiled[P]]] = {}
    regexes: dict[str, list[_Compiled[P]]] = {}  # insertion order = config order of first use
    nopath: list[_Compiled[P]] = []
    for e in entries:  # entries are in config order
        if e.kind == "exact":
            assert isinstance(e.key, bytes)
            exact.setdefault(e.key, []).append(e)
        elif e.kind == "prefix":
            assert isinstance(e.key, bytes)
            prefixes.setdefault(e.key, []).append(e)
        elif e.kind == "regex":
            assert isinstance(e.key, str)
            regexes.setdefault(e.key, []).append(e)
        else:
            nopath.append(e)
    compiled_regexes: list[tuple[_RegexMatch, _Slot[P]]] = []
    for source, group in regexes.items():
        compiled_regexes.append((_compile_regex(source, group[0].cond[2].name), _slot(group)))
    return _HostGroup(
        {k: _slot(v) for k, v in exact.items()},
        {k: _slot(v) for k, v in prefixes.items()},
        compiled_regexes,
        _slot(nopath) if nopath else None,
    )


class RouteTable(Generic[P]):
    """Rules compiled for fast lookup; see the module docstring and docs/routing.md.

    Example:
        >>> t = RouteTable([
        ...     RouteRule("admin", "a", path_prefix="/admin/", headers=(("X-Admin", "1"),)),
        ...     RouteRule("site", "s"),
        ... ])
        >>> len(t)
        2
        >>> t.match(b"GET", b"example.com", b"/admin/x", [(b"x-admin", b"1")]).name
        'admin'
        >>> t.match(b"GET", b"example.com", b"/admin/x", []).name
        'site'
    """

    __slots__ = ("_cache", "_default", "_hosts", "_maxwild", "_size", "_wild", "uses_headers")

    # Bound on the host -> groups cache; when full it is emptied, so a flood of random Host
    # values costs the slow path per request but never unbounded memory.
    HOST_CACHE_SIZE = 4096

    def __init__(self, rules: Sequence[RouteRule[P]]) -> None:
        """Compile ``rules``; raises ValueError on an invalid rule (bad regex, host, ...)."""
        compiled = [_compile_rule(i, r) for i, r in enumerate(rules)]
        by_host: dict[tuple[bool, bytes] | None, list[_Compiled[P]]] = {}
        for c in compiled:
            by_host.setdefault(c.host, []).append(c)
        self._size = len(compiled)
        self._hosts: dict[bytes, _HostGroup[P]] = {}
        self._wild: dict[bytes, _HostGroup[P]] = {}
        self._default: _HostGroup[P] | None = None
        for host, entries in by_host.items():
            group = _build_group(entries)
            if host is None:
                self._default = group
            elif host[0]:
                self._wild[host[1]] = group
            else:
                self._hosts[host[1]] = group
        # Suffixes longer than any wildcard key cannot match: the walk skips them.
        self._maxwild = max(map(len, self._wild), default=0)
        self._cache: dict[bytes, tuple[_HostGroup[P], ...]] = {}
        #: Without header conditions a match depends on method, host and path only, so a caller
        #: may remember the last one (a keep-alive client repeating itself skips the lookup).
        self.uses_headers = any(c.cond[1] is not None for c in compiled)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"<RouteTable {self._size} rules: {len(self._hosts)} exact hosts, "
            f"{len(self._wild)} wildcard hosts, host-less {'yes' if self._default else 'no'}>"
        )

    def _groups_for(self, host: bytes) -> tuple[_HostGroup[P], ...]:
        """The host groups that apply to ``host``, in precedence order (slow path, then cached)."""
        groups: list[_HostGroup[P]] = []
        exact = self._hosts.get(host)
        if exact is not None:
            groups.append(exact)
        if self._wild:
            # Walk the label suffixes, longest (most specific) first: ".b.example.com",
            # ".example.com", ".com". Cost grows with the host's depth, not the wildcard count.
            start = len(host) - self._maxwild
            i = host.find(b".", start if start > 0 else 0)
            while i >= 0:
                wild = self._wild.get(host[i:])
                if wild is not None:
                    groups.append(wild)
                i = host.find(b".", i + 1)
        if self._default is not None:
            groups.append(self._default)
        found = tuple(groups)
        if len(self._cache) >= self.HOST_CACHE_SIZE:
            self._cache.clear()
        self._cache[host] = found
        return found

    def match(
        self, method: bytes, host: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> Match[P] | None:
        """The highest-precedence rule whose conditions all hold, or None.

        ``host`` must be lower-case without ``:port`` (b"" if absent), ``path`` the raw path
        without the query, ``headers`` the header list as received (names in any case).

        Example:
            >>> t = RouteTable([RouteRule("w", 1, host="*.example.com")])
            >>> t.match(b"GET", b"a.b.example.com", b"/", []).payload
            1
            >>> t.match(b"GET", b"example.com", b"/", []) is None
            True
        """
        # Real traffic carries few distinct Host values, so which groups apply (exact host,
        # wildcard suffixes, host-less) is looked up once per host and cached: one dict probe
        # instead of a suffix walk (bytes.find alone costs ~60 ns a call).
        groups = self._cache.get(host)
        if groups is None:
            groups = self._groups_for(host)
        for group in groups:
            found = group.match(method, path, headers)
            if found is not None:
                return found
        return None
