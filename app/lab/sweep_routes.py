"""Depth sweeps in the training lab: start one, and watch its table and charts fill in."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ConfigDict, Field, create_model

from app import figures
from app.lab.dependencies import StoreDep, SweepsDep
from app.lab.form import DEFAULTS, FIELDS, check_text_step_fits, input_limits, parse_run_request, seeds_of
from app.lab.precompute import PLANS
from app.lab.runs import FINAL_STATUSES
from app.lab.sweeps import DEPTHS, SWEEP_SEEDS, TARGET, VARIANTS, sweep_items, sweep_results, time_left
from app.switches import SWITCH_FIELDS, switch_doc
from app.web.dependencies import SettingsDep, TranslatorDep
from app.web.errors import BadInput, page_errors, quoted
from app.web.forms import FormRoute, refuse_unknown_fields
from app.web.i18n import Translator
from app.web.params import SweepId, parse_whole
from app.web.templating import is_htmx, render
from model.tasks import TASKS

router = APIRouter(tags=["training"], route_class=FormRoute)

# The sweep form as sent: the run form's settings but the depth (each sweep cell has its own), the depths and
# variants to train, a name; or only `plan`, one of the precomputed sweeps a lesson starts.
SweepForm = create_model(
    "SweepForm",
    __config__=ConfigDict(extra="ignore"),
    **{name: (str | None, Field(None, description=f.doc())) for name, f in FIELDS.items() if name != "layers"},
    **{name: (str | None, Field(None, description=switch_doc(name))) for name in SWITCH_FIELDS},
    depths=(list[str], Field([], description=f"the depths to train (one field each): {' | '.join(map(str, DEPTHS))}")),
    variants=(list[str], Field([], description=f"the settings to train at each depth (one field each): "
                                               f"{' | '.join(VARIANTS)}")),
    name=(str | None, Field(None, description="a name for the sweep (at most 60 characters)")),
    plan=(str | None, Field(None, description=f"instead of the rest, one of the lessons' sweeps: {' | '.join(PLANS)}")),
)
SWEEP_FORM_FIELDS = frozenset(SweepForm.model_fields) | {"lang"}
STARTED = {204: {"description": "Started (HTMX): HX-Redirect names the sweep's page"},
           303: {"description": "Started: Location is the sweep's page"}}


def _sweep_context(store, t: Translator, sweep: dict) -> dict:
    rows = sweep_results(store, sweep)
    names = {v: t(f"variant.{v}") for v in VARIANTS}
    with figures.language(t.lang):
        charts = [figures.sweep_accuracy(rows, names), figures.sweep_steps(rows, names, TARGET)]
    finished = all(r["status"] in FINAL_STATUSES for r in rows)
    if sweep["stopped_at"]:  # runs it never started show as stopped, not as waiting
        rows = [{**r, "status": "cancelled"} if r["run_id"] is None else r for r in rows]
        finished = True
    done = sum(r["status"] in FINAL_STATUSES for r in rows)
    progress = t("sw.progress", done=done, total=len(rows))
    if not finished:
        left = time_left(rows, time.time())
        progress += " · " + (t("eta.left", time=duration_text(left, t)) if left is not None else t("eta.estimating"))
    return {"sweep": sweep, "rows": rows, "charts": charts, "finished": finished, "target": TARGET,
            "progress": progress}


def duration_text(seconds: float, t: Translator) -> str:
    """Seconds as the page says them (as static/js/training.js does for a run)."""
    if seconds < 60:
        return t("eta.s", n=max(1, round(seconds)))
    if seconds < 3600:
        return t("eta.min", n=round(seconds / 60))
    return t("eta.h", h=int(seconds // 3600), m=int(seconds % 3600 // 60))


@router.get("/train/sweeps", summary="Depth sweeps: the form and the sweeps so far", response_class=HTMLResponse)
def sweeps_page(request: Request, store: StoreDep, settings: SettingsDep):
    return render(request, "sweeps.html", {
        "tasks": list(TASKS), "families": FIELDS["arch"].choices, "defaults": {**DEFAULTS, "seeds": SWEEP_SEEDS},
        "depths": DEPTHS,
        "variants": list(VARIANTS),
        "sweeps": store.sweeps(limit=20), "limits": input_limits(settings),
    })


def _depth(raw: str) -> int:
    depth = parse_whole(raw.strip(), 1, max(DEPTHS))  # ASCII digits only: isdigit() also takes '²'
    if depth is None:
        raise BadInput("depths", f"{quoted(raw)} is not allowed; choose from {', '.join(map(str, DEPTHS))}")
    return depth


@router.post("/train/sweeps", summary="Start a depth sweep (runs train one after another in the background)",
             response_class=HTMLResponse, responses={**STARTED, **page_errors(413, 415, 422)})
async def start_sweep(request: Request, fields: Annotated[SweepForm, Form()], settings: SettingsDep,
                      sweeps: SweepsDep):
    refuse_unknown_fields(await request.form(), SWEEP_FORM_FIELDS)
    form = fields.model_dump(exclude_none=True)
    plan = form.pop("plan", None)
    if plan:  # a lesson asks for one of the precomputed plans
        if plan not in PLANS:
            raise BadInput("plan", f"unknown plan {quoted(plan)}; known: {', '.join(PLANS)}")
        base, depths, variants = PLANS[plan]
        seeds = tuple(range(SWEEP_SEEDS))  # the seeds the precomputed runs have
        name = plan
    else:
        depths = [_depth(d) for d in form.pop("depths")]
        variants = form.pop("variants")
        name = form.pop("name", "").strip()[:60]
        base, _ = parse_run_request(form, settings, check_layers=False)  # checked at each depth
        seeds = seeds_of({**form, "seeds": form.get("seeds") or str(SWEEP_SEEDS)})
        check_text_step_fits(base, len(seeds))
        name = name or f"{base.task} · {', '.join(variants)}"
    items = sweep_items(base, depths, variants, settings, seeds)
    sweep_id = sweeps.create(name, items)
    if plan and is_htmx(request):
        return render(request, "sweep.html", {"sweep_id": sweep_id}, block_names=["sweep_started"])
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": f"/train/sweeps/{sweep_id}"})
    return Response(status_code=303, headers={"Location": f"/train/sweeps/{sweep_id}"})


def _sweep(store, sweep_id: int) -> dict:
    sweep = store.sweep(sweep_id)
    if sweep is None:
        raise BadInput("sweep", f"there is no sweep {sweep_id}", 404)
    return sweep


@router.post("/train/sweeps/{sweep_id}/cancel", summary="Stop a whole sweep: its waiting and training runs",
             response_class=HTMLResponse,
             responses={303: {"description": "Stopped: Location is the sweep's page"},
                        **page_errors(404, 413, 415, 422)})
def cancel_sweep(request: Request, sweep_id: SweepId, store: StoreDep, sweeps: SweepsDep, t: TranslatorDep):
    _sweep(store, sweep_id)
    sweeps.cancel(sweep_id)
    context = _sweep_context(store, t, store.sweep(sweep_id))
    if is_htmx(request):
        return render(request, "sweep.html", context, block_names=["sweep_results"])
    return Response(status_code=303, headers={"Location": f"/train/sweeps/{sweep_id}"})


@router.get("/train/sweeps/{sweep_id}", summary="A sweep's results so far (the page refreshes them)",
            response_class=HTMLResponse, responses=page_errors(404, 422))
def sweep_page(request: Request, sweep_id: SweepId, store: StoreDep, t: TranslatorDep):
    context = _sweep_context(store, t, _sweep(store, sweep_id))
    if is_htmx(request):
        return render(request, "sweep.html", context, block_names=["sweep_results"])
    return render(request, "sweep.html", context)
