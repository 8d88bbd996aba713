"""RouteTable: one test per precedence clause of docs/routing.md, inputs, validation, hygiene."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from pulsegate.routing import Match, RouteRule, RouteTable

Headers = Sequence[tuple[bytes, bytes]]


def R(name: str, **kw: object) -> RouteRule[str]:
    return RouteRule(name, name, **kw)  # type: ignore[arg-type]


def pick(
    table: RouteTable[str],
    path: bytes = b"/",
    host: bytes = b"h.test",
    method: bytes = b"GET",
    headers: Headers | None = None,
) -> str | None:
    m = table.match(method, host, path, headers or [])
    return None if m is None else m.name


# --- Match ---------------------------------------------------------------------------------------


def test_match_fields_identity_and_immutability() -> None:
    t = RouteTable(
        [R("p", path_prefix="/api/"), R("e", path="/x"), R("r", path_regex="/r"), R("root", path_prefix="/")]
    )
    m = t.match(b"GET", b"", b"/api/v1", [])
    assert m is not None
    assert (m.name, m.payload, m.prefix) == ("p", "p", b"/api/")
    assert t.match(b"POST", b"other", b"/api/v2", []) is m
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "q"  # type: ignore[misc]
    assert not hasattr(m, "__dict__")
    assert t.match(b"GET", b"", b"/x", []).prefix is None  # type: ignore[union-attr]
    assert t.match(b"GET", b"", b"/r", []).prefix is None  # type: ignore[union-attr]
    assert t.match(b"GET", b"", b"/zzz", []).prefix == b"/"  # type: ignore[union-attr]
    assert isinstance(m, Match)


def test_empty_table() -> None:
    t: RouteTable[str] = RouteTable([])
    assert len(t) == 0
    assert t.match(b"GET", b"a", b"/", []) is None
    assert "0 rules" in repr(t)


def test_len_counts_every_rule_even_shadowed() -> None:
    assert len(RouteTable([R("a"), R("b"), R("c", path="/")])) == 3


# --- (1) host --------------------------------------------------------------------------------------


def test_exact_host_beats_wildcard_and_hostless_regardless_of_order_and_conditions() -> None:
    t = RouteTable(
        [
            R("any", path="/x", methods=("GET",)),
            R("wild", host="*.example.com", path="/x", methods=("GET",)),
            R("exact", host="a.example.com"),
        ]
    )
    assert pick(t, b"/x", b"a.example.com") == "exact"
    assert pick(t, b"/x", b"b.example.com") == "wild"
    assert pick(t, b"/x", b"example.org") == "any"


def test_wildcard_longest_suffix_first() -> None:
    t = RouteTable([R("short", host="*.example.com"), R("long", host="*.b.example.com")])
    assert pick(t, host=b"a.b.example.com") == "long"
    assert pick(t, host=b"x.a.b.example.com") == "long"
    assert pick(t, host=b"b.example.com") == "short"  # *.b.example.com does not match b.example.com
    assert pick(t, host=b"a.example.com") == "short"


def test_wildcard_depth_and_bare_domain() -> None:
    t = RouteTable([R("w", host="*.example.com")])
    assert pick(t, host=b"a.example.com") == "w"
    assert pick(t, host=b"a.b.c.example.com") == "w"
    assert pick(t, host=b"example.com") is None
    assert pick(t, host=b"badexample.com") is None
    assert pick(t, host=b"example.com.evil") is None
    assert pick(t, host=b"") is None


def test_wildcard_beats_hostless_even_with_more_specific_path() -> None:
    t = RouteTable([R("any", path="/x"), R("wild", host="*.test")])
    assert pick(t, b"/x", b"h.test") == "wild"


def test_hostless_rules_apply_to_every_host_including_absent() -> None:
    t = RouteTable([R("h", host="h.test", path="/only"), R("any")])
    assert pick(t, b"/", b"h.test") == "any"
    assert pick(t, b"/", b"") == "any"
    assert pick(t, b"/", b"whatever") == "any"


def test_falls_back_across_host_groups_when_path_or_conditions_fail() -> None:
    t = RouteTable(
        [
            R("exact-post", host="a.example.com", methods=("POST",)),
            R("wild-hdr", host="*.example.com", headers=(("x-k", "1"),)),
            R("wild-path", host="*.com", path_prefix="/p/"),
            R("any", path_regex="/"),
        ]
    )
    host = b"a.example.com"
    assert pick(t, b"/", host, b"POST") == "exact-post"
    assert pick(t, b"/", host, headers=[(b"X-K", b"1")]) == "wild-hdr"
    assert pick(t, b"/p/1", host) == "wild-path"
    assert pick(t, b"/q", host) == "any"
    assert pick(t, b"q", host) is None


def test_host_rules_are_case_insensitive_and_idna() -> None:
    t = RouteTable([R("a", host="API.Example.COM"), R("w", host="*.B\u00fccher.de")])
    assert pick(t, host=b"api.example.com") == "a"
    assert pick(t, host=b"shop.xn--bcher-kva.de") == "w"


class CountingDict(dict[bytes, object]):
    gets = 0

    def get(self, key: bytes, default: object = None) -> object:
        CountingDict.gets += 1
        return super().get(key, default)


def test_many_wildcards_cost_one_lookup_per_host_label_not_per_rule() -> None:
    rules = [R(f"w{i}", host=f"*.d{i}.test") for i in range(2000)]
    t = RouteTable([*rules, R("deep", host="*.x.y.z.d7.test")])
    t._wild = CountingDict(t._wild)  # type: ignore[assignment]
    for host, want in [
        (b"a.d1234.test", "w1234"),
        (b"a.x.y.z.d7.test", "deep"),
        (b"x.y.z.d7.test", "w7"),
        (b"a.d99999.test", None),
        (b"test", None),
    ]:
        CountingDict.gets = 0
        assert pick(t, host=host) == want
        assert CountingDict.gets <= host.count(b".")
        CountingDict.gets = 0
        assert pick(t, host=host) == want
        assert CountingDict.gets == 0  # second time: answered from the host cache


def test_host_cache_is_bounded_and_transparent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RouteTable, "HOST_CACHE_SIZE", 3)
    t = RouteTable([R("w", host="*.a.test"), R("e", host="x.a.test"), R("any", path="/any")])
    for _ in range(3):
        for i in range(10):
            assert pick(t, b"/", f"h{i}.a.test".encode()) == "w"
            assert pick(t, b"/", b"x.a.test") == "e"
            assert pick(t, b"/any", f"h{i}.b.test".encode()) == "any"
            assert pick(t, b"/", f"h{i}.b.test".encode()) is None
            assert len(t._cache) <= 3


# --- (2) path -------------------------------------------------------------------------------------


def test_exact_path_beats_prefix_of_same_text_and_earlier_rules() -> None:
    t = RouteTable([R("prefix", path_prefix="/a/b", methods=("GET",)), R("exact", path="/a/b")])
    assert pick(t, b"/a/b") == "exact"
    assert pick(t, b"/a/bc") == "prefix"
    assert pick(t, b"/a/b/") == "prefix"


def test_longest_prefix_wins_regardless_of_order() -> None:
    t = RouteTable(
        [R("short", path_prefix="/api/"), R("long", path_prefix="/api/v1/"), R("mid", path_prefix="/api/v")]
    )
    assert pick(t, b"/api/v1/x") == "long"
    assert pick(t, b"/api/v2") == "mid"
    assert pick(t, b"/api/x") == "short"
    assert pick(t, b"/ap") is None


def test_prefix_is_a_plain_byte_prefix() -> None:
    t = RouteTable([R("api", path_prefix="/api")])
    assert pick(t, b"/apiary") == "api"
    assert pick(t, b"/API") is None


def test_prefix_beats_regex_beats_nopath_and_regexes_in_config_order() -> None:
    t = RouteTable(
        [
            R("nopath"),
            R("rx-any", path_regex="/.*"),
            R("rx-a", path_regex="/a"),
            R("prefix", path_prefix="/a/"),
        ]
    )
    assert pick(t, b"/a/1") == "prefix"
    assert pick(t, b"/ab") == "rx-any"  # config order among regexes, not specificity
    assert pick(t, b"x") == "nopath"


def test_regex_is_anchored_at_start_only() -> None:
    t = RouteTable([R("rx", path_regex=r"/u/\d+"), R("end", path_regex=r"/e/\d+$")])
    assert pick(t, b"/u/12/more") == "rx"
    assert pick(t, b"/x/u/12") is None
    assert pick(t, b"/e/12") == "end"
    assert pick(t, b"/e/12/x") is None


def test_prefix_slash_counts_as_no_path_condition() -> None:
    t = RouteTable([R("slash", path_prefix="/"), R("rx", path_regex="/")])
    assert pick(t, b"/x") == "rx"  # the regex ranks above "/"
    t = RouteTable([R("slash", path_prefix="/"), R("get", methods=("GET",))])
    assert pick(t, b"/x") == "get"  # same (empty) path key: more conditions first
    assert pick(t, b"/x", method=b"PUT") == "slash"
    assert RouteRule("s", 0, path_prefix="/").conditions() == 0


def test_exact_path_matching_is_on_raw_bytes() -> None:
    t = RouteTable([R("enc", path="/caf%C3%A9"), R("raw", path="/caf\u00e9")])
    assert pick(t, b"/caf%C3%A9") == "enc"
    assert pick(t, "/caf\u00e9".encode()) == "raw"
    assert pick(t, b"/caf%c3%a9") is None


# --- (3) same path key ----------------------------------------------------------------------------


def test_same_key_more_conditions_first_then_config_order() -> None:
    t = RouteTable(
        [
            R("plain", path_prefix="/a/"),
            R("get", path_prefix="/a/", methods=("GET",)),
            R("get-hdr", path_prefix="/a/", methods=("GET",), headers=(("x-v", "2"),)),
            R("get-2", path_prefix="/a/", methods=("GET", "HEAD")),
        ]
    )
    assert pick(t, b"/a/", headers=[(b"X-V", b"2")]) == "get-hdr"
    assert pick(t, b"/a/") == "get"  # same count as get-2, earlier in config
    assert pick(t, b"/a/", method=b"HEAD") == "get-2"
    assert pick(t, b"/a/", method=b"POST") == "plain"


@pytest.mark.parametrize("kind", ["path", "path_prefix", "path_regex"])
def test_same_key_unconditional_rule_is_taken_before_shorter_keys(kind: str) -> None:
    t = RouteTable(
        [
            R("short", path_prefix="/"),
            R("cond", **{kind: "/k", "methods": ("PUT",)}),
            R("plain", **{kind: "/k"}),
        ]
    )
    assert pick(t, b"/k", method=b"PUT") == "cond"
    assert pick(t, b"/k") == "plain"


def test_unconditional_rule_shadows_later_same_key_rules() -> None:
    t = RouteTable([R("first", path="/x"), R("second", path="/x")])
    assert pick(t, b"/x") == "first"


def test_failed_conditions_continue_down_the_order() -> None:
    t = RouteTable(
        [
            R("exact-post", path="/a/b/c", methods=("POST",)),
            R("long-post", path_prefix="/a/b/", methods=("POST",)),
            R("mid-hdr", path_prefix="/a/", headers=(("x-mid", "1"),)),
            R("short-put", path_prefix="/", methods=("PUT",)),
            R("rx-delete", path_regex="/a", methods=("DELETE",)),
            R("other-host", host="h.test", methods=("PATCH",)),
            R("nopath-head", methods=("HEAD",)),
        ]
    )
    assert pick(t, b"/a/b/c", method=b"POST") == "exact-post"
    assert pick(t, b"/a/b/d", method=b"POST") == "long-post"
    assert pick(t, b"/a/b/c", headers=[(b"x-mid", b"1")]) == "mid-hdr"
    assert pick(t, b"/a/b/c", method=b"DELETE") == "rx-delete"
    assert pick(t, b"/a/b/c", method=b"PATCH") == "other-host"
    assert pick(t, b"/a/b/c", method=b"HEAD") == "nopath-head"
    assert pick(t, b"/a/b/c", method=b"PUT") == "short-put"
    assert pick(t, b"/a/b/c", method=b"GET") is None


def test_identical_regexes_share_a_key() -> None:
    # The two "/r" rules form one group at the position of the first; inside it, more
    # conditions first. "/.*" comes after that group even though it precedes the second "/r".
    t = RouteTable(
        [R("r", path_regex="/r"), R("any", path_regex="/.*"), R("r-get", path_regex="/r", methods=("GET",))]
    )
    assert pick(t, b"/r") == "r-get"
    assert pick(t, b"/r", method=b"PUT") == "r"
    assert pick(t, b"/x") == "any"


# --- methods and headers --------------------------------------------------------------------------


def test_methods_normalised_upper_and_compared_exactly() -> None:
    t = RouteTable([R("m", methods=("get", "Post"))])
    assert pick(t, method=b"GET") == "m"
    assert pick(t, method=b"POST") == "m"
    assert pick(t, method=b"get") is None  # methods are case-sensitive on the wire
    assert pick(t, method=b"HEAD") is None  # no implicit HEAD for GET


def test_headers_name_case_insensitive_value_exact_first_occurrence_wins() -> None:
    t = RouteTable([R("h", headers=(("X-Env", "Prod"), ("accept", "a/b")))])
    ok = [(b"accept", b"a/b"), (b"x-env", b"Prod")]
    assert pick(t, headers=ok) == "h"
    assert pick(t, headers=[(b"X-ENV", b"Prod"), (b"Accept", b"a/b")]) == "h"
    assert pick(t, headers=[(b"x-env", b"prod"), (b"accept", b"a/b")]) is None
    assert pick(t, headers=[(b"x-env", b"Prod")]) is None  # all conditions must hold
    assert pick(t, headers=[(b"x-env", b"Dev"), (b"x-env", b"Prod"), (b"accept", b"a/b")]) is None
    assert pick(t, headers=[(b"x-env", b"Prod"), (b"x-env", b"Dev"), (b"accept", b"a/b")]) == "h"
    assert pick(t, headers=[(b"x-envy", b"Prod"), (b"accept", b"a/b")]) is None


def test_header_values_are_utf8() -> None:
    t = RouteTable([R("h", headers=(("x-name", "J\u00fcrgen"),))])
    assert pick(t, headers=[(b"x-name", "J\u00fcrgen".encode())]) == "h"


class CountingName(bytes):
    """A header name that counts ``lower()`` calls."""

    calls = 0

    def lower(self) -> bytes:
        CountingName.calls += 1
        return bytes(self).lower()


def test_headers_not_lowercased_when_no_candidate_rule_has_header_conditions() -> None:
    headers = [
        (CountingName(b"Accept"), b"x"),
        (CountingName(b"X-Tenant"), b"t"),
        (CountingName(b"Cookie"), b"c"),
    ]
    t = RouteTable(
        [
            R("tenant", host="t.test", path_prefix="/t/", headers=(("x-tenant", "t"),)),
            R("other", path_prefix="/o/", headers=(("x-tenant", "t"),)),
            R("api", host="t.test", path_prefix="/api/"),
            R("rx", path_regex="/r"),
            R("any", methods=("GET",)),
        ]
    )
    CountingName.calls = 0
    assert pick(t, b"/api/x", b"t.test", headers=headers) == "api"
    assert pick(t, b"/r", b"t.test", headers=headers) == "rx"
    assert pick(t, b"/z", b"t.test", headers=headers) == "any"
    assert CountingName.calls == 0
    assert pick(t, b"/t/x", b"t.test", headers=headers) == "tenant"
    # Only the name with the condition's length is lower-cased, not every header.
    assert CountingName.calls == 1


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"path_regex": "/(unclosed"}, "invalid path_regex"),
        ({"path_regex": "/caf\u00e9"}, "must be ASCII"),
        ({"path_regex": "(?u)/x"}, "invalid path_regex"),
        ({"path": "/a", "path_prefix": "/a"}, "at most one"),
        ({"path_prefix": "/a", "path_regex": "/a"}, "at most one"),
        ({"path": ""}, "empty path"),
        ({"path_prefix": ""}, "empty path"),
        ({"path_regex": ""}, "empty path"),
        ({"host": ""}, "empty host"),
        ({"host": "*"}, "wildcard"),
        ({"host": "*."}, "wildcard"),
        ({"host": "a.*.com"}, "wildcard"),
        ({"host": "**.com"}, "wildcard"),
        ({"host": "a.com:8080"}, "port"),
        ({"host": "bad\u00ff\u2029host"}, "not a valid domain"),
        ({"methods": ("",)}, "bad method"),
        ({"methods": ("G T",)}, "bad method"),
        ({"methods": ("G\u00c9T",)}, "must be ASCII"),
        ({"headers": (("", "v"),)}, "bad header name"),
        ({"headers": (("x y", "v"),)}, "bad header name"),
    ],
)
def test_invalid_rules_raise_value_error_naming_the_route(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        RouteTable([R("ok"), R("broken", **kw)])
    assert "'broken'" in str(info.value)


def test_ipv6_literal_host_is_allowed() -> None:
    t = RouteTable([R("v6", host="[::1]")])
    assert pick(t, host=b"[::1]") == "v6"


# --- docs/routing.md ------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def test_docs_example_and_precedence_table_hold() -> None:
    text = DOC.read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(code, namespace)  # the example asserts its own result
    table = namespace["table"]
    assert isinstance(table, RouteTable)
    rows = re.findall(r"^\| `(\w+) (\S+) (\S+)`(?: \+ `([^:`]+): ([^`]+)`)? \| `(\w+)` \|", text, re.M)
    assert len(rows) == 7
    for method, host, path, hname, hvalue, want in rows:
        headers = [(hname.encode(), hvalue.encode())] if hname else []
        m = table.match(method.encode(), host.encode(), path.encode(), headers)
        assert m is not None and m.name == want, (method, host, path, headers)
