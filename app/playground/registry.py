"""Every model the playground can open: the shipped zoo, and any finished run in the run store
(named "run-<id>"), so a model trained in the training lab can be inspected layer by layer."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.lab.store import RunUnreadable
from app.web.params import MAX_ID, parse_id
from model.checkpoint import load_checkpoint
from model.config import quoted
from model.tasks import Task, get_task
from model.transformer import Seq2Seq
from model.zoo import ZooEntry, default_entry, get_entry, load_manifest, load_zoo_model

RUN_PREFIX = "run-"
_store = None  # the app's RunStore, set at startup


_open_stores: list = []  # of the apps whose lifespan is running, in the order they opened
_store_listeners: list = []  # caches keyed by model name: another store's "run-1" is another model


def use_store(store) -> None:
    global _store
    _store = store
    _load_run.cache_clear()
    for forget in _store_listeners:
        forget()


@contextmanager
def using_store(store):
    """The app's run store for the length of its lifespan. Apps in one process (as tests start them) may close in
    any order: the store in use is always that of the app opened last among those still open, never a closed one."""
    _open_stores.append(store)
    use_store(store)
    try:
        yield store
    finally:
        del _open_stores[max(i for i, s in enumerate(_open_stores) if s is store)]
        if _store is store:
            use_store(_open_stores[-1] if _open_stores else None)


def forget_on_new_store(cache_clear):
    """Registers a cache's `cache_clear` to be called whenever the app opens a run store."""
    _store_listeners.append(cache_clear)
    return cache_clear


@dataclass(frozen=True)
class ModelInfo:
    name: str
    title: str
    task: str
    model_config: dict[str, Any]
    switches: dict[str, Any]


def _from_zoo(entry: ZooEntry) -> ModelInfo:
    return ModelInfo(entry.name, entry.title, entry.task, entry.model_config, entry.switches)


def default_model() -> str:
    return default_entry().name


def zoo_models() -> list[ModelInfo]:
    return [_from_zoo(e) for e in load_manifest()]


class BadModelName(ValueError):
    """A name that cannot name any model: run-<id> whose id is no whole number 1..2**63-1."""


def run_id_of(name: str) -> int:
    """The id of a run's name 'run-<id>'; BadModelName saying what an id is otherwise."""
    run_id = parse_id(name[len(RUN_PREFIX):])
    if run_id is None:
        raise BadModelName(f"{quoted(name)} names no run: a run's id is a whole number 1..{MAX_ID} (run-<id>)")
    return run_id


def model_info(name: str) -> ModelInfo:
    """KeyError naming what is available when there is no such model; BadModelName when the name is no
    model's name at all."""
    if name.startswith(RUN_PREFIX):
        run_id_of(name)
        return _load_run(name)[2]
    try:
        return _from_zoo(get_entry(name))
    except KeyError:
        available = ", ".join(m.name for m in zoo_models())
        raise KeyError(f"unknown model {quoted(name)}; available: {available}, or run-<id> for a finished run") \
            from None


def load_model(name: str) -> tuple[Seq2Seq, Task, ModelInfo]:
    if name.startswith(RUN_PREFIX):
        return _load_run(name)
    model, task, entry = load_zoo_model(name)
    return model, task, _from_zoo(entry)


@lru_cache(maxsize=16)
def _load_run(name: str) -> tuple[Seq2Seq, Task, ModelInfo]:
    raw_id = name[len(RUN_PREFIX):]
    record = _store.get(run_id_of(name)) if _store is not None else None
    checkpoint = _store.checkpoint(record.id) if record is not None else None
    if record is None or record.status != "done" or checkpoint is None:
        raise KeyError(f"unknown model {name!r}: there is no finished run {raw_id} in the run store")
    try:
        model, _ = load_checkpoint(checkpoint)
    except Exception as error:  # stored bytes that are no checkpoint: this run cannot be shown, the others can
        raise RunUnreadable(record.id, _store.path, f"its checkpoint does not load ({type(error).__name__})") from None
    label = record.label or f"{record.spec.task}"
    title = f"Run #{record.id} · {label} · {record.spec.model.depth_text} layers"
    info = ModelInfo(name, title, record.spec.task, record.spec.model.to_dict(), record.spec.switches.to_dict())
    return model, get_task(record.spec.task), info
