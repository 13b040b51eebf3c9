"""Bad input becomes a clear 4xx: JSON under /api, an inline message on pages."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class BadInput(ValueError):
    """A request parameter is invalid; rendered as a 4xx naming the parameter."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadInput)
    async def bad_input(request: Request, error: BadInput):
        if _wants_json(request):
            return JSONResponse({"detail": [{"field": error.field, "message": error.message}]}, error.status)
        from app.web.templating import render_error

        return render_error(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
                  for e in error.errors()]
        if _wants_json(request):
            return JSONResponse({"detail": detail}, 422)
        from app.web.templating import render_error

        first = detail[0] if detail else {"field": "request", "message": "invalid"}
        return render_error(request, BadInput(first["field"], first["message"]))
