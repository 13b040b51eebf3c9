"""The API docs at /docs: Swagger UI from static/vendor/, so they work offline and under the pages' strict
Content-Security-Policy (the viewer starts from a script file, static/js/docs.js, not an inline script, and
loads nothing from another server). /redoc leads there: ReDoc's bundle starts a search worker from a blob: and
loads its logo from its CDN, which that policy refuses."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

SWAGGER_UI = "/static/vendor/swagger-ui-5.33.1"

router = APIRouter(include_in_schema=False)


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
{head}
</head>
<body>
{body}
</body>
</html>
""")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return _page(
        f"{app.title} - Swagger UI",
        f'<link rel="icon" type="image/png" href="{SWAGGER_UI}/favicon-32x32.png">\n'
        f'<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">\n'
        f'<script src="{SWAGGER_UI}/swagger-ui-bundle.js" defer></script>\n'
        '<script src="/static/js/docs.js" defer></script>',
        f'<div id="swagger-ui" data-viewer="swagger-ui" data-openapi="{escape(app.openapi_url)}"></div>',
    )


@router.get("/redoc")
def redoc() -> RedirectResponse:
    return RedirectResponse("/docs", status_code=308)
