"""CEL bindings: compile, evaluate, limits, thread safety and static analysis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from zonecat.domain import bindings as bindings_module
from zonecat.domain.bindings import (
    MAX_EXPRESSION_BYTES,
    MAX_LIST_ITEMS,
    Binding,
    BindingEvaluationError,
    BindingSyntaxError,
    compile_binding,
    effective_bindings,
    map_literal_keys,
    referenced_entities,
)
from zonecat.errors import ValidationFailed

PKG = {"pkg": {"inputs": {"client_id": "abc", "client_secret": "s3", "scopes": ["read", "write"], "n": 3}}}
ENTITIES = {
    "entities": {
        "inputs": {"issuer": "https://accounts.google.com", "scopes": ["calendar"]},
        "google": {"href": "/zones/z/providers/p1", "outputs": {"id": "p1", "name": "Google"}},
    }
}
L10 = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"


def evaluate(source: str, activation: dict[str, object], variables: tuple[str, ...] = ("pkg",)) -> object:
    return compile_binding(source, variables=variables).evaluate(activation)


# -------------------------------------------------------------------------------------------- evaluation


def test_input_binding_map_literal() -> None:
    source = """
        {"client_id": pkg.inputs.client_id, "client_secret": pkg.inputs.client_secret,
         "scopes": pkg.inputs.scopes, "issuer": "https://accounts.google.com", "twice": pkg.inputs.n * 2}
    """
    assert evaluate(source, PKG) == {
        "client_id": "abc",
        "client_secret": "s3",
        "scopes": ["read", "write"],
        "issuer": "https://accounts.google.com",
        "twice": 6,
    }


def test_entity_binding_reads_other_entities_outputs() -> None:
    source = '{"identifier": entities.inputs.issuer, "credential_provider_id": entities.google.outputs.id}'
    assert evaluate(source, ENTITIES, ("entities",)) == {
        "identifier": "https://accounts.google.com",
        "credential_provider_id": "p1",
    }


def test_has_macro_with_present_and_absent_fields() -> None:
    source = 'has(pkg.inputs.region) ? pkg.inputs.region : "us"'
    assert evaluate(source, PKG) == "us"
    assert evaluate(source, {"pkg": {"inputs": {"region": "eu"}}}) == "eu"


def test_string_extensions() -> None:
    source = '[pkg.inputs.client_id.upperAscii(), "a,b".split(",").join("-"), " x ".trim(), "abc".substring(1)]'
    assert evaluate(source, PKG) == ["ABC", "a-b", "x", "bc"]


def test_standard_macros_and_operators() -> None:
    source = '{"any": pkg.inputs.scopes.exists(s, s == "read"), "up": pkg.inputs.scopes.map(s, "x:" + s), \
"in": "write" in pkg.inputs.scopes, "m": pkg.inputs.client_id.matches("^a")}'
    assert evaluate(source, PKG) == {"any": True, "up": ["x:read", "x:write"], "in": True, "m": True}


def test_results_are_plain_json_values() -> None:
    source = """{"null": null, "b": true, "i": -1, "u": 7u, "d": 2.5, "s": "x", "bytes": b"hi",
                "t": timestamp("2024-05-01T10:00:00Z"), "dur": duration("90s"), "l": [1, [2]], "m": {"k": {}}}"""
    assert evaluate(source, {}) == {
        "null": None,
        "b": True,
        "i": -1,
        "u": 7,
        "d": 2.5,
        "s": "x",
        "bytes": "aGk=",
        "t": "2024-05-01T10:00:00Z",
        "dur": "90s",
        "l": [1, [2]],
        "m": {"k": {}},
    }


def test_variables_not_declared_are_ignored_in_the_activation() -> None:
    assert evaluate("pkg.inputs.n + 1", {**PKG, "other": object()}) == 4


@pytest.mark.parametrize(
    ("source", "activation", "message"),
    [
        ("pkg.inputs.missing", PKG, "no such key: 'missing'"),
        ("pkg.inputs.scopes[5]", PKG, "index=5"),
        ("9223372036854775807 + pkg.inputs.n", PKG, "integer overflow"),
        ("pkg.inputs.n / 0", PKG, "divide by zero"),
        ("pkg.inputs.client_id + 1", PKG, "No matching overloads"),
        ("pkg.inputs", {}, 'No value with name "pkg"'),
        ("{1: 2}", {}, "map key that is not a string"),
        ("1.0 / 0.0", {}, "non-finite number"),
        ("int", {}, "CEL type TYPE"),
        ("pkg", {"pkg": 2**70}, "out of range"),
    ],
)
def test_runtime_errors_raise_binding_evaluation_error(
    source: str, activation: dict[str, object], message: str
) -> None:
    with pytest.raises(BindingEvaluationError, match=message) as info:
        evaluate(source, activation)
    assert isinstance(info.value, ValidationFailed)
    assert info.value.code == "validation_error"


def test_oversize_activation_list_is_refused_before_evaluation() -> None:
    binding = compile_binding("pkg.items.map(x, x + 1)", variables=["pkg"])
    assert binding.evaluate({"pkg": {"items": list(range(MAX_LIST_ITEMS))}}) == list(range(1, MAX_LIST_ITEMS + 1))
    with pytest.raises(BindingEvaluationError, match=r"pkg\.items has 1001 items"):
        binding.evaluate({"pkg": {"items": list(range(MAX_LIST_ITEMS + 1))}})


def test_oversize_activation_is_refused() -> None:
    with pytest.raises(BindingEvaluationError, match="exceed"):
        evaluate("size(pkg.blob)", {"pkg": {"blob": "x" * (2 * 1024 * 1024)}})


# -------------------------------------------------------------------------------- hostile expressions


def refused(source: str, activation: dict[str, object]) -> str:
    """The error message of an evaluation that must be refused (how fast is measured in bench/, not here)."""
    with pytest.raises(BindingEvaluationError) as info:
        evaluate(source, activation)
    return info.value.message


def test_nested_comprehensions_exhaust_the_budget() -> None:
    source = L10
    for var in "abcd":
        source = f"{L10}.map({var}, {source})"
    message = refused(source, {})
    assert "evaluation budget of 10,000" in message


def test_a_huge_result_hits_the_result_cap() -> None:
    literal = '"' + "x" * 9000 + '"'
    source = f"{L10}.map(a, {L10}.map(b, {L10}.map(c, [0, 1, 2, 3, 4, 5, 6, 7].map(d, {literal}))))"
    message = refused(source, {})  # 72 MB of JSON if converted
    assert "larger than 1048576 bytes" in message


def test_repeated_concatenation_hits_the_result_cap() -> None:
    source = f"{L10}.map(a, {L10}.map(b, {L10}.map(c, pkg.big + pkg.big)))"
    message = refused(source, {"pkg": {"big": "z" * 60_000}})  # 120 MB
    assert "larger than" in message


def test_joined_giant_string_hits_the_budget() -> None:
    literal = '"' + "x" * 9000 + '"'
    inner = f"{L10}.map(c, [0, 1, 2, 3, 4, 5, 6, 7].map(d, {literal})).map(c, c.join()).join()"
    source = f"{L10}.map(a, {L10}.map(b, {inner}).join()).join()"
    message = refused(source, {})
    assert "budget" in message


def test_replace_is_refused_at_compile_time() -> None:
    # Chained replace() grows exponentially and is not counted by any budget (7 chained: 100 MB in 2 s).
    source = '"aaaaaaaaaa"' + '.replace("a", "aaaaaaaaaa")' * 9
    with pytest.raises(BindingSyntaxError, match=r"1:14: replace\(\) is not available") as info:
        compile_binding(source, variables=[])
    assert (info.value.line, info.value.column) == (1, 14)
    with pytest.raises(BindingSyntaxError):
        compile_binding('pkg.x. replace ("a", "b")', variables=["pkg"])
    # A field or string that merely mentions the name is fine.
    assert evaluate('pkg.replace + "replace("', {"pkg": {"replace": "r"}}) == "rreplace("


# --------------------------------------------------------------------------------------------- compiling


def test_syntax_error_reports_line_and_column() -> None:
    with pytest.raises(BindingSyntaxError) as info:
        compile_binding('{"a": pkg.inputs.a,\n "b": }', variables=["pkg"])
    assert info.value.message.startswith("2:7: Syntax error")
    assert (info.value.line, info.value.column) == (2, 7)
    assert "[INVALID_ARGUMENT]" not in info.value.message


def test_type_and_reference_errors_are_compile_errors() -> None:
    with pytest.raises(BindingSyntaxError, match=r"1:5: found no matching overload for '_\+_'"):
        compile_binding('"a" + 1', variables=[])
    with pytest.raises(BindingSyntaxError, match=r"1:9: undeclared reference to 'entities\.x'"):
        compile_binding("entities.x", variables=["pkg"])


def test_deep_nesting_is_a_compile_error() -> None:
    with pytest.raises(BindingSyntaxError, match="recursion"):
        compile_binding("(" * 40 + "1" + ")" * 40, variables=[])


def test_oversize_source_is_refused() -> None:
    source = '"' + "x" * MAX_EXPRESSION_BYTES + '"'
    with pytest.raises(BindingSyntaxError, match="limit is 10240"):
        compile_binding(source, variables=[])
    assert compile_binding('"' + "x" * (MAX_EXPRESSION_BYTES - 2) + '"', variables=[]).evaluate({})


def test_compiled_bindings_are_cached() -> None:
    first = compile_binding("pkg.inputs.n", variables=["pkg"])
    assert compile_binding("pkg.inputs.n", variables=("pkg",)) is first
    assert compile_binding("pkg.inputs.n", variables=["pkg", "entities"]) is not first


def test_uses_comprehensions() -> None:
    assert compile_binding("pkg.l.map(x, x)", variables=["pkg"]).uses_comprehensions
    assert not compile_binding('{"map": pkg.map}', variables=["pkg"]).uses_comprehensions


@pytest.mark.parametrize(
    "source",
    [
        "pkg.l.map(x, x)",
        "pkg.l . exists ( x, x == 1)",
        '{"map": pkg.map}',
        '{"identifier": "7", "name": pkg.e6.outputs.id}',  # no word to scan for: not tokenized
        "pkg.l.all(x, x > 0)",
        "pkg.l.filter(y, y > 1)",
        '"filter(" + pkg.s',
        "pkg.l.exists_one(x, x == 2)",
    ],
)
def test_a_source_is_tokenized_only_when_it_holds_a_word_the_checks_look_for(source: str) -> None:
    from zonecat.domain.bindings import _tokens, _uses_comprehensions

    assert compile_binding(source, variables=["pkg"]).uses_comprehensions == _uses_comprehensions(_tokens(source))


def test_evaluation_is_thread_safe() -> None:
    binding = compile_binding(
        '{"id": pkg.inputs.id, "sq": pkg.inputs.items.map(x, x * x), "s": string(pkg.inputs.id) + "!"}',
        variables=["pkg"],
    )

    def work(worker: int) -> int:
        for i in range(300):
            n = worker * 1000 + i
            result = binding.evaluate({"pkg": {"inputs": {"id": n, "items": [n, n + 1]}}})
            assert result == {"id": n, "sq": [n * n, (n + 1) ** 2], "s": f"{n}!"}
        return worker

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))


def test_compiling_is_thread_safe() -> None:
    barrier = threading.Barrier(8)

    def work(worker: int) -> object:
        barrier.wait()
        bindings = [compile_binding(f"pkg.v + {worker * 100 + i}", variables=["pkg"]) for i in range(50)]
        return [b.evaluate({"pkg": {"v": 1}}) for b in bindings]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    assert results == [[1 + w * 100 + i for i in range(50)] for w in range(8)]


def test_binding_is_a_value_object() -> None:
    binding = compile_binding("1", variables=[])
    assert isinstance(binding, Binding)
    assert binding.source == "1" and binding.variables == ()


# ---------------------------------------------------------------------------------------- static analysis


def test_map_literal_keys() -> None:
    source = """// leading comment
    {"a": 1, 'b': "x, y: z", \"\"\"c\"\"\": {"d": [1, 2]}, r"e\\n": f(1, 2) ? 3 : 4,
     "f\\u00e9": entities.x.outputs.id,}"""
    assert map_literal_keys(source) == ["a", "b", "c", "e\\n", "fé"]


@pytest.mark.parametrize(
    "source",
    ['{"a": 1} + {"b": 2}', "{a: 1}", '{1: "a"}', '[{"a": 1}]', "pkg.inputs", '{"a" + "b": 1}', '{b"a": 1}', ""],
)
def test_map_literal_keys_is_none_for_anything_else(source: str) -> None:
    assert map_literal_keys(source) is None


def test_map_literal_keys_of_the_empty_map() -> None:
    assert map_literal_keys(" { } ") == []


def test_referenced_entities() -> None:
    source = """{
        "a": entities.google.outputs.id,           // entities.commented
        "b": "entities.in_a_string and 'entities.more'",
        "c": entities.inputs.issuer,
        "d": entities["drive"].href,
        "e": pkg.entities.not_a_root,
        "f": r'entities.raw',
        "g": '''entities.triple''',
        "h": entities . spaced .outputs,
        "i": entities.`odd-name`.href,
        "j": "escaped \\" entities.still_string"
    }"""
    assert referenced_entities(source) == {"google", "drive", "spaced", "odd-name"}


def test_referenced_entities_without_any() -> None:
    assert referenced_entities('"entities.x"') == set()
    assert referenced_entities("entities.inputs.a") == set()


def test_effective_bindings_keycard_example() -> None:
    # keycard-catalog-api.md §2.11
    source = (
        '{"resource_url": "https://api.linear.app", "scopes": ["read","write"], '
        '"client_id": pkg.inputs.client_id, "client_secret": pkg.inputs.client_secret}'
    )
    assert effective_bindings(source) == {
        "resource_url": "https://api.linear.app",
        "scopes": ["read", "write"],
        "client_id": {"$input": "client_id"},
        "client_secret": {"$input": "client_secret"},
    }


def test_effective_bindings_literals_paths_and_expressions() -> None:
    source = """{
        "n": -1.5, "flag": true, "none": null, "map": {"k": [1, "two"]},
        "nested": pkg.inputs.oauth.client_id,
        "expr": pkg.inputs.name + "-app",
        "indexed": pkg.inputs["x"],
        "whole": pkg.inputs
    }"""
    assert effective_bindings(source) == {
        "n": -1.5,
        "flag": True,
        "none": None,
        "map": {"k": [1, "two"]},
        "nested": {"$input": "oauth.client_id"},
        "expr": {"$expr": 'pkg.inputs.name + "-app"'},
        "indexed": {"$expr": 'pkg.inputs["x"]'},
        "whole": {"$expr": "pkg.inputs"},
    }


def test_effective_bindings_is_none_without_a_map_literal() -> None:
    assert effective_bindings("pkg.inputs") is None


def test_evaluation_errors_redact_values_of_the_activation() -> None:
    from zonecat.domain.bindings import BindingEvaluationError, compile_binding

    activation = {"entities": {"inputs": {"secret": "hunter2-secret", "short": "ab", "pattern": "[(secret"}}}
    cases = {
        '{"a": 1}[entities.inputs.secret]': "hunter2-secret",
        '{"a": 1}[entities.inputs.short]': "'ab'",
        '"x".matches(entities.inputs.pattern)': "[(secret",
    }
    for source, leaked in cases.items():
        with pytest.raises(BindingEvaluationError) as caught:
            compile_binding(source, variables=["entities"]).evaluate(activation)
        assert leaked not in caught.value.message, caught.value.message
        assert "<redacted>" in caught.value.message
    with pytest.raises(BindingEvaluationError) as caught:
        compile_binding("entities.inputs.missing", variables=["entities"]).evaluate(activation)
    assert caught.value.message == "no such key: 'missing'"


# -------------------------------------------------------------------------------- result conversion


@pytest.mark.parametrize(
    "source",
    [
        '{"a": [1, 2u, 2.5, true, null, "s", b"\\x00\\xff"], "t": timestamp("2024-05-01T10:00:00Z")}',
        '{"d": duration("1.5s"), "n": {"deep": [[[]]]}, "e": {}}',
        "pkg.inputs",
        '[pkg.inputs.scopes, pkg.inputs.n, "x" + pkg.inputs.client_id]',
        "{1: 2}",
        "1.0 / 0.0",
        "[int]",
        '{"k": type(1)}',
        # Runtime errors, whose plain value is their message, and a string result that is not one.
        "pkg.inputs.missing",
        "1 / 0",
        '"a string, not an error"',
    ],
)
def test_the_whole_copy_and_the_lazy_walk_convert_alike(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    binding = compile_binding(source, variables=["pkg"])
    assert binding._copy_at_once(100)  # a small result: copied whole by default

    def outcome() -> object:
        try:
            return binding.evaluate(PKG)
        except BindingEvaluationError as exc:
            return ("error", exc.message)

    whole = outcome()
    monkeypatch.setattr(bindings_module, "_COPY_AT_ONCE_BYTES", 0)  # forces the value-by-value walk
    assert not binding._copy_at_once(100)
    assert outcome() == whole


def test_a_result_that_may_be_large_is_walked_value_by_value_and_capped() -> None:
    # No comprehension, but 40 mentions of a 60 kB string: up to 2.4 MB, more than the cap of 1 MB.
    source = "[" + ", ".join(["pkg.big"] * 40) + "]"
    binding = compile_binding(source, variables=["pkg"])
    assert not binding._copy_at_once(60_000 + 10)
    assert "larger than 1048576 bytes" in refused(source, {"pkg": {"big": "z" * 60_000}})
    assert not compile_binding(f"{L10}.map(a, a)", variables=["pkg"])._copy_at_once(10)  # comprehensions: never


def test_the_quick_activation_estimate_equals_the_exact_walk() -> None:
    from types import MappingProxyType

    nested: object = "leaf"
    for _ in range(3000):  # deeper than Python's recursion limit: the quick estimate gives way to the walk
        nested = [nested]
    for data in (
        {**PKG, **ENTITIES},
        {"pkg": {"a": [1, 2.5, None, True, {"b": "c" * 100}], "n": {}}},
        {"pkg": MappingProxyType({"a": ("x", "y")})},  # other mapping and sequence types
        {"pkg": nested},
    ):
        assert bindings_module._check_activation(data) == bindings_module._check_activation_exactly(data)


def test_the_whole_copy_estimates_the_size_the_lazy_walk_counts() -> None:
    source = '{"a": [1, 2u, 2.5, true, null, "s", b"xy"], "t": timestamp("2024-05-01T10:00:00Z"), "p": pkg.inputs}'
    binding = compile_binding(source, variables=["pkg"])
    value = binding._expression.eval(data=PKG)
    budget = bindings_module._Budget(10**9)
    lazy = bindings_module._to_json(value, budget, "result")
    whole, size = bindings_module._copied_to_json(value.plain_value(), "result")
    assert whole == lazy
    assert size == 10**9 - budget.left


@pytest.mark.parametrize(
    "source",
    [
        '{"a": [1, 2u, 2.5, true, null, "s", ["t", {"u": "v"}]], "e": {}, "l": []}',
        "pkg.inputs",
        '"just a string"',
        "[pkg.inputs.n, -7, 0.0]",
    ],
)
def test_the_quick_size_of_a_plain_result_equals_the_converting_walk(source: str) -> None:
    plain = compile_binding(source, variables=["pkg"])._expression.eval(data=PKG).plain_value()
    assert bindings_module._plain_json_size(plain) == bindings_module._copied_to_json(plain, "result")[1]


@pytest.mark.parametrize(
    "source",
    ['[b"xy"]', '{"t": timestamp("2024-05-01T10:00:00Z")}', '{"d": [duration("1s")]}', "{1: 2}", "[1.0 / 0.0]"],
)
def test_a_result_to_convert_or_refuse_is_not_taken_as_plain(source: str) -> None:
    plain = compile_binding(source, variables=["pkg"])._expression.eval(data=PKG).plain_value()
    with pytest.raises(bindings_module._Unusual):
        bindings_module._plain_json_size(plain)
