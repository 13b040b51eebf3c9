"""What is measured on a trained model once its run ends, and stored with the run (RunStore.set_probes).

A run's metrics say how it trained; some claims also need the trained model itself (how it does on
inputs longer than any it saw, how its BatchNorm behaves when used as it usually is). Measuring that
when the run ends keeps those figures with the run, so results shipped without checkpoints still carry
them.

    long_inputs       exact/token accuracy on held-out inputs 1–4 digits longer than any in training (P4)
    batch_statistics  exact accuracy with each norm's statistics taken as BatchNorm does in training:
                      from the batch at hand (100 inputs together, each input alone, padding counted)
                      rather than from the running averages used at evaluation (N5)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from model.evaluate import evaluate
from model.layers import Norm
from model.tasks import Task
from model.tasks.base import DigitTask
from model.transformer import Seq2Seq

N_INPUTS = 100
SEED = 7  # the held-out inputs of every probe, so every run is probed on the same ones
LONGER_BY = 4


def probe_run(model: Seq2Seq, task: Task) -> dict:
    """Every probe that applies to this model and task."""
    probes = {}
    longer = long_inputs(model, task)
    if longer is not None:
        probes["long_inputs"] = longer
    if model.switches.norm == "batch":
        probes["batch_statistics"] = batch_statistics(model, task)
    return probes


def long_inputs(model: Seq2Seq, task: Task) -> dict | None:
    """None when the task has no length range to go beyond (only digit tasks have one), or the model's
    positions cannot hold longer inputs."""
    if not isinstance(task, DigitTask):
        return None
    high = task.max_len
    try:
        pairs = task.heldout_set(N_INPUTS, seed=SEED, min_len=high + 1, max_len=high + LONGER_BY)
        scores = evaluate(model, task, pairs)
    except ValueError:  # longer inputs than the task's tokens or the model's positions allow
        return None
    return {"min_len": high + 1, "max_len": high + LONGER_BY, "trained_max_len": high, "inputs": len(pairs),
            "seq_accuracy": scores.seq_accuracy, "token_accuracy": scores.token_accuracy}


def batch_statistics(model: Seq2Seq, task: Task) -> dict:
    pairs = task.heldout_set(N_INPUTS, seed=SEED)
    result = {"inputs": len(pairs), "running_statistics": evaluate(model, task, pairs).seq_accuracy}
    with _batch_statistics(model):
        result["batch_of_100"] = evaluate(model, task, pairs).seq_accuracy
        result["alone"] = evaluate(model, task, pairs, batch_size=1).seq_accuracy
    with _batch_statistics(model, count_padding=True):
        result["batch_of_100_padding_counted"] = evaluate(model, task, pairs).seq_accuracy
    return result


@contextmanager
def _batch_statistics(model: Seq2Seq, count_padding: bool = False) -> Iterator[None]:
    """Every norm divides by the statistics of the batch it is given, as BatchNorm does while training."""
    norms = [m for m in model.modules() if isinstance(m, Norm)]
    for norm in norms:
        norm.batch_statistics_at_eval, norm.count_padding = True, count_padding
    try:
        yield
    finally:
        for norm in norms:
            norm.batch_statistics_at_eval = norm.count_padding = False
