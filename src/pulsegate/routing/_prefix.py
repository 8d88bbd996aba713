"""Longest-prefix lookup over byte strings in O(log n + nesting depth), independent of key count.

Keys are kept in one sorted list. For a query ``path`` let ``j`` be the position of the largest
key ``<= path`` (one ``bisect_right``, done in C). Every key that is a prefix of ``path`` is also a
prefix of ``keys[j]``:

    Let ``s`` be a key that is a prefix of ``path``. Then ``s <= path`` (a prefix never sorts
    after the string), hence ``s <= keys[j] <= path``. Suppose ``keys[j]`` did not start with
    ``s``. It cannot be a proper prefix of ``s`` (it would sort before ``s``), so they differ at
    some first position ``p < len(s)`` with ``keys[j][p] > s[p] == path[p]`` while
    ``keys[j][:p] == path[:p]``; that makes ``keys[j] > path``, a contradiction.

So the keys that are prefixes of ``path`` are exactly the keys on ``keys[j]``'s *chain* (``keys[j]``,
then its longest proper prefix that is a key, then that key's, ...) that are prefixes of ``path``.
The chain is precomputed as an index array. Walking it, the first entry that is a prefix of
``path`` is the longest matching key, and every later entry is a prefix of that one, so the walk
needs no more ``startswith`` tests after the first hit. The walk is bounded by how deeply keys
nest (``/a``, ``/a/b``, ``/a/b/c`` ...), not by how many keys there are.

``RouteTable`` inlines the walk on its hot path over ``keys``/``chain``; this class builds those
arrays and offers the same walk as a method for tests and tools.

Example:
    >>> idx = PrefixIndex([b"/a", b"/a/b", b"/c"])
    >>> [idx.keys[i] for i in idx.matches(b"/a/b/x")]
    [b'/a/b', b'/a']
    >>> idx.matches(b"/b")
    []
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable


class PrefixIndex:
    """Sorted keys plus, per key, the index of its longest proper prefix that is also a key."""

    __slots__ = ("chain", "keys")

    keys: list[bytes]
    chain: list[int]

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = sorted(set(keys))
        position = {k: i for i, k in enumerate(self.keys)}
        chain: list[int] = []
        for key in self.keys:
            # Construction may be slow: try every shorter length, longest first.
            parent = -1
            for n in range(len(key) - 1, -1, -1):
                found = position.get(key[:n])
                if found is not None:
                    parent = found
                    break
            chain.append(parent)
        self.chain = chain

    def __len__(self) -> int:
        return len(self.keys)

    def first(self, path: bytes) -> int:
        """Index of the longest key that is a prefix of ``path``, or -1."""
        keys = self.keys
        chain = self.chain
        i = bisect_right(keys, path) - 1
        while i >= 0 and not path.startswith(keys[i]):
            i = chain[i]
        return i

    def matches(self, path: bytes) -> list[int]:
        """Indexes of all keys that are prefixes of ``path``, longest first."""
        out: list[int] = []
        i = self.first(path)
        while i >= 0:
            out.append(i)
            i = self.chain[i]
        return out
