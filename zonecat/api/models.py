"""Pydantic models that document the API in OpenAPI. Routes build plain dicts for speed; these models are the
published description of those dicts (and of the error object on every 4xx/5xx)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorCode = Literal[
    "validation_error",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limit_exceeded",
    "internal_error",
    "service_unavailable",
]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class WarningDetail(BaseModel):
    code: ErrorCode
    field: str
    message: str


class Error(BaseModel):
    """The error object of every 4xx/5xx response (Keycard's ``Warning``)."""

    code: ErrorCode
    message: str
    status: int
    path: str
    request_id: str
    timestamp: str
    details: list[WarningDetail]


class Link(Open):
    href: str
    rel: str
    properties: dict[str, Any] | None = None
    titles: dict[str, str] | None = None
    type: str | None = None


class Pagination(BaseModel):
    after_cursor: str | None
    before_cursor: str | None
    total_count: int | None = None


class Task(Open):
    id: str
    created_at: str
    updated_at: str
    operation: Literal["create", "delete"]
    status: Literal["pending", "running", "completed", "failed"]
    error_message: str | None = None
    install_id: str | None = None
    links: list[Link] | None = None
    package_id: str | None = None
    package_slug: str | None = None
    package_version: int | None = None
    warnings: list[Error] | None = None


class TaskList(BaseModel):
    items: list[Task]
    pagination: Pagination


class TaskEvent(BaseModel):
    seq: int
    task_id: str
    created_at: str
    kind: str
    status: str | None
    local_name: str | None
    entity_type: str | None
    action: str | None
    entity_id: str | None
    href: str | None
    message: str | None


class TaskEventList(BaseModel):
    items: list[TaskEvent]
    pagination: Pagination


class Install(Open):
    id: str
    created_at: str
    updated_at: str
    package_id: str
    package_slug: str
    status: Literal["pending", "active", "deleting", "failed", "deleted"]
    inputs: dict[str, Any] | None = None
    links: list[Link] | None = None
    org_id: str | None = None
    outputs: dict[str, Any] | None = None
    package_version: int | None = None
    zone_id: str | None = None


class InstallList(BaseModel):
    items: list[Install]
    pagination: Pagination


class InstallCreate(BaseModel):
    package_id: str = Field(min_length=1, max_length=70)
    inputs: dict[str, Any] | None = None
    version: int | None = None


class InstallGraphNode(BaseModel):
    local_name: str
    type: str
    identifier: str | None
    entity_id: str | None
    href: str | None
    action: str | None


class InstallGraphEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    rel: str


class InstallGraph(BaseModel):
    install_id: str
    status: str
    nodes: list[InstallGraphNode]
    edges: list[InstallGraphEdge]


class Binding(Open):
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    bindings: str | None = None


class PackageVersion(Open):
    id: str
    created_at: str
    manifest_sha: str
    name: str
    owner_type: Literal["platform", "customer"]
    version: int
    archived_at: str | None = None


class PackageVersionList(BaseModel):
    items: list[PackageVersion]
    pagination: Pagination


class PackageDraft(Open):
    id: str
    manifest_sha: str
    name: str
    updated_at: str


class Package(Open):
    id: str
    created_at: str
    updated_at: str
    kind: str
    name: str
    slug: str
    current_version: PackageVersion | None = None
    draft: PackageDraft | None = None
    input_state: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


class PackageList(BaseModel):
    items: list[Package]
    pagination: Pagination


class ManifestBody(BaseModel):
    manifest: dict[str, Any]


class ReleaseBody(BaseModel):
    manifest_sha: str | None = None


class Zone(BaseModel):
    id: str
    name: str
    description: str | None
    organization_id: str
    created_at: str
    updated_at: str


class ZoneList(BaseModel):
    items: list[Zone]
    pagination: Pagination


class ZoneCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None


class ZoneUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    zones: list[str] | None = None
    read_only: bool = False


class Token(BaseModel):
    id: str
    name: str
    zones: list[str] | None
    read_only: bool
    admin: bool
    created_at: str
    token: str | None = None


class TokenList(BaseModel):
    items: list[Token]
    pagination: Pagination


class Entity(Open):
    id: str
    type: str
    identifier: str
    zone_id: str
    href: str
    managed: bool
    created_by_install_id: str | None
    adopted_by: list[str]
    used_by: list[str]
    attributes: dict[str, Any]


class EntityList(BaseModel):
    items: list[Entity]
    pagination: Pagination


class TypedEntity(Open):
    id: str
    organization_id: str
    zone_id: str
    slug: str
    owner_type: str
    created_at: str
    updated_at: str


class PageInfo(BaseModel):
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


class TypedEntityList(BaseModel):
    items: list[TypedEntity]
    page_info: PageInfo
    pagination: Pagination


class Health(BaseModel):
    status: str
