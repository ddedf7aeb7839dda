"""The interactive API reference, Swagger UI at /schema (and /schema/swagger), served with the
copy of swagger-ui-dist the swagger-ui-py package holds rather than from a CDN: the page works
where the service cannot reach the internet, and no script of a third party runs on the API's
origin, where users paste their keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import swagger_ui
from litestar import Router
from litestar.file_system import BaseLocalFileSystem
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

if TYPE_CHECKING:
    from litestar.types import PathType
    from litestar.types.file_types import FileInfo

ASSETS = "/schema/assets"  # under /schema, which needs no key (services/api/auth.py)
_FILES = Path(swagger_ui.__file__).parent / "static"
# The files the page loads, and no others: the package also holds the Swagger editor and
# source maps, megabytes anyone could download again and again without a key.
_USED = {
    name: _FILES / name
    for name in (
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    )
}


def swagger_page() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        path="/swagger",
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )


class _OnlyUsed(BaseLocalFileSystem):
    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        if Path(path) not in _USED.values():
            raise FileNotFoundError(path)  # a 404, as for a file not there
        return await super().info(path, **kwargs)


def assets() -> Router:
    for path in _USED.values():
        if not path.is_file():  # a swagger-ui-py release that moved it: found at start
            raise FileNotFoundError(path)
    return create_static_files_router(
        path=ASSETS,
        directories=[_FILES],
        file_system=_OnlyUsed(),
        include_in_schema=False,
    )
