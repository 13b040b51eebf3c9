"""Pages that are not an area of their own."""

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.web.templating import render
from model.zoo import default_entry, load_manifest

router = APIRouter(tags=["pages"])


@router.get("/", summary="Home page", response_class=HTMLResponse)
def home(request: Request):
    # The first experiment: the default model with every residual connection off (its answer breaks).
    start = urlencode({"model": default_entry().name, "residual": "off"})
    return render(request, "home.html", {"entries": load_manifest(), "start_query": start})
