"""The interactive API reference, Swagger UI at /schema (and /schema/swagger), served with the
copy of swagger-ui-dist the swagger-ui-py package holds rather than from a CDN: the page works
where the service cannot reach the internet, and no script of a third party runs on the API's
origin, where users paste their keys."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS = "/schema/assets"  # under /schema, which needs no key (services/api/auth.py)
_FILES = Path(swagger_ui.__file__).parent / "static"


def swagger_page() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        path="/swagger",
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )


def assets() -> Router:
    return create_static_files_router(path=ASSETS, directories=[_FILES], include_in_schema=False)
