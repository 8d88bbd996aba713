"""The loader: message format, collecting every problem, YAML errors, files on disk."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pulsegate.config
from pulsegate.config import (
    ConfigError,
    GatewayConfig,
    checks,
    load_config,
    load_config_text,
    loader,
    model,
    summarize,
    units,
)


def problems(text: str, source: str = "gw.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source=source)
    return info.value.problems


def test_spec_example_message() -> None:
    text = """\
upstreams:
  api: {targets: ["127.0.0.1:9001"]}
routes:
  - {name: first, upstream: api}
  - {name: second, upstream: apii}
"""
    assert problems(text) == ["gw.yaml: routes[1].upstream: unknown upstream 'apii' (known: api)"]


def test_known_upstreams_are_sorted() -> None:
    text = "upstreams: {web: {targets: ['h:1']}, api: {targets: ['h:2']}}\nroutes: [{upstream: x}]"
    assert problems(text) == ["gw.yaml: routes[0].upstream: unknown upstream 'x' (known: api, web)"]


def test_config_error_shape() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("workers: 0\nbogus: 1")
    err = info.value
    assert isinstance(err, Exception)
    assert err.problems == [
        "<config>: workers: must be an integer >= 1 or 'auto', got '0'",
        "<config>: bogus: unknown key",
    ]
    assert str(err) == "\n".join(err.problems)


def test_every_problem_is_reported_at_once() -> None:
    text = """\
listen: [bad, "127.0.0.1:8080", "127.0.0.1:8080"]
workers: 0
shutdown_timeout: 2x
bogus: 1
upstreams:
  api:
    targets: ["127.0.0.1:9001", {address: "127.0.0.1:9001", weight: 0}, 5, {weight: 2}]
    balance: fastest
    pool: {max_idle: -1}
  broken: {targets: []}
routes:
  - {name: api, upstream: apii, match: {path_regex: "(", methodz: [GET]}}
  - {name: api, upstream: api, strip_prefix: true}
  - {upstream: broken}
  - 7
limits: {max_header_bytes: 10XB, header_timeout: 0s}
"""
    assert problems(text) == [
        "gw.yaml: listen[0]: expected host:port, got 'bad'",
        "gw.yaml: workers: must be an integer >= 1 or 'auto', got '0'",
        "gw.yaml: shutdown_timeout: invalid duration '2x': expected a number with unit us, ms, s, m, h or d",
        "gw.yaml: upstreams.api.targets[1].weight: must be at least 1",
        "gw.yaml: upstreams.api.targets[2]: must be an address 'host:port' or a mapping with address"
        " and weight",
        "gw.yaml: upstreams.api.targets[3].address: required",
        "gw.yaml: upstreams.api.balance: must be one of round_robin, least_conn, p2c_ewma,"
        " consistent_hash, random",
        "gw.yaml: upstreams.api.pool.max_idle: must be at least 0",
        "gw.yaml: upstreams.broken.targets: must not be empty",
        "gw.yaml: routes[0].match.path_regex: invalid regular expression: missing ), unterminated"
        " subpattern at position 0",
        "gw.yaml: routes[0].match.methodz: unknown key",
        "gw.yaml: routes[3]: must be a mapping",
        "gw.yaml: limits.max_header_bytes: invalid size '10XB': expected a number with unit B, KB,"
        " MB, GB, TB, KiB, MiB, GiB or TiB",
        "gw.yaml: limits.header_timeout: must be greater than 0",
        "gw.yaml: bogus: unknown key",
        # cross-section checks run on what parsed, in the same pass
        "gw.yaml: listen[2]: duplicate address '127.0.0.1:8080' (first at listen[1])",
        "gw.yaml: upstreams.api.targets[1]: duplicate target address '127.0.0.1:9001' (first at targets[0])",
        "gw.yaml: routes[0].upstream: unknown upstream 'apii' (known: api, broken)",
        "gw.yaml: routes[1].name: duplicate route name 'api' (first at routes[0])",
        "gw.yaml: routes[1].strip_prefix: requires match.path_prefix",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus: 1", "bogus: unknown key"),
        ("1: 2", "1: unknown key"),
        ("admin: {tokn: x}", "admin.tokn: unknown key"),
        ("limits: {max_body: 1}", "limits.max_body: unknown key"),
        ("upstreams: {a: {targets: ['h:1'], weigth: 1}}", "upstreams.a.weigth: unknown key"),
        (
            "upstreams: {a: {targets: [{address: 'h:1', wieght: 2}]}}",
            "upstreams.a.targets[0].wieght: unknown key",
        ),
        ("upstreams: {a: {targets: ['h:1'], pool: {size: 1}}}", "upstreams.a.pool.size: unknown key"),
        (
            "upstreams: {a: {targets: ['h:1'], timeouts: {write: 1}}}",
            "upstreams.a.timeouts.write: unknown key",
        ),
        (
            "upstreams: {a: {targets: ['h:1']}}\nroutes: [{upstream: a, path: /}]",
            "routes[0].path: unknown key",
        ),
        (
            "upstreams: {a: {targets: ['h:1']}}\nroutes: [{upstream: a, match: {Host: x}}]",
            "routes[0].match.Host: unknown key",
        ),
    ],
)
def test_unknown_keys_at_every_depth(text: str, expected: str) -> None:
    assert problems(text) == [f"gw.yaml: {expected}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b: c", "gw.yaml:1:5: invalid YAML: mapping values are not allowed here"),
        ("listen: x\n  workers: 2\n", "gw.yaml:2:10: invalid YAML: mapping values are not allowed here"),
        (
            "routes:\n  - {upstream: a\n",
            "gw.yaml:3:1: invalid YAML: expected ',' or '}', but got '<stream end>'",
        ),
        ("workers: [1, 2\n", "gw.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("a: 'unterminated\n", "gw.yaml:2:1: invalid YAML: found unexpected end of stream"),
        ("a:\n\t- 1\n", "gw.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token"),
        (
            "a: 1\n---\nb: 2\n",
            "gw.yaml:2:1: invalid YAML: expected a single document in the stream, but found another document",
        ),
        ("a: *missing\n", "gw.yaml:1:4: invalid YAML: found undefined alias 'missing'"),
        (
            "a: 1\nb: \x07\n",
            "gw.yaml:2:4: invalid YAML: unacceptable character #x0007: special characters are not allowed",
        ),
        (
            "!!python/object:os.system {}",
            "gw.yaml:1:1: invalid YAML: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/object:os.system'",
        ),
    ],
)
def test_yaml_errors_have_line_and_column(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize("text", ["[1, 2]", "just a string", "42", "- a\n- b\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems(text) == ["gw.yaml: top level must be a mapping"]


def test_json_is_yaml_too() -> None:
    text = (
        '{"upstreams": {"a": {"targets": ["127.0.0.1:1"]}}, "routes": [{"upstream": "a"}], "workers": "auto"}'
    )
    cfg = load_config_text(text)
    assert cfg.workers == "auto"
    assert cfg.routes[0].upstream == "a"


def test_self_referencing_yaml_does_not_crash() -> None:
    assert problems("routes: &r [*r]") == ["gw.yaml: routes[0]: must be a mapping"]
    assert problems("admin: &a {listen: 'h:1', token: *a}") == ["gw.yaml: admin.token: must be a string"]


def test_yaml_11_booleans_are_not_strings() -> None:
    # `on`/`yes` are booleans in YAML 1.1; a string field should say so instead of accepting "True".
    assert problems("admin: {token: yes}") == ["gw.yaml: admin.token: must be a string"]


def test_default_source_name() -> None:
    assert problems("workers: -1", source="<config>") == [
        "<config>: workers: must be an integer >= 1 or 'auto', got '-1'"
    ]


# --- files ----------------------------------------------------------------------------------------

EXAMPLE = """\
# A complete example, the same as docs/config.md.
listen: ["0.0.0.0:8080", "[::1]:8080"]
workers: auto
shutdown_timeout: 30s
admin: {listen: "127.0.0.1:9090", token: "change-me"}
upstreams:
  api:
    targets: ["127.0.0.1:9001", {address: "127.0.0.1:9002", weight: 3}]
    balance: consistent_hash
    hash_key: "header:x-user-id"
    pool: {max_idle: 64, max_connections: 1024, idle_timeout: 60s}
    timeouts: {connect: 2s, read: 30s}
  static:
    targets: ["127.0.0.1:9100"]
routes:
  - name: api
    match: {host: "api.example.com", path_prefix: "/v1/", methods: [GET, POST], headers: {x-env: prod}}
    upstream: api
    strip_prefix: true
  - name: assets
    match: {host: "*.example.com", path_regex: "^/assets/.+\\\\.(css|js)$"}
    upstream: static
    preserve_host: false
  - upstream: static
limits: {max_header_bytes: 32KiB, max_body_bytes: 10MiB, header_timeout: 10s, keepalive_timeout: 75s,
         request_buffer: 64KiB, max_pipelined: 32}
"""


def test_load_real_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    cfg = load_config(path)
    assert cfg == load_config(str(path))
    assert cfg.listen == ["0.0.0.0:8080", "[::1]:8080"]
    assert cfg.admin.token == "change-me"
    assert [t.weight for t in cfg.upstreams["api"].targets] == [1, 3]
    assert cfg.upstreams["api"].hash_key == "header:x-user-id"
    assert [r.name for r in cfg.routes] == ["api", "assets", "route-2"]
    assert cfg.routes[1].match.path_regex == r"^/assets/.+\.(css|js)$"
    assert cfg.limits.request_buffer == 65536


def test_docs_example_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    text = docs.read_text(encoding="utf-8")
    block = text.split("<!-- example -->", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config_text(block, source="docs/config.md")
    # the documented `pulsegate check` line for this example is what summarize() prints
    assert f"```text\n{summarize(cfg, 'gw.yaml')}\n```" in text


def test_file_problems_name_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gw.yaml").write_text(
        "upstreams: {api: {targets: ['h:1']}}\nroutes: [{upstream: a}, {upstream: apii}]"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("gw.yaml")
    assert info.value.problems == [
        "gw.yaml: routes[0].upstream: unknown upstream 'a' (known: api)",
        "gw.yaml: routes[1].upstream: unknown upstream 'apii' (known: api)",
    ]


def test_yaml_error_in_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("workers: 2\nroutes:\n  - {upstream: a\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}:4:1: invalid YAML: expected ',' or '}}', but got '<stream end>'"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(b"workers: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: cannot read: not UTF-8 text (invalid start byte at byte 9)"]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == GatewayConfig()


# --- docstring examples ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [pulsegate.config, units, model, checks, loader], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


# --- robustness -----------------------------------------------------------------------------------

_KEYS = [
    "listen", "workers", "admin", "token", "upstreams", "api", "targets", "address", "weight",
    "balance", "hash_key", "pool", "max_idle", "timeouts", "routes", "name", "match", "path_prefix",
    "upstream", "strip_prefix", "methods", "headers", "limits", "max_body_bytes", "bogus", "0",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.floats(allow_nan=True),
    st.sampled_from(["", "api", "h:1", "127.0.0.1:0", "2s", "1KiB", "/v1/", "(", "auto", "header:x", "-1"]),
    st.text(max_size=5),
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _DOCS, max_size=6))
# Found by hypothesis in CI: a reason quoting a value with a newline spanned two lines.
@example({"upstreams": {"listen": {"listen": None, "workers": None, "hash_key": "\n"}}})
def test_any_document_gives_a_config_or_one_line_problems(data: dict[str, object]) -> None:
    try:
        cfg = load_config_text(json.dumps(data), source="f")
    except ConfigError as err:
        assert err.problems
        assert all(p.startswith("f: ") and "\n" not in p for p in err.problems)
    else:
        assert isinstance(cfg, GatewayConfig)


def test_surrogate_pairs_from_yaml_escapes_are_joined_and_lone_ones_refused() -> None:
    cfg = load_config_text('admin: {token: "\\ud800\\udc00"}', source="gw.yaml")
    assert cfg.admin.token == "\U00010000"
    with pytest.raises(ConfigError) as err:
        load_config_text('admin: {token: "\\ud800"}', source="gw.yaml")
    assert err.value.problems == ["gw.yaml: invalid YAML: a \\u escape is half of a surrogate pair"]
