"""create_app, the composition root: settings, the lifespan (stores, job runner, sweeps, model limiter, class
watchers), routers, error pages. The one module that imports every feature; no feature imports it."""

import gc
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from app.classroom import student_routes, teacher_routes
from app.classroom.live import ClassHub
from app.classroom.sessions import install_class_error_handlers
from app.classroom.store import open_class_store
from app.lab import routes as lab_routes
from app.lab import sweep_routes
from app.lab.cluster import ray_instance
from app.lab.jobs import RayJobRunner
from app.lab.quotas import Quotas
from app.lab.results import ResultSource, shipped_store
from app.lab.runs import FINAL_STATUSES, STATUSES
from app.lab.store_errors import install_store_error_handlers
from app.lab.store_opening import open_store
from app.lab.sweeps import SweepScheduler
from app.playground import api as playground_api
from app.playground import routes as playground_routes
from app.playground.compute import ModelProcesses, model_limiter
from app.playground.registry import using_store
from app.teaching import routes as teaching_routes
from app.teaching.verdicts import VerdictBoard
from app.web import docs, home
from app.web.errors import declare_refusals, install_error_handlers
from app.web.learners import LearnerCookieMiddleware
from app.web.security import SecurityMiddleware
from app.web.settings import Settings, get_settings
from app.web.templating import templates
from model.zoo import default_entry, load_zoo_model

ROOT = Path(__file__).resolve().parents[1]
# The lab's run statuses, for every page that lists runs (the lab's, a lesson's, the teacher's).
templates.env.globals.update(run_statuses=STATUSES, final_statuses=FINAL_STATUSES)
ROUTERS = (home.router, playground_routes.router, lab_routes.router, sweep_routes.router, teaching_routes.router,
           teacher_routes.router, student_routes.router, playground_api.router, docs.router)


def warm_templates() -> None:
    """Compiled before the server is up: the first whole page a learner opens should not wait for it."""
    for name in ("home.html", "playground.html", "lesson.html", "claims.html", "class_student.html"):
        templates.env.get_template(name)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.torch_threads)
        app.state.model_limiter = model_limiter(settings.model_threads)
        load_zoo_model(default_entry().name)  # warm: the first page should not wait for a load
        # A store that cannot be written (store.read_only says why) leaves training off: no Ray instance, no
        # queue, no sweeps; its runs still show, and submitting is refused (503, app/lab/store_errors.py).
        opened = open_store(settings.data_dir)
        training = opened.store.writable
        with opened.store as store, using_store(store), ray_instance(settings) if training else nullcontext():
            app.state.store = store
            app.state.store_notice = opened.notice  # shown once on the training lab
            app.state.runner = RayJobRunner(store, settings.max_queue, settings.max_queue_per_learner,
                                            Quotas(settings.max_checkpoint_mb, settings.max_store_mb))
            app.state.sweeps = SweepScheduler(app.state.runner, store)
            if training:
                app.state.runner.start()
                app.state.sweeps.start()
            app.state.results = ResultSource(store, settings, shipped_store() if settings.shipped_results else None)
            app.state.verdicts = VerdictBoard(settings, store, app.state.results)
            app.state.verdicts.current()  # measured now, in the background, if the saved report is stale
            app.state.model_processes = None
            if settings.model_processes > 0:  # after the store exists: the workers open it to read runs
                app.state.model_processes = ModelProcesses(settings.model_processes, settings.data_dir,
                                                           settings.torch_threads, playground_routes.warm_up)
                app.state.model_processes.start()
                await app.state.model_processes.ready()
            warm_templates()
            # Classes have a store of their own: one that cannot be used turns classes off (503), nothing else.
            app.state.classes, app.state.classes_problem = open_class_store(settings.data_dir)
            app.state.class_hub = ClassHub(app.state.classes) if app.state.classes is not None else None
            # What startup made (torch, the app, the default model: ~200k objects) lives as long as the server.
            # Frozen, it is left out of every later full garbage collection, which otherwise stalls a request
            # for ~100 ms.
            gc.collect()
            gc.freeze()
            yield
            gc.unfreeze()
            if app.state.model_processes is not None:
                app.state.model_processes.stop()
            if app.state.classes is not None:
                await app.state.class_hub.close()
                app.state.classes.close()
            app.state.verdicts.close()
            if training:
                app.state.sweeps.stop()
                app.state.runner.stop()

    app = FastAPI(title="addnorm", summary="Take a small Transformer apart.", lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served from static/vendor/ by app/web/docs.py
    app.state.settings = settings
    # plotly.js and figure JSON compress ~4x; level 6 is half the time of the default 9 for ~2% more bytes
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.add_middleware(LearnerCookieMiddleware)
    app.add_middleware(SecurityMiddleware, allowed_hosts=settings.allowed_hosts)  # outermost: before anything
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    declare_refusals(app)
    install_store_error_handlers(app)
    install_class_error_handlers(app)
    return app
