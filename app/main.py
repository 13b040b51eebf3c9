"""The ASGI app: `uvicorn app.main:app`."""

import gc
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from app.compute import model_limiter
from app.errors import install_error_handlers
from app.jobs import LocalJobRunner
from app.models import use_store
from app.routes import api, lessons, pages, playground, sweeps, training
from app.settings import Settings, get_settings
from app.store import RunStore
from app.sweeps import SweepScheduler
from model.zoo import default_entry, load_zoo_model

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.torch_threads)
        app.state.model_limiter = model_limiter(settings.model_threads)
        load_zoo_model(default_entry().name)  # warm: the first page should not wait for a load
        app.state.store = RunStore(settings.data_dir / "runs.sqlite3")
        use_store(app.state.store)
        app.state.runner = LocalJobRunner(app.state.store, settings.workers, settings.max_queue)
        app.state.runner.start()
        app.state.sweeps = SweepScheduler(app.state.runner, app.state.store)
        app.state.sweeps.start()
        # What startup made (torch, the app, the default model: ~200k objects) lives as long as the server. Frozen,
        # it is left out of every later full garbage collection, which otherwise stalls a request for ~100 ms.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        app.state.sweeps.stop()
        app.state.runner.stop()
        app.state.store.close()

    app = FastAPI(title="addnorm", summary="Take a small Transformer apart.", lifespan=lifespan)
    app.state.settings = settings
    # plotly.js and figure JSON compress ~4x; level 6 is half the time of the default 9 for ~2% more bytes
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    for router in (pages.router, playground.router, training.router, sweeps.router, lessons.router, api.router):
        app.include_router(router)
    install_error_handlers(app)
    return app


app = create_app()
