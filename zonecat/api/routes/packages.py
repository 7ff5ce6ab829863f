"""Packages: the Keycard-compatible reads plus zonecat's authoring endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zonecat import errors
from zonecat.api import docs, models, views
from zonecat.api.auth import Auth, Ctx
from zonecat.api.bodies import json_body, require_object
from zonecat.api.routes.common import page_request
from zonecat.engine import packages as package_service
from zonecat.engine.access import visible_zone
from zonecat.store import packages as package_store

router = APIRouter(tags=["packages"])


@router.get("/zones/{zone_id}/packages", responses=docs.responses(200, models.PackageList), openapi_extra=docs.paging())
def list_packages(
    zone_id: str,
    request: Request,
    principal: Auth,
    ctx: Ctx,
    slug: str | None = Query(None, alias="filters[slug]"),
    kind: str | None = None,
) -> JSONResponse:
    """Packages visible in the zone (its own and the global catalog's), newest first."""
    page_req = page_request(request)
    kinds = [k.strip() for k in kind.split(",") if k.strip()] if kind else None
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        page = package_store.list_packages(conn, principal.organization_id, zone_id, page_req, slug, kinds)
        return JSONResponse(views.page_body(page, [views.package_view(conn, row) for row in page.items]))


@router.post(
    "/zones/{zone_id}/packages",
    status_code=201,
    responses=docs.responses(201, models.Package, 403, 409),
    openapi_extra=docs.body(models.ManifestBody),
)
async def create_package(zone_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Create a zone package whose draft is the given manifest."""
    principal.require_write(zone_id)
    body = require_object(await json_body(request, ctx.settings.max_body_bytes))
    if "manifest" not in body:
        raise errors.ValidationFailed("manifest is required", [errors.Detail("manifest", "is required")])

    def work() -> JSONResponse:
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
        row = package_service.create_package(ctx.db, principal, zone_id, body["manifest"])
        with ctx.db.read() as conn:
            # Rendered here too: a large manifest's JSON would hold the event loop otherwise.
            return JSONResponse(views.package_view(conn, row), status_code=201)

    return await run_in_threadpool(work)


@router.get("/zones/{zone_id}/packages/{package_id}", responses=docs.responses(200, models.Package))
def get_package(zone_id: str, package_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """One package by id or slug."""
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        row = package_service.find_visible(conn, principal, zone_id, package_id)
        return JSONResponse(views.package_view(conn, row))


@router.delete(
    "/zones/{zone_id}/packages/{package_id}",
    status_code=204,
    responses=docs.responses(204, None, 403, 409, description="Deleted"),
)
def delete_package(zone_id: str, package_id: str, principal: Auth, ctx: Ctx) -> Response:
    """Delete a zone package (409 while any of its installs is not deleted; 403 for global packages)."""
    principal.require_write(zone_id)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
    package_service.delete_package(ctx.db, principal, zone_id, package_id)
    return Response(status_code=204)


@router.get("/zones/{zone_id}/packages/{package_id}/draft", responses=docs.responses(200, models.PackageDraft))
def get_draft(zone_id: str, package_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """The package's editable draft."""
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        row = package_service.find_visible(conn, principal, zone_id, package_id)
    return JSONResponse(views.draft_view(row), headers={"ETag": f'"{row["draft_sha"]}"'})


@router.put(
    "/zones/{zone_id}/packages/{package_id}/draft",
    responses=docs.responses(200, models.PackageDraft, 403, 409),
    openapi_extra={
        **docs.body(models.ManifestBody),
        **docs.parameters(
            docs.header("If-Match", {"type": "string"}, "Replace only if the draft's manifest_sha is still this")
        ),
    },
)
async def put_draft(zone_id: str, package_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Replace the draft; ``If-Match: <manifest_sha>`` makes it conditional."""
    principal.require_write(zone_id)
    body = require_object(await json_body(request, ctx.settings.max_body_bytes))
    if "manifest" not in body:
        raise errors.ValidationFailed("manifest is required", [errors.Detail("manifest", "is required")])
    if_match = request.headers.get("if-match")

    def work() -> JSONResponse:
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
        row = package_service.replace_draft(ctx.db, principal, zone_id, package_id, body["manifest"], if_match)
        view = views.draft_view(row)
        return JSONResponse(view, headers={"ETag": f'"{view["manifest_sha"]}"'})

    return await run_in_threadpool(work)


@router.get(
    "/zones/{zone_id}/packages/{package_id}/versions",
    responses=docs.responses(200, models.PackageVersionList),
    openapi_extra=docs.paging(),
)
def list_versions(zone_id: str, package_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """The package's released versions, newest first."""
    page_req = page_request(request)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        package = package_service.find_visible(conn, principal, zone_id, package_id)
        page = package_store.list_versions(conn, package["id"], page_req)
    return JSONResponse(views.page_body(page, [views.version_view(row) for row in page.items]))


@router.post(
    "/zones/{zone_id}/packages/{package_id}/versions",
    status_code=201,
    responses=docs.responses(201, models.PackageVersion, 403, 409),
    openapi_extra=docs.body(models.ReleaseBody, required=False),
)
async def release_version(zone_id: str, package_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Release the draft as the next version, after every release check (all problems reported at once)."""
    principal.require_write(zone_id)
    body = await json_body(request, ctx.settings.max_body_bytes, required=False)
    body = require_object(body) if body is not None else {}
    expected = body.get("manifest_sha")
    if expected is not None and not isinstance(expected, str):
        raise errors.ValidationFailed(
            "manifest_sha must be a string", [errors.Detail("manifest_sha", "must be a string")]
        )

    def work() -> JSONResponse:
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
        version = package_service.release(ctx.db, principal, zone_id, package_id, expected)
        return JSONResponse(views.version_view(version), status_code=201)

    return await run_in_threadpool(work)


@router.get(
    "/zones/{zone_id}/packages/{package_id}/versions/{version_id}",
    responses=docs.responses(200, models.PackageVersion),
)
def get_version(zone_id: str, package_id: str, version_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """One version by id or by number."""
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        package = package_service.find_visible(conn, principal, zone_id, package_id)
        row = package_service.find_version(conn, package["id"], version_id)
    if row is None:
        raise errors.NotFound(f"version {version_id} of package {package['slug']} not found")
    return JSONResponse(views.version_view(row))


@router.post(
    "/zones/{zone_id}/packages/{package_id}/versions/{version_id}/archive",
    responses=docs.responses(200, models.PackageVersion, 403),
)
def archive_version(zone_id: str, package_id: str, version_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Archive a version: it stays readable and installed, but cannot be installed again."""
    principal.require_write(zone_id)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
    return JSONResponse(views.version_view(package_service.archive(ctx.db, principal, zone_id, package_id, version_id)))
