"""The API's description: ``/openapi.json`` with the problem model and every error documented, and
``/docs`` (Swagger UI) served from this process, since a bank's network blocks public CDNs.

Swagger UI's files come from the ``fastapi-offline`` wheel (its ``static/`` folder: swagger-ui-bundle.js,
swagger-ui.css, favicon); only the files, not its FastAPI subclass, are used, following FastAPI's
"self-hosting the docs assets" recipe. ReDoc is not served.

Each operation documents the errors it can give, as ``application/problem+json``
(:class:`callvet.api.problems.Problem`): 401 and 403 when it needs a key, 404 when it has path
parameters, 409 for changes, 400, 413 and 415 when it takes a body, 422 always, 503 (a part not built or
unreachable). Operations that need a key carry the ``bearer`` security scheme, so "Try it out" in
``/docs`` sends ``Authorization: Bearer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callvet.api.problems import PROBLEM_JSON, FieldError, Problem
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "assets_dir", "install"]

ASSETS_URL = "/docs-assets"

_DESCRIPTIONS = {
    "400": "the body could not be read at all, e.g. not UTF-8 (code bad_request)",
    "401": "no key, or an unknown or revoked one (code unauthenticated)",
    "403": "the key's role may not do this (code forbidden), or a rule forbids it (e.g. maker_checker)",
    "404": "no such resource (code not_found and more specific ones)",
    "409": "conflicts with the resource's state (code conflict and more specific ones)",
    "413": "body larger than the limit (code too_large)",
    "415": "body in a media type this operation does not take (code unsupported_media_type)",
    "422": "invalid input: every bad field by its path in errors, never its value",
    "503": "a part this operation needs is not built or not reachable (code unavailable and others)",
}


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def _problem_ref() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _augment(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in problem.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["Problem"] = problem
    schemas.setdefault("FieldError", FieldError.model_json_schema(by_alias=True))
    for path_item in schema.get("paths", {}).values():
        for method, op in path_item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            codes = ["422", "503"]
            if op.get("security"):
                codes += ["401", "403"]
            if any(p.get("in") == "path" for p in op.get("parameters", [])):
                codes.append("404")
            if method in ("post", "put", "patch", "delete"):
                codes.append("409")
            if "requestBody" in op:
                codes += ["400", "413", "415"]
            responses = op["responses"]
            for code in sorted(codes):
                responses.setdefault(code, {"description": _DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code[:1] in ("4", "5"):  # every error, also those a route declares itself
                    response["content"] = _problem_ref()
    for stale in ("HTTPValidationError", "ValidationError"):
        schemas.pop(stale, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``/docs`` with local assets and give ``app`` the documented-errors OpenAPI."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _augment(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
            ))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
