"""PrefixIndex: bisect + "longest proper prefix that is a key" chains vs a brute-force oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.routing._prefix import PrefixIndex

# A tiny alphabet makes shared and nested prefixes (the interesting cases) common.
keys_st = st.lists(st.binary(max_size=6).map(lambda b: bytes(c % 3 + 0x61 for c in b)), max_size=40)
path_st = st.binary(max_size=8).map(lambda b: bytes(c % 4 + 0x61 for c in b))


def brute(keys: list[bytes], path: bytes) -> list[bytes]:
    return sorted({k for k in keys if path.startswith(k)}, key=len, reverse=True)


@settings(max_examples=500)
@given(keys_st, st.lists(path_st, min_size=1, max_size=10))
def test_matches_equal_brute_force(keys: list[bytes], paths: list[bytes]) -> None:
    idx = PrefixIndex(keys)
    for path in [*paths, *keys, *(k + b"z" for k in keys)]:
        got = [idx.keys[i] for i in idx.matches(path)]
        assert got == brute(keys, path)
        first = idx.first(path)
        assert (idx.keys[first] if first >= 0 else None) == (got[0] if got else None)


@given(keys_st)
def test_chain_is_longest_proper_prefix_key(keys: list[bytes]) -> None:
    idx = PrefixIndex(keys)
    assert idx.keys == sorted(set(keys))
    assert len(idx) == len(set(keys))
    for key, parent in zip(idx.keys, idx.chain, strict=True):
        proper = [k for k in idx.keys if k != key and key.startswith(k)]
        want = max(proper, key=len) if proper else None
        assert (idx.keys[parent] if parent >= 0 else None) == want


def test_examples() -> None:
    idx = PrefixIndex([b"/api/", b"/api/v1/", b"/api/v1/users/", b"/b", b"/api/v2/"])
    assert [idx.keys[i] for i in idx.matches(b"/api/v1/users/7")] == [
        b"/api/v1/users/",
        b"/api/v1/",
        b"/api/",
    ]
    # The largest key <= path is /api/v1/users/ which is not a prefix: the chain is walked.
    assert [idx.keys[i] for i in idx.matches(b"/api/v1/x")] == [b"/api/v1/", b"/api/"]
    assert [idx.keys[i] for i in idx.matches(b"/api/v3")] == [b"/api/"]
    assert idx.matches(b"/ap") == []
    assert idx.matches(b"") == []
    assert PrefixIndex([]).first(b"/x") == -1
    # The empty key is a prefix of everything.
    assert [PrefixIndex([b"", b"/"]).keys[i] for i in PrefixIndex([b"", b"/"]).matches(b"/x")] == [b"/", b""]
