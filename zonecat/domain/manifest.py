"""Package manifests (design §4): parsing, draft and release checks, ``manifest_sha``, the entity graph, input state.

A manifest arrives as YAML or JSON text (catalog files, the CLI) or as an already-parsed JSON value (the API). It
is kept as that plain value — the canonical JSON of it is what ``manifest_sha`` hashes — and a ``Manifest`` object
is built from it only after the release checks passed.

Every check reports ``Problem``s instead of raising, so one release attempt lists everything that is wrong
(design §4.2), each at a dotted path rooted at ``manifest.`` (``manifest.entities.api.bindings``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import yaml

from zonecat.domain.bindings import (
    BindingEvaluationError,
    BindingSyntaxError,
    compile_binding,
    effective_bindings,
    map_literal_keys,
    referenced_entities,
)
from zonecat.domain.entity_types import ENTITY_TYPES
from zonecat.domain.graph import CycleError, topological_order
from zonecat.domain.kinds import KINDS
from zonecat.domain.problems import Problem, join_path
from zonecat.domain.schemas import check_schema, merge_schemas
from zonecat.errors import BadRequest

__all__ = [
    "ENTITY_NAME_PATTERN",
    "MANIFEST_KEYS",
    "MAX_CEL_BYTES",
    "MAX_DEPTH",
    "MAX_ENTITIES",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_TEXT_BYTES",
    "EntitySpec",
    "Manifest",
    "ManifestSyntaxError",
    "canonical_json",
    "draft_problems",
    "effective_input_schema",
    "input_state",
    "load_manifest_text",
    "manifest_sha",
    "release_problems",
    "slugify",
]

MAX_MANIFEST_BYTES: Final = 1024 * 1024
"""Largest manifest, measured as its canonical JSON (design §7)."""

MAX_MANIFEST_TEXT_BYTES: Final = 4 * MAX_MANIFEST_BYTES
"""Largest manifest *text* parsed at all; YAML comments and indentation make text larger than its canonical JSON."""

MAX_ENTITIES: Final = 10_000
"""Most entities in one package (design §7)."""

MAX_CEL_BYTES: Final = 10 * 1024
"""Longest CEL expression, in UTF-8 bytes (design §7)."""

MAX_DEPTH: Final = 64
"""Deepest nesting of objects and lists in a manifest; real ones need fewer than ten levels."""

MAX_NAME_LENGTH: Final = 128
MAX_SLUG_LENGTH: Final = 63
# Kind names are short (``api-server``); the packages table stores the kind in 64 characters.
MAX_KIND_LENGTH: Final = 64
MAX_ENTITY_NAME_LENGTH: Final = 63

ENTITY_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*")
"""Local entity names: they appear in CEL (``entities.<name>``) and in hrefs (``#name``), so identifiers only."""

RESERVED_ENTITY_NAMES: Final = frozenset({"inputs"})
"""``entities.inputs`` is the evaluated input bindings, so no entity may be called that."""

CEL_RESERVED_WORDS: Final = frozenset(
    {"as", "break", "const", "continue", "else", "false", "for", "function", "if", "import", "in", "let", "loop"}
    | {"namespace", "null", "package", "return", "true", "var", "void", "while"}
)
"""CEL cannot select these as fields (``entities.if`` does not parse), so they are no entity names either."""

MANIFEST_KEYS: Final = frozenset(
    {"kind", "name", "description", "icon_url", "tags", "properties", "links", "inputs", "entities", "outputs"}
)
_BINDING_KEYS: Final = frozenset({"schema", "bindings"})
_ENTITY_KEYS: Final = frozenset({"type", "bindings", "links"})
_LINK_KEYS: Final = frozenset({"href", "rel", "type", "titles", "properties"})

# The CEL variables each kind of binding may use (keycard-catalog-api.md §2.9, §4.1).
_INPUT_VARIABLES: Final = ("pkg",)
_ENTITY_VARIABLES: Final = ("entities",)
_OUTPUT_VARIABLES: Final = ("entities",)


class ManifestSyntaxError(BadRequest):
    """The manifest is not a well-formed YAML or JSON mapping."""


# --------------------------------------------------------------------------------------------------------------
# Parsing

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _ManifestLoader(_BaseLoader):
    """Safe YAML whose plain scalars are JSON types only.

    YAML 1.1 turns ``2024-01-01`` into a ``date``, which has no JSON form; a manifest is JSON data, so the
    timestamp resolver is dropped and such scalars stay strings.
    """


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def load_manifest_text(text: str | bytes, *, max_bytes: int = MAX_MANIFEST_TEXT_BYTES) -> dict[str, Any]:
    """Parse a manifest written as YAML or JSON into a plain JSON value, which must be a mapping.

    Refuses (``ManifestSyntaxError``, with line and column where known): text over ``max_bytes``, invalid UTF-8,
    syntax errors, YAML aliases (``*name`` — they let a small text expand into a huge value, the "billion laughs"
    attack), duplicate keys, nesting too deep, values JSON cannot represent, and a document that is not a mapping.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    if size > max_bytes:
        raise ManifestSyntaxError(f"manifest text is {size} bytes; the limit is {max_bytes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ManifestSyntaxError(f"manifest is not valid UTF-8: {exc}") from None
    try:
        value = _load_json(text) if text.lstrip().startswith(("{", "[")) else _load_yaml(text)
    except RecursionError:
        raise ManifestSyntaxError("manifest is nested too deeply") from None
    problem = _json_problem(value)
    if problem:
        raise ManifestSyntaxError(f"{problem.field}: {problem.message}")
    if not isinstance(value, dict):
        raise ManifestSyntaxError(f"manifest must be a mapping, not {_json_type(value)}")
    return value


def _load_json(text: str) -> object:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in items:
            if key in result:
                raise ManifestSyntaxError(f"duplicate key {key!r}")
            result[key] = value
        return result

    def constant(name: str) -> object:
        raise ManifestSyntaxError(f"{name} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise ManifestSyntaxError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _load_yaml(text: str) -> object:
    loader = _ManifestLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestSyntaxError("manifest is empty")
        _check_yaml_nodes(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestSyntaxError(f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ManifestSyntaxError(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _check_yaml_nodes(root: yaml.Node) -> None:
    """Refuse aliases and duplicate keys before anything is constructed.

    The composer resolves an alias to the very node its anchor named, so an alias shows up as a node reached
    twice. The walk is iterative and stops at the first repeat, so it is linear in the text however hostile.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise ManifestSyntaxError(
                f"YAML aliases are not allowed (line {node.start_mark.line + 1}); repeat the value instead"
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[object] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in keys:
                        raise ManifestSyntaxError(
                            f"duplicate key {key_node.value!r} at line {key_node.start_mark.line + 1}"
                        )
                    keys.add(key_node.value)
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _json_problem(value: object, *, max_depth: int = MAX_DEPTH) -> Problem | None:
    """Why ``value`` is not plain JSON data of at most ``max_depth`` levels (non-string key, NaN, binary, …).

    Iterative, so hostile nesting cannot exhaust the stack here; the depth limit keeps the recursive code that
    later walks a manifest (JSON encoding, schema checking) far from Python's recursion limit.
    """
    stack: list[tuple[object, str, int]] = [(value, "manifest", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list) and depth >= max_depth:
            return Problem(path, f"is nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return Problem(path, f"keys must be strings, not {_json_type(key)} ({key!r})")
                stack.append((child, join_path(path, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, join_path(path, index), depth + 1) for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return Problem(path, f"{item} is not a JSON number")
        elif item is not None and not isinstance(item, str | int | float | bool):
            return Problem(path, f"{type(item).__name__} values are not allowed")
    return None


# --------------------------------------------------------------------------------------------------------------
# Canonical form


def canonical_json(raw: object) -> bytes:
    """The canonical JSON of a manifest: sorted keys, no insignificant whitespace, UTF-8 (not ``\\u`` escapes)."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def manifest_sha(raw: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``raw``: equal for equal manifests whatever their key order."""
    return hashlib.sha256(canonical_json(raw)).hexdigest()


def slugify(name: str) -> str:
    """A URL-friendly slug of a package name (``Google Calendar API`` → ``google-calendar-api``).

    Accents are folded to ASCII, every other run of non-alphanumerics becomes one ``-``, the result is at most
    63 characters (Keycard's slug limit) without a leading or trailing ``-``, and never empty (``package``).
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    slug = slug[:MAX_SLUG_LENGTH].rstrip("-")
    return slug or "package"


# --------------------------------------------------------------------------------------------------------------
# Checks


def draft_problems(
    raw: object,
    *,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    max_entities: int = MAX_ENTITIES,
) -> list[Problem]:
    """What even a draft must satisfy: a mapping with a string ``name`` of 1..128 characters and a string
    ``kind``, within the size limits (canonical JSON ≤ ``max_manifest_bytes``, ≤ ``max_entities`` entities)."""
    problems, _ = _draft_problems(raw, max_manifest_bytes=max_manifest_bytes, max_entities=max_entities)
    return problems


def _draft_problems(raw: object, *, max_manifest_bytes: int, max_entities: int) -> tuple[list[Problem], bool]:
    """The draft problems, and whether the manifest is too large (or too odd) to be checked any further."""
    if not isinstance(raw, dict):
        return [Problem("manifest", f"must be an object, not {_json_type(raw)}")], True
    problems: list[Problem] = []
    name = raw.get("name")
    if not isinstance(name, str):
        problems.append(Problem("manifest.name", "is required and must be a string"))
    elif not 1 <= len(name) <= MAX_NAME_LENGTH:
        problems.append(Problem("manifest.name", f"must be 1 to {MAX_NAME_LENGTH} characters long"))
    kind = raw.get("kind")
    if not isinstance(kind, str):
        problems.append(Problem("manifest.kind", "is required and must be a string"))
    elif not 1 <= len(kind) <= MAX_KIND_LENGTH:
        problems.append(Problem("manifest.kind", f"must be 1 to {MAX_KIND_LENGTH} characters long"))
    # Checked before anything encodes or walks the value recursively: API bodies arrive here without passing
    # through load_manifest_text.
    problem = _json_problem(raw)
    if problem:
        problems.append(problem)
        return problems, True
    size = len(canonical_json(raw))
    oversized = False
    if size > max_manifest_bytes:
        problems.append(Problem("manifest", f"is {size} bytes as canonical JSON; the limit is {max_manifest_bytes}"))
        oversized = True
    entities = raw.get("entities")
    if isinstance(entities, dict) and len(entities) > max_entities:
        problems.append(Problem("manifest.entities", f"has {len(entities)} entities; the limit is {max_entities}"))
        oversized = True
    return problems, oversized


def release_problems(
    raw: object,
    *,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    max_entities: int = MAX_ENTITIES,
    max_cel_bytes: int = MAX_CEL_BYTES,
) -> list[Problem]:
    """Every release check of design §4.2, all problems at once, in document order.

    A manifest over a size limit is not checked further: the limits exist to bound the work of checking (and of
    provisioning), so a document beyond them gets only the draft problems.
    """
    problems, oversized = _draft_problems(raw, max_manifest_bytes=max_manifest_bytes, max_entities=max_entities)
    if oversized or not isinstance(raw, dict):
        return problems
    # draft_problems judged `name` and a missing or non-string `kind`; the checker adds everything else.
    problems.extend(_ReleaseChecker(raw, max_cel_bytes=max_cel_bytes).run())
    return problems


class _ReleaseChecker:
    """One pass over a manifest collecting release problems; state shared between the sections lives here."""

    def __init__(self, raw: dict[str, Any], *, max_cel_bytes: int) -> None:
        self.raw = raw
        self.max_cel_bytes = max_cel_bytes
        self.problems: list[Problem] = []
        entities = raw.get("entities")
        # Names are known before any section is checked, so references anywhere can be resolved.
        self.entity_names: frozenset[str] = frozenset(entities) if isinstance(entities, dict) else frozenset()

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def run(self) -> list[Problem]:
        raw = self.raw
        for key in raw:
            if key not in MANIFEST_KEYS:
                self.add(join_path("manifest", key), f"unknown key; expected one of {sorted(MANIFEST_KEYS)}")
        kind = raw.get("kind")
        if isinstance(kind, str) and kind not in KINDS:
            self.add("manifest.kind", f"unknown kind {kind!r}; known kinds: {sorted(KINDS)}")
        for key in ("description", "icon_url"):
            if key in raw and not isinstance(raw[key], str):
                self.add(join_path("manifest", key), "must be a string")
        if "tags" in raw:
            self.check_tags(raw["tags"])
        if "properties" in raw and not isinstance(raw["properties"], dict):
            self.add("manifest.properties", "must be an object")
        if "links" in raw:
            self.check_links(raw["links"], "manifest.links")
        if "inputs" in raw:
            self.check_inputs(raw["inputs"])
        self.check_entities(raw.get("entities"))
        if "outputs" in raw:
            self.check_outputs(raw["outputs"])
        return self.problems

    # -- package-level sections ------------------------------------------------------------------------------

    def check_tags(self, tags: object) -> None:
        if not isinstance(tags, list):
            self.add("manifest.tags", "must be a list of strings")
            return
        for index, tag in enumerate(tags):
            if not isinstance(tag, str) or not tag:
                self.add(join_path("manifest.tags", index), "must be a non-empty string")

    def check_links(self, links: object, at: str) -> None:
        if not isinstance(links, list):
            self.add(at, "must be a list of links")
            return
        for index, link in enumerate(links):
            self.check_link(link, join_path(at, index))

    def check_link(self, link: object, at: str) -> None:
        if not isinstance(link, dict):
            self.add(at, "must be an object with `href` and `rel`")
            return
        for key in link:
            if key not in _LINK_KEYS:
                self.add(join_path(at, key), f"unknown key; expected one of {sorted(_LINK_KEYS)}")
        for key in ("href", "rel"):
            value = link.get(key)
            if not isinstance(value, str) or not value:
                self.add(join_path(at, key), "is required and must be a non-empty string")
        href = link.get("href")
        if isinstance(href, str) and href.startswith("#") and href[1:] not in self.entity_names:
            self.add(join_path(at, "href"), f"{href!r} names no entity of this package")
        if "type" in link and not isinstance(link["type"], str):
            self.add(join_path(at, "type"), "must be a string (a media type)")
        titles = link.get("titles")
        if "titles" in link and not (
            isinstance(titles, dict) and all(isinstance(title, str) for title in titles.values())
        ):
            self.add(join_path(at, "titles"), "must map language tags to strings")
        if "properties" in link and not isinstance(link["properties"], dict):
            self.add(join_path(at, "properties"), "must be an object")

    def check_section_keys(self, section: dict[str, Any], at: str, allowed: frozenset[str]) -> None:
        for key in section:
            if key not in allowed:
                self.add(join_path(at, key), f"unknown key; expected one of {sorted(allowed)}")

    def check_object_schema(self, schema: object, at: str) -> bool:
        """Check a top-level input or output schema; True when it is usable for further checks."""
        if not isinstance(schema, dict):
            self.add(at, "must be a schema object")
            return False
        problems = check_schema(schema, at)
        self.problems.extend(problems)
        # Inputs and outputs are flat maps of named values, so their schema must describe an object.
        if schema.get("type", "object") != "object":
            self.add(join_path(at, "type"), 'must be "object"')
            return False
        return not problems

    def check_inputs(self, inputs: object) -> None:
        at = "manifest.inputs"
        if not isinstance(inputs, dict):
            self.add(at, "must be an object with `schema` and `bindings`")
            return
        self.check_section_keys(inputs, at, _BINDING_KEYS)
        if "schema" in inputs:
            self.check_object_schema(inputs["schema"], join_path(at, "schema"))
        if "bindings" in inputs:
            analysis = self.check_binding(inputs["bindings"], join_path(at, "bindings"), _INPUT_VARIABLES)
            if analysis is not None and analysis.not_a_map:
                self.add(
                    join_path(at, "bindings"), f"must evaluate to a map (entities.inputs), but {analysis.not_a_map}"
                )

    def check_outputs(self, outputs: object) -> None:
        at = "manifest.outputs"
        if not isinstance(outputs, dict):
            self.add(at, "must be an object with `schema` and `bindings`")
            return
        self.check_section_keys(outputs, at, _BINDING_KEYS)
        schema = outputs.get("schema")
        schema_ok = False
        if "schema" not in outputs:
            self.add(join_path(at, "schema"), "is required")
        else:
            schema_ok = self.check_object_schema(schema, join_path(at, "schema"))
        if "bindings" not in outputs:
            self.add(join_path(at, "bindings"), "is required")
            return
        analysis = self.check_binding(outputs["bindings"], join_path(at, "bindings"), _OUTPUT_VARIABLES)
        if analysis is None:
            return
        field_at = join_path(at, "bindings")
        if analysis.keys is None:
            self.add(field_at, "must be a map literal whose keys are the output schema's properties")
            return
        if not schema_ok or not isinstance(schema, dict):
            return
        declared = schema.get("properties", {})
        names = set(declared) if isinstance(declared, dict) else set()
        extra = [key for key in analysis.keys if key not in names]
        missing = sorted(names - set(analysis.keys))
        if extra:
            self.add(field_at, f"keys {extra} are not properties of the output schema")
        if missing:
            self.add(field_at, f"output schema properties {missing} have no binding")

    # -- entities -------------------------------------------------------------------------------------------

    def check_entities(self, entities: object) -> None:
        at = "manifest.entities"
        if entities is None:
            self.add(at, "is required: a package provisions at least one entity")
            return
        if not isinstance(entities, dict):
            self.add(at, "must map local names to entities")
            return
        if not entities:
            # An empty graph makes installs that provision nothing; that is an authoring mistake, not a package.
            self.add(at, "must declare at least one entity")
            return
        dependencies: dict[str, set[str]] = {}
        for name, entity in entities.items():
            entity_at = join_path(at, name)
            if name in RESERVED_ENTITY_NAMES:
                self.add(entity_at, f"{name!r} is reserved (entities.inputs holds the input bindings)")
            elif name in CEL_RESERVED_WORDS:
                self.add(entity_at, f"{name!r} is a reserved word of CEL, so entities.{name} could not refer to it")
            elif len(name) > MAX_ENTITY_NAME_LENGTH or not ENTITY_NAME_PATTERN.fullmatch(name):
                self.add(
                    entity_at,
                    f"local names must match ^[a-z][a-z0-9_]*$ and be at most {MAX_ENTITY_NAME_LENGTH} characters",
                )
            dependencies[name] = self.check_entity(entity, entity_at)
        try:
            topological_order(dependencies)
        except CycleError as exc:
            self.add(at, str(exc))

    def check_entity(self, entity: object, at: str) -> set[str]:
        """Check one entity; return the names of the entities it depends on (only ones that exist)."""
        if not isinstance(entity, dict):
            self.add(at, "must be an object with `type` and `bindings`")
            return set()
        self.check_section_keys(entity, at, _ENTITY_KEYS)
        entity_type = entity.get("type")
        known_type = ENTITY_TYPES.get(entity_type) if isinstance(entity_type, str) else None
        if not isinstance(entity_type, str):
            self.add(join_path(at, "type"), "is required and must be a string")
        elif known_type is None:
            self.add(join_path(at, "type"), f"unknown entity type {entity_type!r}; known: {sorted(ENTITY_TYPES)}")
        depends_on: set[str] = set()
        if "links" in entity:
            self.check_links(entity["links"], join_path(at, "links"))
            depends_on |= _fragment_hrefs(entity["links"]) & self.entity_names
        if "bindings" not in entity:
            self.add(join_path(at, "bindings"), "is required")
            return depends_on
        bindings_at = join_path(at, "bindings")
        analysis = self.check_binding(entity["bindings"], bindings_at, _ENTITY_VARIABLES)
        if analysis is None:
            return depends_on
        depends_on |= analysis.references & self.entity_names
        if analysis.keys is None:
            if analysis.not_a_map:
                self.add(bindings_at, f"must evaluate to a map of the entity's attributes, but {analysis.not_a_map}")
            return depends_on
        if known_type is not None:
            attributes = known_type.schema.get("properties", {})
            unknown = [key for key in analysis.keys if key not in attributes]
            missing = [key for key in known_type.required if key not in analysis.keys]
            if unknown:
                self.add(bindings_at, f"{unknown} are not attributes of the entity type {known_type.name!r}")
            if missing:
                self.add(
                    bindings_at, f"required attributes {missing} of the entity type {known_type.name!r} have no binding"
                )
        return depends_on

    # -- CEL --------------------------------------------------------------------------------------------------

    def check_binding(self, source: object, at: str, variables: tuple[str, ...]) -> _Analysis | None:
        """Check one CEL expression (type, size, syntax, entity references); None when it is unusable."""
        if not isinstance(source, str):
            self.add(at, "must be a CEL expression (a string)")
            return None
        size = len(source.encode("utf-8"))
        if size > self.max_cel_bytes:
            self.add(at, f"CEL expression is {size} bytes; the limit is {self.max_cel_bytes}")
            return None
        analysis = _analyze(source, variables)
        if analysis.error is not None:
            self.add(at, analysis.error)
            return None
        if "entities" in variables:
            unknown = sorted(analysis.references - self.entity_names)
            for name in unknown:
                self.add(at, f"entities.{name} names no entity of this package")
        return analysis


@dataclass(frozen=True)
class _Analysis:
    """What release checks need to know about one CEL expression that compiles.

    ``keys`` are those of a top-level map literal (None if it is not one); ``not_a_map`` says why the expression
    can never evaluate to a map, when that is statically decidable (it uses no variable at all).
    """

    error: str | None
    keys: tuple[str, ...] | None = None
    references: frozenset[str] = frozenset()
    not_a_map: str | None = None


@lru_cache(maxsize=16_384)
def _analyze(source: str, variables: tuple[str, ...]) -> _Analysis:
    """Compile and analyse one expression; cached because catalogs and generated packages repeat expressions."""
    try:
        compile_binding(source, variables=variables)
    except BindingSyntaxError as exc:
        return _Analysis(error=f"invalid CEL: {exc}")
    keys = map_literal_keys(source)
    return _Analysis(
        error=None,
        keys=tuple(keys) if keys is not None else None,
        references=frozenset(referenced_entities(source)) if "entities" in variables else frozenset(),
        not_a_map=_constant_not_a_map(source) if keys is None else None,
    )


def _constant_not_a_map(source: str) -> str | None:
    """Why a variable-free expression is not a map (its value's type, or its error); None if undecidable.

    With every variable ``dyn``, only an expression that uses no variable has a type known before provisioning;
    it is evaluated here (under the evaluation bounds of ``Binding.evaluate``) rather than guessed from its text.
    """
    try:
        value = compile_binding(source, variables=()).evaluate({})
    except BindingSyntaxError:
        return None  # it uses a variable: only evaluation at provisioning time can tell
    except BindingEvaluationError as exc:
        return f"always fails: {exc}"
    if isinstance(value, dict):
        return None
    return f"is always {_json_type(value)}, not a map"


def _fragment_hrefs(links: object) -> set[str]:
    """The local names of ``#name`` hrefs in a list of links (malformed links are skipped: checks report them)."""
    names: set[str] = set()
    if isinstance(links, list):
        for link in links:
            href = link.get("href") if isinstance(link, dict) else None
            if isinstance(href, str) and href.startswith("#"):
                names.add(href[1:])
    return names


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------------------
# The checked manifest


@dataclass(frozen=True)
class EntitySpec:
    """One entity of a package: local ``name``, entity ``type``, CEL ``bindings`` and ``links``."""

    name: str
    type: str
    bindings: str
    links: tuple[dict[str, Any], ...] = ()

    def dependencies(self) -> frozenset[str]:
        """Local names this entity depends on: ``#name`` hrefs of its links and ``entities.<name>`` references."""
        return frozenset(_fragment_hrefs(list(self.links))) | _references(self.bindings)


@lru_cache(maxsize=16_384)
def _references(source: str) -> frozenset[str]:
    return frozenset(referenced_entities(source))


@dataclass(frozen=True)
class Manifest:
    """A manifest that passed the release checks, as typed fields (``from_raw`` builds one from the JSON value)."""

    kind: str
    name: str
    description: str | None
    icon_url: str | None
    tags: tuple[str, ...]
    properties: dict[str, Any] = field(hash=False)
    links: tuple[dict[str, Any], ...] = field(hash=False)
    inputs_schema: dict[str, Any] | None = field(hash=False)
    inputs_bindings: str | None
    entities: dict[str, EntitySpec] = field(hash=False)
    outputs_schema: dict[str, Any] | None = field(hash=False)
    outputs_bindings: str | None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Manifest:
        """Build from a raw manifest. Call only after ``release_problems(raw)`` returned nothing: the shape is
        trusted here, not checked again."""
        inputs: Mapping[str, Any] = raw.get("inputs") or {}
        outputs: Mapping[str, Any] = raw.get("outputs") or {}
        return cls(
            kind=raw["kind"],
            name=raw["name"],
            description=raw.get("description"),
            icon_url=raw.get("icon_url"),
            tags=tuple(raw.get("tags") or ()),
            properties=dict(raw.get("properties") or {}),
            links=tuple(raw.get("links") or ()),
            inputs_schema=inputs.get("schema"),
            inputs_bindings=inputs.get("bindings"),
            entities={
                name: EntitySpec(
                    name=name,
                    type=spec["type"],
                    bindings=spec["bindings"],
                    links=tuple(spec.get("links") or ()),
                )
                for name, spec in raw["entities"].items()
            },
            outputs_schema=outputs.get("schema"),
            outputs_bindings=outputs.get("bindings"),
        )

    def dependencies(self) -> dict[str, set[str]]:
        """For each entity, the local names of the entities it depends on (edges of the entity graph)."""
        return {name: set(spec.dependencies() & self.entities.keys()) for name, spec in self.entities.items()}

    def order(self) -> list[str]:
        """Local entity names in provisioning order (dependencies first, ties by name); deletion reverses it."""
        return topological_order(self.dependencies())


# --------------------------------------------------------------------------------------------------------------
# Input state


def effective_input_schema(kind_name: object, package_schema: object) -> dict[str, Any]:
    """The kind's base input schema merged with the package's input schema: what install inputs are validated
    against (an unknown kind contributes only ``type: object``)."""
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    base: dict[str, Any] = kind.schema if kind is not None else {"type": "object"}
    return merge_schemas(base, package_schema if isinstance(package_schema, dict) else {})


def input_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The computed ``InputState`` of a package (design §4.3).

    ``effective_schema`` is the kind's schema merged with the package's input schema (an unknown kind adds
    nothing, so drafts still get an answer). ``effective_bindings`` shows the input bindings' static values as
    literals and ``pkg.inputs.X`` as ``{"$input": "X"}``; without input bindings the install inputs *are*
    ``entities.inputs``, so each effective property maps to itself; it is None when the bindings are not a map
    literal that can be analysed.
    """
    inputs = raw.get("inputs")
    inputs = inputs if isinstance(inputs, dict) else {}
    schema = effective_input_schema(raw.get("kind"), inputs.get("schema"))
    source = inputs.get("bindings")
    bindings: dict[str, object] | None
    if isinstance(source, str):
        bindings = effective_bindings(source)
    else:
        properties = schema.get("properties")
        bindings = {name: {"$input": name} for name in properties} if isinstance(properties, dict) else {}
    return {"effective_schema": schema, "effective_bindings": bindings}
