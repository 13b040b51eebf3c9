"""One training job as a Ray task that streams what it does: the engine's step-by-step training maps
onto a generator, and Ray carries each yielded item (metrics, then each seed's checkpoint) back to
the web process through its object store.

    ("started",)                        once the models are built
    ("metrics", [row, ...])             about ten times a second; each row is a StepMetrics dict with its seed
    ("probes", seed, dict)              per seed, after the last step: model.train.probes.probe_run
    ("checkpoint", seed, bytes)         per seed, after the last step
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import ray

from model.config import ModelConfig, Switches, TrainConfig

FLUSH_SECONDS = 0.1  # the page wants at least five updates a second; more only costs round trips


def train_seeds(model_config: ModelConfig, switches: Switches, train_config: TrainConfig,
                seeds: list[int]) -> Iterator[tuple]:
    """Train every seed of one configuration together (model.train.MultiSeedRun) and stream it."""
    import torch

    from model.checkpoint import checkpoint_bytes
    from model.train import MultiSeedRun
    from model.train.probes import probe_run

    torch.set_num_threads(1)  # one core per task: that is what the task asked Ray for
    run = MultiSeedRun(model_config, switches, train_config, seeds)
    yield ("started",)
    pending, last_flush = [], time.monotonic()
    for metrics in run:
        pending += [m.to_dict() for m in metrics]
        evaluated = any(m.heldout_token_accuracy is not None for m in metrics)  # a text has no whole answer
        if evaluated or time.monotonic() - last_flush >= FLUSH_SECONDS:
            yield ("metrics", pending)
            pending, last_flush = [], time.monotonic()
    if pending:
        yield ("metrics", pending)
    for seed in seeds:
        config = dataclasses.replace(train_config, seed=seed)
        model = run.model_of(seed)
        if not run.cancelled:
            try:
                probes = probe_run(model, run.task)
            except Exception as error:  # a probe is extra: the trained run and its checkpoint still count
                probes = {"error": f"{type(error).__name__}: {error}"}
            yield ("probes", seed, probes)
        yield ("checkpoint", seed, checkpoint_bytes(model, config, run.history[seed]))


# No retries: a run whose worker died is reported as failed, not silently trained again from step 1.
training_task = ray.remote(num_cpus=1, max_retries=0)(train_seeds)
