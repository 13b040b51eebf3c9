"""A learner is a browser: a random id in a cookie, so one learner cannot take the whole training queue."""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie

LEARNER_COOKIE = "learner"
ONE_YEAR_S = 365 * 24 * 3600


class LearnerCookieMiddleware:
    """Gives an HTML response a learner cookie when the browser has none (plain ASGI: streams pass untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _has_learner_cookie(scope):
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    cookie = (f"{LEARNER_COOKIE}={secrets.token_urlsafe(12)}; Max-Age={ONE_YEAR_S}; Path=/; "
                              "HttpOnly; SameSite=Lax")
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _has_learner_cookie(scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"cookie" and LEARNER_COOKIE in SimpleCookie(value.decode("latin-1")):
            return True
    return False
