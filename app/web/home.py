"""Pages that are not an area of their own."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.web.templating import render
from model.zoo import load_manifest

router = APIRouter(tags=["pages"])


@router.get("/", summary="Home page", response_class=HTMLResponse)
def home(request: Request):
    return render(request, "home.html", {"entries": load_manifest()})
