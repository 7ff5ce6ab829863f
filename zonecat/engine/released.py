"""Released package versions never change: their parsed manifests and input schemas are kept per process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa

from zonecat.domain.manifest import Manifest, effective_input_schema
from zonecat.store import packages as package_store

Row = dict[str, Any]


class ReleasedVersions:
    """Parsed manifests of released versions, by version id (a released version never changes), and their
    effective input schemas: parsed once per process rather than once per task, and the same schema objects
    every time, which is what the validator cache keys on first."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._schemas: dict[int, tuple[Manifest, Row]] = {}
        self._schemas_by_version: OrderedDict[str, Row] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_id: str) -> Manifest | None:
        with self._lock:
            manifest = self._manifests.get(version_id)
            if manifest is not None:
                self._manifests.move_to_end(version_id)
            return manifest

    def put(self, version_id: str, manifest: Manifest) -> None:
        with self._lock:
            self._manifests[version_id] = manifest
            while len(self._manifests) > self.size:
                _, dropped = self._manifests.popitem(last=False)
                self._schemas.pop(id(dropped), None)

    def input_schema(self, manifest: Manifest) -> Row:
        with self._lock:
            entry = self._schemas.get(id(manifest))
            if entry is not None and entry[0] is manifest:
                return entry[1]
        schema = effective_input_schema(manifest.kind, manifest.inputs_schema)
        with self._lock:
            if len(self._schemas) > 2 * self.size:
                self._schemas.clear()
            self._schemas[id(manifest)] = (manifest, schema)
        return schema

    def input_schema_of(self, conn: sa.Connection, version_id: str) -> Row | None:
        """The effective input schema of a released version, by id (None if it has gone). What an install
        request validates against: the manifest itself is not kept for it, only the schema (small)."""
        manifest = self.get(version_id)
        if manifest is not None:
            return self.input_schema(manifest)
        with self._lock:
            schema = self._schemas_by_version.get(version_id)
            if schema is not None:
                self._schemas_by_version.move_to_end(version_id)
                return schema
        raw = package_store.version_manifest(conn, version_id)
        if raw is None:
            return None
        schema = effective_input_schema(raw.get("kind"), (raw.get("inputs") or {}).get("schema"))
        with self._lock:
            self._schemas_by_version[version_id] = schema
            while len(self._schemas_by_version) > self.size:
                self._schemas_by_version.popitem(last=False)
        return schema


RELEASED = ReleasedVersions()
