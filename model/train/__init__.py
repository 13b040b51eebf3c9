"""Training as a generator of per-step metrics (so a web page or a CLI can watch it).

`MultiSeedRun` trains K seeds of one configuration together, as one batched computation
(model.seeds): each seed keeps the initialisation, data stream, metrics and held-out scores it would
have alone, and stops on its own (target reached, diverged, budget spent) without holding up the
others. `TrainingRun` is the one-seed case. CLI: model/train/cli.py.

    python -m model.train --task reverse --layers 2 --seeds 0-4 --steps 600 --stop-at 0.99 --json
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from model.checkpoint import save_checkpoint
from model.config import ConfigError, ModelConfig, Switches, TrainConfig
from model.evaluate import evaluate_seeds
from model.families import IGNORE, build_model
from model.layers import initialize
from model.posing import posing_for
from model.seeds import FlatParameters, seed_state, stack_models
from model.tasks import Task, collate, get_task
from model.transformer import SwitchedModel


@dataclass
class StepMetrics:
    step: int  # 1-based count of optimizer steps done
    loss: float  # teacher-forced cross-entropy on this batch
    token_accuracy: float  # teacher-forced, on this batch
    lr: float
    grad_norm: float  # of all parameters, before clipping
    # ‖∂loss/∂(layer input)‖ per layer: the residual stream entering each layer (claim R1)
    layer_grad_norms: dict[str, list[float]]
    # mean and std of each layer's input over real tokens (claim N3, internal covariate shift)
    layer_input_mean: dict[str, list[float]]
    layer_input_std: dict[str, list[float]]
    elapsed_s: float
    heldout_seq_accuracy: float | None = None  # exact whole sequence, greedy decoding
    heldout_token_accuracy: float | None = None
    heldout_loss: float | None = None  # a corpus's held-out cross-entropy, nats per character (bits: ÷ ln 2)
    diverged: bool = False  # loss became NaN/inf; the run stops
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SeedResult:
    """How one seed's training ended."""

    seed: int
    steps: int  # optimizer steps run
    reached_at: int | None  # first evaluated step with held-out exact accuracy >= stop_at (None: not reached/off)
    heldout_exact: float | None  # at the last evaluation
    heldout_token: float | None
    wall_s: float  # from the start of the run to this seed's last step
    diverged: bool
    heldout_loss: float | None = None  # a corpus's, nats per character, at the last evaluation


def model_config_for(task: Task, **sizes) -> ModelConfig:
    """Sizes for a task: vocabularies from its tokenizers, positions for its longest sequences as the family
    (`arch`, default the encoder-decoder) poses them. ConfigError if the family cannot be posed the task."""
    posing = posing_for(sizes.get("arch", ModelConfig.arch))
    posing.check_task(task)
    max_len = posing.max_len(task)
    return ModelConfig(
        src_vocab_size=task.src_tokenizer.size,
        tgt_vocab_size=task.tgt_tokenizer.size,
        max_len=max(max_len, sizes.pop("max_len", 0)),
        **sizes,
    )


def new_model(model_config: ModelConfig, switches: Switches, seed: int, init: str = "default") -> SwitchedModel:
    """The model a run with this seed starts from: the same weights on every machine."""
    torch.manual_seed(seed)
    model = build_model(model_config, switches)
    initialize(model, init)
    return model


class _LayerProbe:
    """Hooks on every layer input (hook_resid_pre). Per seed: mean and std over real tokens, and after
    backward the gradient norm; kept as tensors so that a step moves its numbers to Python once."""

    def __init__(self, model: SwitchedModel):
        self.stacks = {spec.name: model.config.n_layers(spec.name) for spec in model.stacks}
        self.names = [f"{stack}.{i}.hook_resid_pre" for stack, n in self.stacks.items() for i in range(n)]
        self.hooks = [(self.names, self.hook)]

    def start(self, n_seeds: int, keep: dict[str, torch.Tensor]) -> None:
        self.n_seeds, self.keep = n_seeds, keep  # keep: (rows, T) real-token masks per stack
        self.mean: dict[str, torch.Tensor] = {}
        self.std: dict[str, torch.Tensor] = {}
        self.grad: dict[str, torch.Tensor] = {}

    def hook(self, x: torch.Tensor, hook) -> None:
        name, K = hook.name, self.n_seeds
        with torch.no_grad():
            weights = self.keep[name.split(".")[0]].reshape(K, -1, 1).to(x.dtype)  # (K, B·T, 1)
            tokens = x.detach().reshape(K, -1, x.size(-1))
            n = weights.sum((1, 2)) * x.size(-1)  # real values per seed
            mean = (tokens * weights).sum((1, 2)) / n
            self.mean[name] = mean
            self.std[name] = (((tokens - mean[:, None, None]).pow(2) * weights).sum((1, 2)) / (n - 1)).sqrt()
        if x.requires_grad:
            x.register_hook(lambda g: self.grad.__setitem__(name, g.detach().reshape(K, -1).norm(dim=1)))

    def rows(self) -> list[torch.Tensor]:
        """3 × layers rows of (K,): means, stds, gradient norms, in self.names order (NaN where none)."""
        nan = torch.full((self.n_seeds,), math.nan)
        return [table.get(name, nan) for table in (self.mean, self.std, self.grad) for name in self.names]

    def by_stack(self, values: list[float]) -> dict[str, list[float]]:
        out, start = {}, 0
        for stack, n in self.stacks.items():
            out[stack] = values[start : start + n]
            start += n
        return out


class MultiSeedRun:
    """K seeds of one configuration, trained together. Iterate it: each step yields the StepMetrics of
    the seeds still training. `results` says how each seed ended; `model_of(seed)` gives its model."""

    def __init__(self, model_config: ModelConfig, switches: Switches, train_config: TrainConfig,
                 seeds: Sequence[int] | None = None):
        self.model_config = model_config
        self.switches = switches
        self.train_config = train_config
        self.seeds = list(seeds) if seeds is not None else [train_config.seed]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", f"{self.seeds} must be one or more different seeds")
        self.task = get_task(train_config.task)
        self.posing = posing_for(model_config.arch)
        self.posing.check_task(self.task)
        # One seed trains the plain model; several, one model whose weights carry the seed dimension.
        self.model = stack_models([new_model(model_config, switches, s, train_config.init) for s in self.seeds])
        self.params = FlatParameters(self.model)
        # Adam is element by element, so one Adam over the stacked parameters is K independent optimizers.
        self.optimizer = torch.optim.Adam([self.params.flat], lr=train_config.lr, fused=True)
        self.active = list(self.seeds)  # the seeds still training, in the order of the stacked rows
        self.rngs = {s: random.Random(s) for s in self.seeds}  # each seed's own data stream
        self.heldout = self.task.heldout_set(train_config.eval_size)
        self.history: dict[int, list[StepMetrics]] = {s: [] for s in self.seeds}
        self.results: dict[int, SeedResult] = {}
        self._final_states: dict[int, dict[str, torch.Tensor]] = {}
        self._probe = _LayerProbe(self.model)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stops every seed before its next step."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def lr_at(self, step: int) -> float:
        warmup = self.train_config.warmup_steps
        return self.train_config.lr * min(1.0, step / warmup) if warmup else self.train_config.lr

    def model_of(self, seed: int) -> SwitchedModel:
        """Seed's plain model: its final one once it stopped, else a snapshot of it now."""
        state = self._final_states.get(seed)
        if state is None:
            state = seed_state(self.model, self.active.index(seed))
        model = build_model(self.model_config, self.switches)
        model.load_state_dict(state)
        return model

    def __iter__(self) -> Iterator[list[StepMetrics]]:
        cfg = self.train_config
        started = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            if self._cancel.is_set() or not self.active:
                return
            metrics = self._step(step, started)
            due = step % cfg.eval_every == 0 or step == cfg.steps
            if due or any(m.diverged for m in metrics):  # a diverged seed gets its last scores now
                self._evaluate([m if due or m.diverged else None for m in metrics])
            for m in metrics:
                self.history[m.seed].append(m)
            yield metrics
            self._retire([m for m in metrics if self._finished(m)], started)

    def _batch(self):
        size = self.train_config.batch_size
        pairs = [self.task.sample(self.rngs[s]) for s in self.active for _ in range(size)]
        return collate(self.task, pairs)  # rows [k·B, (k+1)·B) are seed k's batch

    def _step(self, step: int, started: float) -> list[StepMetrics]:
        K = len(self.active)
        posed = self.posing.pose(self._batch())
        real = posed.targets != IGNORE
        self._probe.start(K, posed.keep)
        lr = self.lr_at(step)
        self.optimizer.param_groups[0]["lr"] = lr
        self.model.train()
        with self.model.hooks(self._probe.hooks):
            logits = self.model(*posed.inputs)
            per_token = F.cross_entropy(logits.flatten(0, 1), posed.targets.flatten(), ignore_index=IGNORE,
                                        reduction="none").view(K, -1)
            n_real = real.view(K, -1).sum(1)
            loss = per_token.sum(1) / n_real  # (K,) each seed's mean over its real tokens
            self.params.zero_grad()
            loss.sum().backward()  # nothing mixes seeds: each seed's gradient is that of its own loss
        grad_norm = self.params.grad_norms()
        if self.train_config.grad_clip:
            self.params.clip_(self.train_config.grad_clip, grad_norm)
        diverged = ~torch.isfinite(loss)
        self._optimizer_step(diverged)
        with torch.no_grad():
            hits = ((logits.argmax(-1) == posed.targets) & real).view(K, -1).sum(1)
            table = torch.stack([loss.detach(), hits / n_real, grad_norm, diverged.float(), *self._probe.rows()])
        values = table.tolist()  # the one move to Python this step
        elapsed = time.perf_counter() - started
        n_layers = len(self._probe.names)
        out = []
        for k, seed in enumerate(self.active):
            column = [row[k] for row in values]
            layers = column[4:]
            out.append(StepMetrics(
                step=step, loss=column[0], token_accuracy=column[1], lr=lr, grad_norm=column[2],
                layer_input_mean=self._probe.by_stack(layers[:n_layers]),
                layer_input_std=self._probe.by_stack(layers[n_layers : 2 * n_layers]),
                layer_grad_norms=self._probe.by_stack(layers[2 * n_layers :]),
                elapsed_s=elapsed, diverged=bool(column[3]), seed=seed,
            ))
        return out

    def _optimizer_step(self, diverged: torch.Tensor) -> None:
        """A diverged seed is not stepped (its numbers stay as they were, as a lone run's would)."""
        if not diverged.any():
            self.optimizer.step()
            return
        rows = diverged.nonzero().flatten()
        kept = self.params.flat.detach()[rows].clone()
        self.optimizer.step()
        with torch.no_grad():
            self.params.flat[rows] = kept

    def _evaluate(self, metrics: list[StepMetrics | None]) -> None:
        """Scores the seeds whose metrics are given (all seeds decode together; the others' scores are dropped)."""
        scores = evaluate_seeds(self.model, self.task, self.heldout, len(self.active))
        for m, s in zip(metrics, scores, strict=True):
            if m is not None:
                m.heldout_seq_accuracy, m.heldout_token_accuracy = s.seq_accuracy, s.token_accuracy
                m.heldout_loss = s.loss

    def _finished(self, m: StepMetrics) -> bool:
        target = self.train_config.stop_at
        reached = target > 0 and m.heldout_seq_accuracy is not None and m.heldout_seq_accuracy >= target
        return reached or m.diverged or m.step == self.train_config.steps

    def _retire(self, done: list[StepMetrics], started: float) -> None:
        """Drop stopped seeds from the stacked model, so the others train on at their own pace."""
        if not done:
            return
        wall = time.perf_counter() - started
        for m in done:
            history = self.history[m.seed]
            last_eval = next((h for h in reversed(history) if h.heldout_token_accuracy is not None), None)
            self._final_states[m.seed] = seed_state(self.model, self.active.index(m.seed))
            self.results[m.seed] = SeedResult(
                seed=m.seed, steps=m.step,
                reached_at=steps_to_reach(history, self.train_config.stop_at) if self.train_config.stop_at else None,
                heldout_exact=last_eval.heldout_seq_accuracy if last_eval else None,
                heldout_token=last_eval.heldout_token_accuracy if last_eval else None,
                wall_s=wall, diverged=m.diverged, heldout_loss=last_eval.heldout_loss if last_eval else None)
        stopped = {m.seed for m in done}
        keep = [i for i, s in enumerate(self.active) if s not in stopped]
        self.active = [self.active[i] for i in keep]
        if self.active:
            self.params.keep(keep, self.optimizer)


class TrainingRun:
    """One seed (train_config.seed): iterate it for that seed's StepMetrics, step by step."""

    def __init__(self, model_config: ModelConfig, switches: Switches, train_config: TrainConfig):
        self.engine = MultiSeedRun(model_config, switches, train_config, [train_config.seed])
        self.model_config, self.switches, self.train_config = model_config, switches, train_config
        self.task = self.engine.task
        self.history = self.engine.history[train_config.seed]

    def __iter__(self) -> Iterator[StepMetrics]:
        for metrics in self.engine:
            yield metrics[0]

    def cancel(self) -> None:
        self.engine.cancel()

    @property
    def cancelled(self) -> bool:
        return self.engine.cancelled

    @property
    def model(self) -> SwitchedModel:
        return self.engine.model_of(self.train_config.seed)

    def save(self, path: str) -> None:
        save_checkpoint(path, self.model, self.train_config, self.history)


def steps_to_reach(history: Sequence[StepMetrics | dict], target: float) -> int | None:
    """First step whose held-out exact-sequence accuracy is >= target (None if never). The rows are StepMetrics
    or their dicts (as the run store keeps them)."""
    for m in history:
        row = m if isinstance(m, dict) else m.__dict__
        accuracy = row.get("heldout_seq_accuracy")
        if accuracy is not None and accuracy >= target:
            return row["step"]
    return None
