"""CEL bindings behind a small interface: compile, evaluate to plain JSON values, and static analysis.

The engine is cel-expr-python (Google's cel-cpp). Every variable is declared ``dyn``, so the checker still finds
syntax errors, undeclared names and obvious type errors (``"a" + 1``) with a ``line:col`` position at release time.

Bounds on hostile expressions (measured on the development VM with cel-expr-python 0.1.3):

* Source size: ``MAX_EXPRESSION_BYTES``. cel-cpp also refuses to parse deeper than 32 levels.
* Comprehensions: cel-cpp stops an evaluation after 10,000 comprehension iterations in total ("Iteration budget
  exceeded"); five nested ``[0..9].map`` fail in about 12 ms. The budget is fixed inside the wrapper.
* ``map``/``filter`` copy their accumulator, so they are quadratic in the list length (9,999 items: 4.4 s).
  ``MAX_LIST_ITEMS`` caps every list of the activation (999 items: 45 ms).
* ``replace()`` of the strings extension is refused at compile time: its result is the product of its inputs'
  sizes, so chained calls grow exponentially (``"a"*10`` through 7 chained replaces: 100 MB, 2 s; each further
  call multiplies both by ten) and no budget counts it.
* Results: converted lazily and abandoned as soon as they pass ``MAX_RESULT_BYTES`` of JSON.
* The activation is capped at ``MAX_ACTIVATION_BYTES`` of JSON.

Residual risk (documented, not solvable in-process with this wrapper): inside the 10,000-iteration budget an
expression can still concatenate large strings on every iteration (``[s].map(s, L99.map(a, L100.map(b,
s+s+…+s)))`` with a 5 KB literal took 13 s and 2.7 GB before the budget stopped it). cel-cpp has no memory limit
and no cancellation hook that cel-expr-python exposes, so a hard wall-clock/memory bound needs a process boundary:
the engine should evaluate bindings of untrusted (zone-authored) packages whose ``Binding.uses_comprehensions`` is
true in a worker process with a timeout and an address-space limit.
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

from zonecat.domain.problems import Problem, join_path
from zonecat.errors import ValidationFailed

MAX_EXPRESSION_BYTES = 10 * 1024
MAX_RESULT_BYTES = 1024 * 1024
MAX_ACTIVATION_BYTES = 1024 * 1024
MAX_LIST_ITEMS = 1000
#: The integers CEL holds: its ``int`` is 64-bit signed, its ``uint`` 64-bit unsigned.
CEL_INTEGERS = range(-(2**63), 2**64)
# A result whose size is bounded below this may be copied to Python whole before it is checked (Binding._copy_at_once).
_COPY_AT_ONCE_BYTES = 16 * 1024 * 1024
ITERATION_BUDGET = 10_000  # cel-cpp's RuntimeOptions.comprehension_max_iterations default; not configurable

_COMPREHENSION_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_FORBIDDEN_FUNCTIONS = {
    "replace": "replace() is not available: its result grows with the product of its arguments' sizes",
}
_WORDS_TO_SCAN = tuple(_COMPREHENSION_MACROS | _FORBIDDEN_FUNCTIONS.keys())


class BindingSyntaxError(ValidationFailed):
    """The CEL expression does not compile."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class BindingEvaluationError(ValidationFailed):
    """The CEL expression failed while being evaluated."""


# --------------------------------------------------------------------------------------------------------------
# Compilation


class _Env:
    """One cel-cpp environment per set of variable names; compiling through it is serialized by a lock."""

    def __init__(self, variables: tuple[str, ...]) -> None:
        self.env = cel.NewEnv(
            variables={name: cel.Type.DYN for name in variables},
            extensions=[ext_strings.ExtStrings()],
        )
        # Evaluating a compiled expression from many threads is safe (cel-cpp programs are immutable; the unit
        # tests exercise it), but nothing promises that of the compiler. Compiling is rare (results are cached)
        # and takes ~100 µs, so a lock costs nothing.
        self.lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _env(variables: tuple[str, ...]) -> _Env:
    return _Env(variables)


@dataclass(frozen=True)
class Binding:
    """A compiled CEL expression; ``evaluate`` may be called from many threads at once."""

    source: str
    variables: tuple[str, ...]
    uses_comprehensions: bool
    _expression: Any = field(repr=False, compare=False)

    def evaluate(self, activation: Mapping[str, object]) -> object:
        """Evaluate against ``activation`` (variable name → JSON-like Python value); return a plain JSON value.

        The result is built from ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``: CEL bytes
        become base64 strings, timestamps RFC 3339 strings, durations ``"1.5s"``. Raises
        ``BindingEvaluationError`` on any runtime error (missing key, overflow, type mismatch, exhausted iteration
        budget), on an oversize activation or result, and on a result JSON cannot represent.
        """
        # Only declared variables are passed on; one left unbound fails only if the expression reads it.
        data = {name: activation[name] for name in self.variables if name in activation}
        activation_bytes = _check_activation(data)
        try:
            value = self._expression.eval(data=data)
        except Exception as exc:  # cel-cpp raises RuntimeError for aborted evaluations (iteration budget)
            raise BindingEvaluationError(_redacted(_evaluation_message(str(exc)), data)) from None
        try:
            if self._copy_at_once(activation_bytes):
                plain = value.plain_value()
                # An error's plain value is its message: only a string can be one, so a map or a list (what entity
                # bindings give) skips asking cel-cpp for the value's type (~1 µs).
                if type(plain) is str and value.type() == cel.Type.ERROR:
                    raise self._failed(value, data)
                try:
                    result, size = plain, _plain_json_size(plain)
                except _Unusual:  # a scalar JSON cannot hold as it is, or a map key that is not a string
                    try:
                        result, size = _copied_to_json(plain, "result")
                    except _NotPlain:
                        result = _NOT_SCALAR  # a value JSON cannot hold: the lazy walk below names its CEL type
                if result is not _NOT_SCALAR:
                    _Budget(MAX_RESULT_BYTES).spend(size)
                    return result
            elif value.type() == cel.Type.ERROR:
                raise self._failed(value, data)
            return _to_json(value, _Budget(MAX_RESULT_BYTES), "result")
        except RecursionError:
            raise BindingEvaluationError("the result is nested too deeply") from None

    @staticmethod
    def _failed(value: Any, data: Mapping[str, object]) -> BindingEvaluationError:
        return BindingEvaluationError(_redacted(_evaluation_message(str(value.value())), data))

    def _copy_at_once(self, activation_bytes: int) -> bool:
        """Whether the result may be copied to Python whole (``plain_value()``, one call into cel-cpp) before its
        size is checked, instead of value by value (~20 µs more for a provider's attributes).

        Only when it cannot be large: without comprehensions, every value of the result comes from the expression's
        source or from the activation, at most once per mention in the source, so ``len(source) * activation``
        bounds it; a bound over ``_COPY_AT_ONCE_BYTES`` takes the walk that gives up at ``MAX_RESULT_BYTES``."""
        return not self.uses_comprehensions and len(self.source) * max(activation_bytes, 64) <= _COPY_AT_ONCE_BYTES


def compile_binding(source: str, *, variables: Sequence[str]) -> Binding:
    """Compile a CEL expression in which each name of ``variables`` is a ``dyn`` variable.

    Raises ``BindingSyntaxError`` when the source is longer than ``MAX_EXPRESSION_BYTES``, does not parse or type
    check (the message carries ``line:col``), or calls a function refused for safety. Compiled bindings are cached.
    """
    return _compile(source, tuple(sorted(set(variables))))


@functools.lru_cache(maxsize=2048)
def _compile(source: str, variables: tuple[str, ...]) -> Binding:
    size = len(source.encode("utf-8"))
    if size > MAX_EXPRESSION_BYTES:
        raise BindingSyntaxError(f"the expression is {size} bytes long; the limit is {MAX_EXPRESSION_BYTES}")
    # Both questions asked of the tokens are about identifiers, whose text is always part of the source: a source
    # that holds none of those words needs no tokenizing (~50 µs for a short expression; cel-cpp compiles it in ~70).
    tokens = _tokens(source) if any(word in source for word in _WORDS_TO_SCAN) else ()
    for index, token in enumerate(tokens):
        reason = _FORBIDDEN_FUNCTIONS.get(token.text) if token.kind == "ident" else None
        if reason and index + 1 < len(tokens) and tokens[index + 1].text == "(":
            at_line, at_column = _position(source, token.start)
            raise BindingSyntaxError(f"{at_line}:{at_column}: {reason}", line=at_line, column=at_column)
    env = _env(variables)
    try:
        with env.lock:
            expression = env.env.compile(source)
    except Exception as exc:  # cel-cpp reports every compile error as RuntimeError("INVALID_ARGUMENT: …")
        message, line, column = _syntax_message(str(exc))
        raise BindingSyntaxError(message, line=line, column=column) from None
    return Binding(source, variables, _uses_comprehensions(tokens), expression)


_ERROR_LINE = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): (.*)")


def _syntax_message(text: str) -> tuple[str, int | None, int | None]:
    """``INVALID_ARGUMENT: ERROR: <input>:1:7: Syntax error: …`` plus caret lines → ``1:7: Syntax error: …``."""
    messages: list[str] = []
    first: tuple[int, int] | None = None
    for match in _ERROR_LINE.finditer(text):
        line, column, message = int(match[1]), int(match[2]), match[3].strip()
        message = re.sub(r"\s*\[[A-Z_]+\]$", "", message)
        if line < 1:  # cel-cpp reports the recursion limit at -1:-1
            entry = message
        else:
            entry = f"{line}:{column}: {message}"
            first = first or (line, column)
        if entry not in messages:
            messages.append(entry)
    if not messages:
        messages.append(_strip_status(text))
    return "; ".join(messages), first[0] if first else None, first[1] if first else None


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


# --------------------------------------------------------------------------------------------------------------
# Evaluation


def _strip_status(text: str) -> str:
    """Drop cel-cpp's status decoration: ``NOT_FOUND: … [NOT_FOUND]`` → ``…``."""
    text = text.strip()
    text = re.sub(r"^[A-Z_]+: ", "", text)
    return re.sub(r"\s*\[[A-Z_]+\]$", "", text)


def _evaluation_message(text: str) -> str:
    message = _strip_status(text)
    if "Iteration budget exceeded" in message:
        return f"the expression exceeded the evaluation budget of {ITERATION_BUDGET:,} comprehension iterations"
    match = re.match(r'Key not found in map : "?(.*?)"?$', message)
    if match:
        return f"no such key: {match[1]!r}"
    return message


REDACTED = "<redacted>"


def _redacted(message: str, data: Mapping[str, object]) -> str:
    """``message`` with every string value of the activation replaced by ``<redacted>``.

    CEL quotes the values it fails on (``no such key: '…'`` for a dynamic lookup, the pattern of ``matches``), and
    the activation holds write-only inputs; the binding layer cannot tell which value is a secret, so none is shown.
    """
    values: set[str] = set()
    stack: list[object] = list(data.values())
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item:
                values.add(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            message = message.replace(value, REDACTED)
        else:  # a short value is replaced only where quoted, so that it cannot garble the words of the message
            for quote in ("'", '"'):
                message = message.replace(f"{quote}{value}{quote}", f"{quote}{REDACTED}{quote}")
    return message


# A JSON path built only when an error needs it: (parent, segment) pairs, so that walking a value costs a tuple per
# item instead of formatting a string per item.
_Path = tuple[Any, str | int] | str


def _path_text(path: _Path) -> str:
    segments: list[str | int] = []
    while isinstance(path, tuple):
        path, segment = path
        segments.append(segment)
    text = path
    for segment in reversed(segments):
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return text


def integers_out_of_range(value: object, root: str) -> list[Problem]:
    """Every integer of a JSON ``value`` that bindings could not read (CEL holds none outside ``CEL_INTEGERS``), by
    its path under ``root``: install inputs are refused with them, rather than accepted and their task failed."""
    problems: list[Problem] = []
    stack: list[tuple[object, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if item not in CEL_INTEGERS:
                problems.append(Problem(path, "integer out of range: bindings read integers from -2^63 to 2^64-1"))
        elif isinstance(item, Mapping):
            stack.extend((child, join_path(path, str(key))) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, join_path(path, index)) for index, child in enumerate(item))
    return sorted(problems, key=lambda problem: problem.field)


class _Unusual(Exception):
    """The fast size estimate met something it does not measure (a list over the cap, a mapping or sequence of
    another type, deep nesting): the exact walk decides, and words any refusal."""


def _check_activation(data: Mapping[str, object]) -> int:
    """Refuse lists longer than ``MAX_LIST_ITEMS`` and activations larger than ``MAX_ACTIVATION_BYTES``; return the
    activation's estimated JSON size.

    ``map`` is quadratic in cel-cpp, so the list cap is what bounds its wall time. Activations are JSON (plain dicts,
    lists and scalars) and small: they are measured by a quick recursive estimate, and only a refusal or anything
    unusual takes the exact walk, which names the path of the offending list.
    """
    try:
        total = sum(_json_size(value) for value in data.values())
    except (_Unusual, RecursionError):
        return _check_activation_exactly(data)
    if total > MAX_ACTIVATION_BYTES:
        return _check_activation_exactly(data)
    return total


def _json_size(value: object) -> int:
    """``_check_activation_exactly``'s estimate of a plain JSON value, without paths or a running total."""
    kind = type(value)
    if kind is str:
        return len(value) + 2  # type: ignore[arg-type]
    if kind is dict:
        total = 2
        for key, item in value.items():  # type: ignore[attr-defined]
            # Strings, the most common values, are measured here rather than by a call each.
            total += (len(key) if type(key) is str else len(str(key))) + 3
            total += len(item) + 2 if type(item) is str else _json_size(item)
        return total
    if kind is list:
        if len(value) > MAX_LIST_ITEMS:  # type: ignore[arg-type]
            raise _Unusual()
        total = 2
        for item in value:  # type: ignore[attr-defined]
            total += len(item) + 2 if type(item) is str else _json_size(item)
        return total
    if isinstance(value, Mapping | list | tuple):
        raise _Unusual()
    return 8


def _check_activation_exactly(data: Mapping[str, object]) -> int:
    """``_check_activation`` value by value, with the path of every value at hand for the refusal's message."""
    total = 0
    stack: list[tuple[object, _Path]] = [(value, name) for name, value in data.items()]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            total += len(value) + 2
        elif isinstance(value, Mapping):
            total += 2
            for key, item in value.items():
                total += len(str(key)) + 3
                stack.append((item, (path, str(key))))
        elif isinstance(value, list | tuple):
            if len(value) > MAX_LIST_ITEMS:
                raise BindingEvaluationError(
                    f"{_path_text(path)} has {len(value)} items; bindings accept lists of at most {MAX_LIST_ITEMS}"
                )
            total += 2
            stack.extend((item, (path, index)) for index, item in enumerate(value))
        else:
            total += 8
        if total > MAX_ACTIVATION_BYTES:
            raise BindingEvaluationError(f"the values bound to the expression exceed {MAX_ACTIVATION_BYTES} bytes")
    return total


class _Budget:
    """Running estimate of the result's JSON size, so a huge result is abandoned before it is fully copied."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise BindingEvaluationError(f"the result is larger than {MAX_RESULT_BYTES} bytes")


class _NotPlain(Exception):
    """A value of the wholly copied result that JSON cannot hold (a CEL type value): walk the result lazily instead,
    which reports it by its CEL type."""


_NOT_SCALAR = object()


def _scalar(plain: object, path: _Path) -> tuple[object, int]:
    """A scalar of the result as JSON, and its estimated JSON size; ``(_NOT_SCALAR, 0)`` for a list, a map or a
    value JSON cannot hold."""
    if plain is None or isinstance(plain, bool):
        return plain, 5
    if isinstance(plain, int):
        return plain, len(str(plain))
    if isinstance(plain, float):
        if not math.isfinite(plain):
            raise BindingEvaluationError(f"the result has a non-finite number ({plain}) at {_path_text(path)}")
        return plain, 24
    if isinstance(plain, str):
        return plain, len(plain) + 2
    if isinstance(plain, bytes | bytearray):
        return base64.b64encode(bytes(plain)).decode("ascii"), len(plain) * 4 // 3 + 4
    if isinstance(plain, datetime.datetime):
        return plain.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"), 32
    if isinstance(plain, datetime.timedelta):
        return f"{plain.total_seconds():g}s", 24
    return _NOT_SCALAR, 0


def _not_a_string_key(key: object, path: _Path) -> BindingEvaluationError:
    return BindingEvaluationError(f"the result has a map key that is not a string ({key!r}) at {_path_text(path)}")


def _to_json(value: Any, budget: _Budget, path: _Path) -> object:
    """Convert a cel ``Value`` to plain JSON lazily (``value()`` of a list or map yields further ``Value``s), giving
    up as soon as the result passes ``MAX_RESULT_BYTES``."""
    plain = value.value()
    converted, size = _scalar(plain, path)
    if converted is not _NOT_SCALAR:
        budget.spend(size)
        return converted
    if isinstance(plain, list):
        budget.spend(2)
        return [_to_json(item, budget, (path, index)) for index, item in enumerate(plain)]
    if isinstance(plain, dict):
        budget.spend(2)
        result: dict[str, object] = {}
        for key, item in plain.items():
            if not isinstance(key, str):
                raise _not_a_string_key(key, path)
            budget.spend(len(key) + 4)
            result[key] = _to_json(item, budget, (path, key))
        return result
    raise BindingEvaluationError(f"the result has a value of CEL type {value.type().name()} at {_path_text(path)}")


def _plain_json_size(plain: object) -> int:
    """The estimated JSON size of a result copied whole, when it is plain JSON already (the common case: strings,
    maps with string keys, lists, finite numbers, booleans, null). Without paths or conversions, and with strings
    handled inline, it is about twice as fast as ``_copied_to_json``, which takes over on ``_Unusual`` (anything
    to convert or to refuse) and produces the same size."""
    kind = type(plain)
    if kind is str:
        return len(plain) + 2  # type: ignore[arg-type]
    if kind is dict:
        total = 2
        for key, item in plain.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _Unusual()
            if type(item) is str:
                total += len(item) + len(key) + 6
            else:
                total += _plain_json_size(item) + len(key) + 4
        return total
    if kind is list:
        total = 2
        for item in plain:  # type: ignore[attr-defined]
            total += len(item) + 2 if type(item) is str else _plain_json_size(item)
        return total
    if plain is None or kind is bool:
        return 5
    if kind is int:
        return len(str(plain))
    if kind is float and math.isfinite(plain):  # type: ignore[arg-type]
        return 24
    raise _Unusual()


def _copied_to_json(plain: object, path: _Path) -> tuple[object, int]:
    """A result already copied whole by ``plain_value()`` as plain JSON, and its estimated JSON size (checked by the
    caller). The copy is this call's own: its maps and lists are kept and only scalars JSON cannot hold are replaced
    in place. Strings, maps and lists, most of any result, are tested first."""
    kind = type(plain)
    if kind is str:
        return plain, len(plain) + 2  # type: ignore[arg-type]
    if kind is dict:
        total = 2
        for key, item in plain.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _not_a_string_key(key, path)
            if type(item) is str:
                total += len(item) + len(key) + 6
                continue
            converted, size = _copied_to_json(item, (path, key))
            if converted is not item:
                plain[key] = converted  # type: ignore[index]
            total += size + len(key) + 4
        return plain, total
    if kind is list:
        total = 2
        for index, item in enumerate(plain):  # type: ignore[arg-type]
            converted, size = _copied_to_json(item, (path, index))
            if converted is not item:
                plain[index] = converted  # type: ignore[index]
            total += size
        return plain, total
    converted, size = _scalar(plain, path)
    if converted is _NOT_SCALAR:
        raise _NotPlain()
    return converted, size


# --------------------------------------------------------------------------------------------------------------
# Static analysis: a tokenizer that understands CEL's literals and comments, not a parser.


@dataclass(frozen=True)
class _Token:
    kind: str  # "string", "bytes", "number", "ident", "punct"
    text: str  # for a backtick-quoted identifier, the name between the backticks
    start: int
    end: int


_STRING_START = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|\"|')")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?")
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_PUNCT = ("==", "!=", "<=", ">=", "&&", "||")


@functools.lru_cache(maxsize=256)
def _tokens(source: str) -> tuple[_Token, ...]:
    # Cached: release checks and the provisioner ask several questions of the same expression, one expression
    # after the other. Kept small: the answers are cached further up, and ~10 token objects per expression of a
    # 10,000-entity package would otherwise stay alive for every garbage collection to walk.
    return tuple(_scan(source))


def _scan(source: str) -> Iterator[_Token]:
    """Yield CEL tokens; whitespace and ``//`` comments are skipped, strings are single tokens.

    Lenient by design: it never fails (an unterminated string runs to the end); the CEL compiler is the judge of
    validity, this only needs to be right on sources that compile.
    """
    position, length = 0, len(source)
    previous: _Token | None = None
    while position < length:
        char = source[position]
        if char.isspace():
            position += 1
            continue
        if source.startswith("//", position):
            newline = source.find("\n", position)
            position = length if newline < 0 else newline + 1
            continue
        token: _Token
        string = _STRING_START.match(source, position)
        if string:
            token = _string_token(source, position, string.group())
        elif char == "`":
            close = source.find("`", position + 1)
            end = length if close < 0 else close + 1
            token = _Token("ident", source[position + 1 : end - 1], position, end)
        elif (number := _NUMBER.match(source, position)) and (
            char != "." or previous is None or (previous.kind == "punct" and previous.text not in ")]}")
        ):
            token = _Token("number", number.group(), position, number.end())
        elif ident := _IDENT.match(source, position):
            token = _Token("ident", ident.group(), position, ident.end())
        else:
            text = source[position : position + 2]
            text = text if text in _PUNCT else char
            token = _Token("punct", text, position, position + len(text))
        yield token
        previous = token
        position = token.end


def _string_token(source: str, start: int, opener: str) -> _Token:
    prefix = opener.rstrip("\"'").lower()
    quote = opener[len(prefix) :]
    raw = "r" in prefix
    position = start + len(opener)
    while position < len(source):
        if not raw and source[position] == "\\":
            position += 2
            continue
        if source.startswith(quote, position):
            position += len(quote)
            break
        position += 1
    position = min(position, len(source))
    return _Token("bytes" if "b" in prefix else "string", source[start:position], start, position)


def _uses_comprehensions(tokens: Sequence[_Token]) -> bool:
    return any(
        token.kind == "ident"
        and token.text in _COMPREHENSION_MACROS
        and index > 0
        and tokens[index - 1].text == "."
        and index + 1 < len(tokens)
        and tokens[index + 1].text == "("
        for index, token in enumerate(tokens)
    )


def _literal(text: str) -> object:
    """The value of a CEL literal (string, number, list or map of literals), evaluated by CEL itself."""
    return copy.deepcopy(_literal_cached(text))


@functools.lru_cache(maxsize=16_384)
def _literal_cached(text: str) -> object:
    return compile_binding(text, variables=()).evaluate({})


@dataclass(frozen=True)
class _Entry:
    key: str
    value: Sequence[_Token]


def _map_entries(source: str) -> list[_Entry] | None:
    """The entries of a top-level map literal whose keys are string literals; ``None`` for anything else."""
    tokens = _tokens(source)
    if len(tokens) < 2 or tokens[0].text != "{" or tokens[-1].text != "}":
        return None
    entries: list[list[_Token]] = [[]]
    depth = 0
    for token in tokens[1:-1]:
        if token.kind == "punct" and token.text in "([{":
            depth += 1
        elif token.kind == "punct" and token.text in ")]}":
            depth -= 1
            if depth < 0:  # the opening brace closed before the end: `{…} + {…}` is not a map literal
                return None
        if depth == 0 and token.text == "," and token.kind == "punct":
            entries.append([])
        else:
            entries[-1].append(token)
    if depth != 0:
        return None
    if not entries[-1] and len(entries) > 1:  # CEL allows a trailing comma
        entries.pop()
    if entries == [[]]:
        return []
    result: list[_Entry] = []
    for entry in entries:
        if len(entry) < 3 or entry[0].kind != "string" or entry[1].text != ":":
            return None
        try:
            key = _literal(entry[0].text)
        except (BindingSyntaxError, BindingEvaluationError):
            return None
        if not isinstance(key, str):
            return None
        result.append(_Entry(key, entry[2:]))
    return result


@functools.lru_cache(maxsize=1024)
def _cached_entries(source: str) -> tuple[_Entry, ...] | None:
    entries = _map_entries(source)
    return None if entries is None else tuple(entries)


def map_literal_keys(source: str) -> list[str] | None:
    """The keys, in source order, of a top-level map literal with string-literal keys; ``None`` otherwise."""
    entries = _cached_entries(source)
    return None if entries is None else [entry.key for entry in entries]


def referenced_entities(source: str) -> set[str]:
    """Every ``X`` in ``entities.X`` or ``entities["X"]`` outside string literals and comments; ``inputs`` excluded."""
    return set(_referenced_entities(source))


@functools.lru_cache(maxsize=16_384)
def _referenced_entities(source: str) -> frozenset[str]:
    tokens = _tokens(source)
    names: set[str] = set()
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text != "entities":
            continue
        if index > 0 and tokens[index - 1].text == ".":  # a field `x.entities`, not the variable
            continue
        following = tokens[index + 1 : index + 4]
        name: str | None = None
        if len(following) >= 2 and following[0].text == "." and following[1].kind == "ident":
            name = following[1].text
        elif len(following) == 3 and following[0].text == "[" and following[1].kind == "string":
            if following[2].text == "]":
                try:
                    literal = _literal(following[1].text)
                except (BindingSyntaxError, BindingEvaluationError):
                    literal = None
                name = literal if isinstance(literal, str) else None
        if name is not None and name != "inputs":
            names.add(name)
    return frozenset(names)


_LITERAL_IDENTS = frozenset({"true", "false", "null"})
_LITERAL_PUNCT = frozenset({"[", "]", "{", "}", ",", ":", "-"})


def effective_bindings(source: str) -> dict[str, object] | None:
    """Describe an input-binding map literal (Keycard's ``InputState.effective_bindings``); ``None`` otherwise.

    A value that is a literal is shown as its value; a value that is exactly ``pkg.inputs.A.B`` as
    ``{"$input": "A.B"}``; anything else as ``{"$expr": "<its source text>"}``.
    """
    entries = _cached_entries(source)
    if entries is None:
        return None
    result: dict[str, object] = {}
    for entry in entries:
        result[entry.key] = _describe(source, entry.value)
    return result


def _is_literal_token(token: _Token) -> bool:
    if token.kind == "ident":
        return token.text in _LITERAL_IDENTS
    if token.kind == "punct":
        return token.text in _LITERAL_PUNCT
    return True  # string, bytes, number


def _describe(source: str, tokens: Sequence[_Token]) -> object:
    text = source[tokens[0].start : tokens[-1].end].strip()
    if all(_is_literal_token(token) for token in tokens):
        try:
            return _literal(text)
        except (BindingSyntaxError, BindingEvaluationError):
            pass
    texts = [token.text for token in tokens]
    if (
        len(tokens) >= 5
        and len(tokens) % 2 == 1
        and texts[:4] == ["pkg", ".", "inputs", "."]
        and all(token.kind == "ident" for token in tokens[0::2])
        and all(token.kind == "punct" and token.text == "." for token in tokens[1::2])
    ):
        return {"$input": ".".join(texts[4::2])}
    return {"$expr": text}
