"""RouteTable.match against an obviously-correct reference of the precedence rules.

The reference scores every rule that applies to the request with one sort key and takes the
minimum; the table must return exactly that rule (or None when no rule applies).

    (host tier, path tier, -conditions(), config index)

host tier: exact host (0, 0) < wildcard (1, -suffix length) < host-less (2, 0).
path tier: exact (0, 0) < prefix (1, -prefix length) < regex (2, index of the first rule in the
same host group with the same regex) < no path / prefix "/" (3, 0).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulsegate.routing import RouteRule, RouteTable

Headers = list[tuple[bytes, bytes]]

RULE_HOSTS = [None, "a.com", "A.com", "b.a.com", "*.a.com", "*.B.a.com", "*.com", "a.org", "*.org"]
REQ_HOSTS = [b"a.com", b"b.a.com", b"c.b.a.com", b"xa.com", b"a.org", b"x.a.org", b"com", b""]
REGEXES = ["/a", "/a+$", "/[ab]*b", "/b/?$", "a", ".*", "/(a|b)/", r"/\w\w"]
METHODS = ["GET", "POST", "put"]
REQ_METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"get"]
RULE_HEADER_NAMES = ["x-a", "X-B", "X-a"]
REQ_HEADER_NAMES = [b"x-a", b"X-A", b"x-b", b"X-B", b"other", b"x-ab"]
VALUES = ["1", "2", "X"]

# Small pools so rules share path keys and nest, and requests hit them; plus random text.
PATHS = ["/", "/a", "/ab", "/a/", "/a/b", "/b", "/ab/a"]
path_text = st.text(alphabet="/ab", min_size=1, max_size=5)
rule_path = st.sampled_from(PATHS) | path_text
req_path = (
    st.sampled_from(PATHS)
    | st.tuples(st.sampled_from(PATHS), st.sampled_from(["a", "/", "b/a", "z"])).map("".join)
    | st.text(alphabet="/abz", max_size=6).map(lambda s: "/" + s)
).map(str.encode)


@st.composite
def rule_st(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["none", "exact", "prefix", "prefix", "regex"]))
    # Host-less and one exact host more often, so groups hold several rules.
    spec: dict[str, object] = {"host": draw(st.sampled_from([None, "a.com"]) | st.sampled_from(RULE_HOSTS))}
    if kind == "exact":
        spec["path"] = draw(rule_path)
    elif kind == "prefix":
        spec["path_prefix"] = draw(rule_path)
    elif kind == "regex":
        spec["path_regex"] = draw(st.sampled_from(REGEXES))
    # Half the rules have no method condition, half no header condition.
    spec["methods"] = draw(
        st.just(()) | st.lists(st.sampled_from(METHODS), min_size=1, max_size=2).map(tuple)
    )
    header = st.tuples(st.sampled_from(RULE_HEADER_NAMES), st.sampled_from(VALUES))
    spec["headers"] = draw(st.just(()) | st.lists(header, min_size=1, max_size=2).map(tuple))
    return spec


@st.composite
def specs_st(draw: st.DrawFn, max_size: int = 30) -> list[dict[str, object]]:
    """Rule specs where many rules share a host group, and many share a host and path key with an
    earlier rule (only their method/header conditions differ): the cases precedence is about."""
    specs: list[dict[str, object]] = []
    for _ in range(draw(st.integers(0, max_size))):
        spec = draw(rule_st())
        if specs:
            base = draw(st.sampled_from(specs))
            share = draw(st.sampled_from(["nothing", "host", "host+path", "nested"]))
            keys = {
                "nothing": (),
                "host": ("host",),
                "host+path": ("host", "path", "path_prefix", "path_regex"),
                "nested": ("host",),
            }
            for key in keys[share]:
                spec[key] = base.get(key)
            if share == "nested":  # a prefix that extends the earlier rule's path or prefix
                stem = base.get("path") or base.get("path_prefix") or "/"
                spec.pop("path", None), spec.pop("path_regex", None)
                spec["path_prefix"] = f"{stem}{draw(st.sampled_from(['a', '/', 'b/', 'ab']))}"
        specs.append(spec)
    return specs


def make_rules(specs: list[dict[str, object]]) -> list[RouteRule[int]]:
    return [RouteRule(f"r{i}", i, **spec) for i, spec in enumerate(specs)]  # type: ignore[arg-type]


Request = tuple[bytes, bytes, bytes, Headers]
random_headers = st.lists(
    st.tuples(st.sampled_from(REQ_HEADER_NAMES), st.sampled_from([v.encode() for v in VALUES])), max_size=4
)
request_st = st.tuples(st.sampled_from(REQ_METHODS), st.sampled_from(REQ_HOSTS), req_path, random_headers)


@st.composite
def aimed_request(draw: st.DrawFn, rule: RouteRule[int]) -> Request:
    """A request that satisfies most (often all) of ``rule``'s conditions, so that the answers
    are mostly real matches and conditions fail just often enough to exercise fall-through."""
    if rule.host is None:
        host = draw(st.sampled_from(REQ_HOSTS))
    elif rule.host.startswith("*."):
        host = (draw(st.sampled_from(["x", "y.x"])) + rule.host[1:].lower()).encode()
    else:
        host = rule.host.lower().encode()
    if rule.path is not None:
        path = rule.path.encode()
    elif rule.path_prefix is not None:
        # Suffixes that often make the path match longer (nested) prefixes too.
        tail = st.sampled_from(["", "/", "b", "/b", "b/a", "a"]) | st.text(alphabet="/abz", max_size=3)
        path = (rule.path_prefix + draw(tail)).encode()
    else:
        path = draw(req_path)
    method = draw(st.sampled_from(REQ_METHODS))
    use_methods: bool = draw(st.booleans())
    if rule.methods and use_methods:
        method = draw(st.sampled_from(rule.methods)).upper().encode()
    headers = draw(random_headers)
    use_headers: bool = draw(st.booleans())
    if rule.headers and use_headers:
        wanted = [
            (draw(st.sampled_from([n.lower(), n.upper()])).encode(), v.encode()) for n, v in rule.headers
        ]
        headers = wanted + headers if draw(st.booleans()) else headers + wanted
    return method, host, path, headers


def reference(
    rules: list[RouteRule[int]], method: bytes, host: bytes, path: bytes, headers: Headers
) -> int | None:
    host_s, path_s = host.decode(), path.decode()

    def host_tier(r: RouteRule[int]) -> tuple[int, int] | None:
        if r.host is None:
            return (2, 0)
        h = r.host.lower()
        if h.startswith("*."):
            return (1, -len(h) + 1) if host_s.endswith(h[1:]) else None
        return (0, 0) if host_s == h else None

    def path_tier(i: int, r: RouteRule[int]) -> tuple[int, int] | None:
        if r.path is not None:
            return (0, 0) if path_s == r.path else None
        if r.path_prefix is not None and r.path_prefix != "/":
            return (1, -len(r.path_prefix)) if path_s.startswith(r.path_prefix) else None
        if r.path_regex is not None:
            if re.match(r.path_regex, path_s) is None:
                return None
            group = (r.host or "").lower()
            first = min(
                j
                for j, o in enumerate(rules)
                if (o.host or "").lower() == group and o.path_regex == r.path_regex
            )
            return (2, first)
        return (3, 0)

    def conditions_hold(r: RouteRule[int]) -> bool:
        if r.methods and method.decode() not in {m.upper() for m in r.methods}:
            return False
        for name, value in r.headers:
            first = next((v for k, v in headers if k.lower() == name.lower().encode()), None)
            if first != value.encode():
                return False
        return True

    best: tuple[tuple[tuple[int, int], tuple[int, int], int, int], int] | None = None
    for i, r in enumerate(rules):
        ht = host_tier(r)
        pt = path_tier(i, r)
        if ht is None or pt is None or not conditions_hold(r):
            continue
        key = (ht, pt, -r.conditions(), i)
        if best is None or key < best[0]:
            best = (key, i)
    return None if best is None else best[1]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(specs_st(), st.data())
def test_match_equals_reference(specs: list[dict[str, object]], data: st.DataObject) -> None:
    rules = make_rules(specs)
    table = RouteTable(rules)
    request = request_st | st.sampled_from(rules).flatmap(aimed_request) if rules else request_st
    requests = data.draw(st.lists(request, min_size=1, max_size=20))
    assert len(table) == len(rules)
    for method, host, path, headers in requests:
        want = reference(rules, method, host, path, headers)
        got = table.match(method, host, path, headers)
        if want is None:
            assert got is None, (method, host, path, headers)
            continue
        assert got is not None, (method, host, path, headers, want)
        assert (got.payload, got.name) == (want, f"r{want}"), (method, host, path, headers)
        rule = rules[want]
        assert got.prefix == (rule.path_prefix.encode() if rule.path_prefix is not None else None)
        # One precomputed Match per rule: the same object every time.
        assert table.match(method, host, path, headers) is got


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(specs_st(max_size=25), st.lists(request_st, min_size=1, max_size=10))
def test_rule_order_is_only_a_tie_breaker_for_equal_keys(
    specs: list[dict[str, object]], requests: list[tuple[bytes, bytes, bytes, Headers]]
) -> None:
    """Reversing the config changes only which rule wins among equally-ranked ones: the winner
    of the reversed table must have the same host and (outside regexes) path key and conditions."""
    rules = make_rules(specs)
    rev = make_rules(specs[::-1])
    t1, t2 = RouteTable(rules), RouteTable(rev)
    for method, host, path, headers in requests:
        a, b = t1.match(method, host, path, headers), t2.match(method, host, path, headers)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            ra, rb = rules[a.payload], rev[b.payload]
            assert (ra.host or "").lower() == (rb.host or "").lower()
            assert (ra.path_regex is None) == (rb.path_regex is None)
            if ra.path_regex is None:
                # Regex groups are tried in config order, so only non-regex winners must agree.
                assert (ra.path, ra.path_prefix or "/") == (rb.path, rb.path_prefix or "/")
                assert ra.conditions() == rb.conditions()


NESTED = ["/", "/a", "/a/", "/a/b", "/a/b/", "/a/bc", "/b"]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "a.com", "*.com"]),
            st.sampled_from(NESTED),
            st.sampled_from([(), ("GET",), ("POST",), ("GET", "PUT")]),
        ),
        max_size=14,
    ),
    st.lists(
        st.tuples(
            st.sampled_from([b"GET", b"POST", b"PUT"]),
            st.sampled_from([b"a.com", b"b.com"]),
            st.sampled_from([b"/a/b/c", b"/a/bcd", b"/a/b", b"/a/x", b"/a", b"/b", b"/c"]),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_nested_prefixes_fall_through_like_reference(
    specs: list[tuple[str | None, str, tuple[str, ...]]], requests: list[tuple[bytes, bytes, bytes]]
) -> None:
    """Dense nested prefixes with method conditions: the longest prefix's rules often all fail,
    and the search must go on to the next shorter prefix on the chain, then the next host group."""
    rules = [RouteRule(f"r{i}", i, host=h, path_prefix=p, methods=m) for i, (h, p, m) in enumerate(specs)]
    table = RouteTable(rules)
    for method, host, path in requests:
        got = table.match(method, host, path, [])
        assert (None if got is None else got.payload) == reference(rules, method, host, path, [])
