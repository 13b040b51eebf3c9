"""Depth sweeps in the training lab: start one, and watch its table and charts fill in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.lab.form import DEFAULTS, input_limits, parse_run_request, seeds_of
from app.lab.precompute import PLANS
from app.lab.store import FINAL_STATUSES
from app.lab.sweeps import DEPTHS, SWEEP_SEEDS, TARGET, VARIANTS, sweep_items, sweep_results
from app.playground import figures
from app.web.dependencies import SettingsDep, StoreDep, SweepsDep, TranslatorDep
from app.web.errors import BadInput
from app.web.i18n import Translator
from app.web.templating import is_htmx, render
from model.tasks import TASKS

router = APIRouter(tags=["training"])


def _sweep_context(store, t: Translator, sweep: dict) -> dict:
    rows = sweep_results(store, sweep)
    names = {v: t(f"variant.{v}") for v in VARIANTS}
    with figures.language(t.lang):
        charts = [figures.sweep_accuracy(rows, names), figures.sweep_steps(rows, names, TARGET)]
    finished = all(r["status"] in FINAL_STATUSES for r in rows)
    if sweep["stopped_at"]:  # runs it never started show as stopped, not as waiting
        rows = [{**r, "status": "cancelled"} if r["run_id"] is None else r for r in rows]
        finished = True
    return {"sweep": sweep, "rows": rows, "charts": charts, "finished": finished, "target": TARGET}


@router.get("/train/sweeps", summary="Depth sweeps: the form and the sweeps so far")
def sweeps_page(request: Request, store: StoreDep, settings: SettingsDep):
    return render(request, "sweeps.html", {
        "tasks": list(TASKS), "defaults": {**DEFAULTS, "seeds": SWEEP_SEEDS}, "depths": DEPTHS,
        "variants": list(VARIANTS),
        "sweeps": store.sweeps(limit=20), "limits": input_limits(settings),
    })


@router.post("/train/sweeps", summary="Start a depth sweep (runs train one after another in the background)")
async def start_sweep(request: Request, settings: SettingsDep, sweeps: SweepsDep):
    form = await request.form()
    plan = form.get("plan")
    if plan:  # a lesson asks for one of the precomputed plans
        if plan not in PLANS:
            raise BadInput("plan", f"unknown plan {plan!r}; known: {', '.join(PLANS)}")
        base, depths, variants = PLANS[plan]
        seeds = tuple(range(SWEEP_SEEDS))  # the seeds the precomputed runs have
        name = plan
    else:
        depths = [int(d) for d in form.getlist("depths") if d.isdigit()]
        variants = list(form.getlist("variants"))
        fields = {k: v for k, v in form.items() if k not in ("depths", "variants")}
        base, _ = parse_run_request(fields, settings)
        seeds = seeds_of({**fields, "seeds": fields.get("seeds") or str(SWEEP_SEEDS)})
        name = str(form.get("name", "")).strip()[:60] or f"{base.task} · {', '.join(variants)}"
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


@router.post("/train/sweeps/{sweep_id}/cancel", summary="Stop a whole sweep: its waiting and training runs")
def cancel_sweep(request: Request, sweep_id: int, store: StoreDep, sweeps: SweepsDep, t: TranslatorDep):
    _sweep(store, sweep_id)
    sweeps.cancel(sweep_id)
    context = _sweep_context(store, t, store.sweep(sweep_id))
    if is_htmx(request):
        return render(request, "sweep.html", context, block_names=["sweep_results"])
    return Response(status_code=303, headers={"Location": f"/train/sweeps/{sweep_id}"})


@router.get("/train/sweeps/{sweep_id}", summary="A sweep's results so far (the page refreshes them)")
def sweep_page(request: Request, sweep_id: int, store: StoreDep, t: TranslatorDep):
    context = _sweep_context(store, t, _sweep(store, sweep_id))
    if is_htmx(request):
        return render(request, "sweep.html", context, block_names=["sweep_results"])
    return render(request, "sweep.html", context)
