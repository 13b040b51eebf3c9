"""Training as a generator of per-step metrics (so a web page or a CLI can watch it), plus a CLI.

    python -m model.train --task reverse --layers 4 --norm-position pre --steps 600 --out run.pt
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from model.checkpoint import save_checkpoint
from model.config import ConfigError, ModelConfig, Switches, _check_types, _Serializable
from model.evaluate import evaluate
from model.tasks import PAD, Task, get_task
from model.transformer import Seq2Seq


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    task: str = "reverse"
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    warmup_steps: int = 0  # linear warm-up from 0 to lr; Post-LN may need it (claim N2)
    seed: int = 0  # same seed, same numbers
    eval_every: int = 50  # held-out exact-sequence accuracy by greedy decoding every k steps
    eval_size: int = 200
    grad_clip: float = 0.0  # 0 = off, so that instabilities stay visible

    def __post_init__(self) -> None:
        _check_types(self)
        get_task(self.task)
        for name, low, high in [("steps", 1, 100_000), ("batch_size", 1, 1024), ("eval_every", 1, 100_000),
                                ("eval_size", 1, 10_000), ("warmup_steps", 0, 100_000), ("seed", 0, 2**31 - 1)]:
            if not low <= getattr(self, name) <= high:
                raise ConfigError(name, f"{getattr(self, name)} is outside {low}..{high}")
        if not 0 < self.lr <= 1:
            raise ConfigError("lr", f"{self.lr} is outside (0, 1]")


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
    diverged: bool = False  # loss became NaN/inf; the run stops

    def to_dict(self) -> dict:
        return asdict(self)


def model_config_for(task: Task, **sizes) -> ModelConfig:
    """Sizes for a task: vocabularies from its tokenizers, positions for its longest sequences."""
    max_len = max(task.max_src_tokens, task.max_tgt_tokens + 1) + 1
    return ModelConfig(
        src_vocab_size=task.src_tokenizer.size,
        tgt_vocab_size=task.tgt_tokenizer.size,
        max_len=max(max_len, sizes.pop("max_len", 0)),
        **sizes,
    )


@dataclass
class _LayerProbe:
    """Hooks on every layer input: records its statistics and, after backward, its gradient norm."""

    grad_norms: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    keep: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T) real-token masks per stack

    def hook(self, x: torch.Tensor, hook) -> None:
        name = hook.name
        keep = self.keep[name.split(".")[0]]
        with torch.no_grad():
            real = x[keep]
            self.means[name] = real.mean().item()
            self.stds[name] = real.std().item()
        if x.requires_grad:
            x.register_hook(lambda g: self.grad_norms.__setitem__(name, g.norm().item()))

    def by_stack(self, values: dict[str, float], config: ModelConfig) -> dict[str, list[float]]:
        return {
            stack: [values.get(f"{stack}.{i}.hook_resid_pre", float("nan")) for i in range(config.n_layers(stack))]
            for stack in ("encoder", "decoder")
        }


class TrainingRun:
    """Owns a model, its optimizer and its data stream; iterate it to train step by step."""

    def __init__(self, model_config: ModelConfig, switches: Switches, train_config: TrainConfig):
        self.model_config = model_config
        self.switches = switches
        self.train_config = train_config
        self.task = get_task(train_config.task)
        torch.manual_seed(train_config.seed)
        self.model = Seq2Seq(model_config, switches)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.lr)
        self.data_rng = random.Random(train_config.seed)
        self.heldout = self.task.heldout_set(train_config.eval_size)
        self.history: list[StepMetrics] = []
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stops the run before its next step."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def lr_at(self, step: int) -> float:
        warmup = self.train_config.warmup_steps
        return self.train_config.lr * min(1.0, step / warmup) if warmup else self.train_config.lr

    def __iter__(self) -> Iterator[StepMetrics]:
        cfg = self.train_config
        probe = _LayerProbe()
        layer_inputs = [(lambda n: n.endswith("hook_resid_pre"), probe.hook)]
        loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
        started = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            if self._cancel.is_set():
                return
            self.model.train()
            batch = self.task.batch(self.data_rng, cfg.batch_size)
            probe.keep = {"encoder": batch.src != PAD, "decoder": batch.tgt_in != PAD}
            lr = self.lr_at(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.model.hooks(layer_inputs):
                logits = self.model(batch.src, batch.tgt_in)
                loss = loss_fn(logits.flatten(0, 1), batch.tgt_out.flatten())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf")).item()
            diverged = not math.isfinite(loss.item())
            if not diverged:
                self.optimizer.step()
            real = batch.tgt_out != PAD
            token_accuracy = ((logits.argmax(-1) == batch.tgt_out) & real).sum().item() / real.sum().item()
            metrics = StepMetrics(
                step=step,
                loss=loss.item(),
                token_accuracy=token_accuracy,
                lr=lr,
                grad_norm=grad_norm,
                layer_grad_norms=probe.by_stack(probe.grad_norms, self.model_config),
                layer_input_mean=probe.by_stack(probe.means, self.model_config),
                layer_input_std=probe.by_stack(probe.stds, self.model_config),
                elapsed_s=time.perf_counter() - started,
                diverged=diverged,
            )
            if step % cfg.eval_every == 0 or step == cfg.steps or diverged:
                scores = evaluate(self.model, self.task, self.heldout)
                metrics.heldout_seq_accuracy = scores.seq_accuracy
                metrics.heldout_token_accuracy = scores.token_accuracy
            self.history.append(metrics)
            yield metrics
            if diverged:
                return

    def save(self, path: str) -> None:
        save_checkpoint(path, self.model, self.train_config, self.history)


def steps_to_reach(history: list[StepMetrics], target: float) -> int | None:
    """First step whose held-out exact-sequence accuracy is >= target (None if never)."""
    for m in history:
        if m.heldout_seq_accuracy is not None and m.heldout_seq_accuracy >= target:
            return m.step
    return None


if __name__ == "__main__":
    from model.train_cli import main

    main()
