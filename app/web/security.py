"""Every request: the Host must be one this server answers to, a state-changing request must come from the
server's own pages, and every response carries security headers. A plain ASGI middleware (`SecurityMiddleware`).

Why checks on headers rather than a CSRF token: the pages are HTMX forms served by this same origin, the app
runs offline with no accounts, and a token would need per-page state (a cookie and a hidden field in every form
and every `hx-post`). Browsers already say where a request comes from: every cross-origin POST carries `Origin`
(and modern browsers add `Sec-Fetch-Site`, which a page cannot forge). So a POST, PUT, PATCH or DELETE is refused
when its `Origin` is not this server's own host:port, or, without `Origin`, when `Sec-Fetch-Site` says another
site. A request with neither header is no web page's (curl, scripts, the command line) and passes: whoever
sends it can reach the server directly anyway.

The origin check trusts the Host header, which a page can set through DNS rebinding (evil.example resolving to
127.0.0.1): hence the allowed host names (`ADDNORM_ALLOWED_HOSTS`), checked first on every request.

Plain ASGI, not `BaseHTTPMiddleware`: it looks at headers only, so the server-sent event streams and large
responses pass through untouched and unbuffered, and a refusal is answered before the app reads any body.
It is the outermost of the app's middleware, so its refusals never reach the app and its headers are on every
response the app gives (pages, partials, static files, the API, error pages); only the bare "Internal Server
Error" of an unhandled exception, which Starlette sends from outside every middleware, goes without them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# What the pages load (the API docs too: Swagger UI and ReDoc are served from static/vendor/): only their own
# scripts (no inline script, no eval), styles that Plotly, htmx, KaTeX and the docs' viewers set inline,
# images Plotly draws (data:, blob:), KaTeX's fonts, and fetch/EventSource to this server.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
          "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
          "frame-ancestors 'none'")
HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"))
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class SecurityMiddleware:
    """Refuses a Host not in `allowed_hosts` (400) and a cross-site state-changing request (403); adds the
    Content-Security-Policy, X-Content-Type-Options and Referrer-Policy headers to every response."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | list[str]):
        self.app = app
        self.allowed_hosts = frozenset(_bare(name) for name in allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan (the app has no WebSockets)
            return await self.app(scope, receive, send)
        send = _with_headers(send, ((b"content-security-policy", POLICY.encode()), *HEADERS))
        headers = Headers(scope=scope)
        refusal = self._host_refusal(headers) or _origin_refusal(scope["method"], headers)
        if refusal is None:
            return await self.app(scope, receive, send)
        field, message, status = refusal
        await _refusal_response(Request(scope), field, message, status)(scope, receive, send)

    def _host_refusal(self, headers: Headers) -> tuple[str, str, int] | None:
        if "*" in self.allowed_hosts:
            return None
        host = headers.get("host", "")
        if _bare(_host_name(host)) in self.allowed_hosts:
            return None
        return ("host", f"this server does not answer to the host name {host[:100]!r}; "
                        "add it to ADDNORM_ALLOWED_HOSTS (comma-separated, or * for any)", 400)


def _origin_refusal(method: str, headers: Headers) -> tuple[str, str, int] | None:
    """A state-changing request from a page of another origin, as its Origin (or Sec-Fetch-Site) says."""
    if method in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None:
        if _same_origin(origin, headers.get("host", "")):
            return None
        source = f"a page of {origin[:100]}"
    elif headers.get("sec-fetch-site") in ("cross-site", "same-site"):  # same-site: another port or subdomain
        source = "a page of another site"
    else:  # same-origin, none (typed by the learner), or no browser at all
        return None
    return ("origin", f"refused: {source} may not start, stop or change anything here; "
                      "use this server's own pages", 403)


def _same_origin(origin: str, host: str) -> bool:
    """Whether Origin (scheme://host[:port]) names the request's own Host (host[:port])."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc or not host:  # "null", file:, …
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return parts.netloc.removesuffix(default) == host.strip().lower().removesuffix(default)


def _host_name(host: str) -> str:
    """The name or address of a Host header, without its port: localhost:8000, [::1]:8000, ::1."""
    host = host.strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _bare(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _with_headers(send, extra: tuple[tuple[bytes, bytes], ...]):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            message = {**message, "headers": headers + [h for h in extra if h[0] not in present]}
        await send(message)

    return send_with_headers


def _refusal_response(request: Request, field: str, message: str, status: int):
    """The app's error shape: JSON under /api, the error page (or its fragment for HTMX) elsewhere."""
    if request.url.path.startswith("/api"):
        return JSONResponse({"detail": [{"field": field, "message": message}]}, status)
    from app.web.errors import BadInput
    from app.web.templating import render_error

    return render_error(request, BadInput(field, message, status))
