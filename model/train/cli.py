"""Command line for model.train: every switch is a flag; several seeds train together.

    python -m model.train --task reverse --layers 2 --seeds 0-4 --steps 600 --stop-at 0.99 --json

With one seed it shows a progress bar and a summary; with --json it prints one JSON line per seed
(seed, steps, reached_at, heldout_exact, heldout_token, wall_s) and a last line {"summary": …}.
A bad value is refused in one line that names the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from model.checkpoint import save_checkpoint
from model.config import ConfigError, Switches
from model.tasks import TASKS, get_task
from model.train import MultiSeedRun, SeedResult, TrainConfig, model_config_for, steps_to_reach

MAX_SEEDS = 32
# Config fields whose flag is not simply --field-name.
FLAG_OF = {"warmup_steps": "--warmup", "n_heads": "--heads", "n_encoder_layers": "--encoder-layers",
           "n_decoder_layers": "--decoder-layers", "seed": "--seeds", "seeds": "--seeds"}


class UsageError(Exception):
    """A flag with a bad value; the message names the flag."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage; one line says enough
        raise UsageError(message)


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use on or off")


def parse_seeds(text: str) -> list[int]:
    """'3' -> [3]; '0-4' -> [0, 1, 2, 3, 4]; '0,2,5' -> [0, 2, 5]; parts may be mixed: '0-2,7'."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if not 0 <= first <= last:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed list; use N, A-B (A <= B) or a list such as 0,2,5") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"{len(seeds)} seeds is more than {MAX_SEEDS} at once")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m model.train", description="Train a small switchable Transformer on one or more seeds.")
    p.add_argument("--task", default="reverse", choices=sorted(TASKS))
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder layers (each)")
    p.add_argument("--encoder-layers", type=int, help="overrides --layers for the encoder")
    p.add_argument("--decoder-layers", type=int, help="overrides --layers for the decoder")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=128)
    p.add_argument("--residual", type=_on_off, default=True, metavar="on|off")
    p.add_argument("--residual-off", default="", help="comma list, e.g. encoder.1.ffn,decoder.0.cross_attn")
    p.add_argument("--norm", default="layer", choices=["layer", "rms", "batch", "none"])
    p.add_argument("--norm-position", default="post", choices=["post", "pre"])
    p.add_argument("--pos-encoding", default="sinusoidal", choices=["sinusoidal", "learned", "none"])
    p.add_argument("--pos-every-layer", type=_on_off, default=False, metavar="on|off")
    p.add_argument("--causal-mask", type=_on_off, default=True, metavar="on|off")
    p.add_argument("--memory", default="final", choices=["final", "same_depth"])
    p.add_argument("--init", default="default", choices=["default", "xavier", "small"],
                   help="default: PyTorch's; xavier: Glorot uniform; small: GPT-2's normal(0, 0.02)")
    p.add_argument("--steps", type=int, default=600, help="the budget; with --stop-at a seed may stop sooner")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--grad-clip", type=float, default=0.0, help="clip each seed's gradient norm (0 = off)")
    p.add_argument("--seeds", "--seed", type=parse_seeds, default=[0], metavar="N|A-B|A,B,…",
                   help="seeds trained together, e.g. 0-4")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-size", type=int, default=200)
    p.add_argument("--stop-at", type=float, default=0.0,
                   help="stop a seed once its held-out exact-sequence accuracy reaches this (0 = off)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="one JSON line per seed, then a summary line")
    p.add_argument("--out", default=None, help="checkpoint path (.pt); with several seeds, -seed<N> is added")
    return p


def _flag(field: str) -> str:
    return FLAG_OF.get(field, "--" + field.replace("_", "-"))


def _make_run(args) -> MultiSeedRun:
    switches = Switches(
        residual=args.residual, residual_off=args.residual_off, norm=args.norm, norm_position=args.norm_position,
        pos_encoding=args.pos_encoding, pos_every_layer=args.pos_every_layer, causal_mask=args.causal_mask,
        memory=args.memory,
    )
    train_config = TrainConfig(
        task=args.task, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
        seed=args.seeds[0], eval_every=args.eval_every, eval_size=args.eval_size, grad_clip=args.grad_clip,
        init=args.init, stop_at=args.stop_at,
    )
    model_config = model_config_for(
        get_task(args.task), d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff,
        n_encoder_layers=args.encoder_layers or args.layers, n_decoder_layers=args.decoder_layers or args.layers,
    )
    return MultiSeedRun(model_config, switches, train_config, args.seeds)


def _bar(done: int, total: int, width: int = 28) -> str:
    filled = int(width * done / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _progress(run: MultiSeedRun, metrics, args, started: float) -> None:
    step = metrics[0].step
    if not sys.stderr.isatty() and step % max(1, args.eval_every) and step != args.steps:
        return
    held = [m.heldout_seq_accuracy for m in metrics if m.heldout_seq_accuracy is not None]
    loss = statistics.fmean(m.loss for m in metrics)
    seeds = f"seeds training {len(metrics)}/{len(run.seeds)}  " if len(run.seeds) > 1 else ""
    held_text = f"{statistics.fmean(held):.1%}" if held else "—"
    rate = step / max(time.perf_counter() - started, 1e-9)
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"{_bar(step, args.steps)} step {step}/{args.steps} {seeds}loss {loss:.4f} held-out seq {held_text}  "
          f"{rate:.1f} steps/s", end=end, file=sys.stderr, flush=True)


def summary(results: list[SeedResult], wall_s: float) -> dict:
    exact = [r.heldout_exact for r in results if r.heldout_exact is not None]
    reached = [r.reached_at for r in results if r.reached_at is not None]
    return {
        "seeds": [r.seed for r in results],
        "heldout_exact_mean": statistics.fmean(exact) if exact else None,
        "heldout_exact_sd": statistics.stdev(exact) if len(exact) > 1 else None,
        "heldout_exact_min": min(exact, default=None),
        "heldout_exact_max": max(exact, default=None),
        "reached": len(reached),
        "reached_at_median": statistics.median(reached) if reached else None,
        "diverged": sum(r.diverged for r in results),
        "wall_s": round(wall_s, 2),
    }


def _save(run: MultiSeedRun, out: str) -> list[Path]:
    paths = []
    for seed in run.seeds:
        path = Path(out)
        if len(run.seeds) > 1:
            path = path.with_name(f"{path.stem}-seed{seed}{path.suffix}")
        config = dataclasses.replace(run.train_config, seed=seed)
        save_checkpoint(path, run.model_of(seed), config, run.history[seed])
        paths.append(path)
    return paths


def _report(run: MultiSeedRun, results: list[SeedResult], wall_s: float) -> None:
    """The human summary: one seed as before, several as a line each and their spread."""
    for r in results:
        history = run.history[r.seed]
        last = history[-1]
        prefix = f"seed {r.seed}: " if len(results) > 1 else ""
        held = "—" if r.heldout_exact is None else f"{r.heldout_exact:.1%}"
        print(f"{prefix}done: {r.steps} steps in {r.wall_s:.1f} s; final loss {last.loss:.4f}; "
              f"teacher-forced token accuracy {last.token_accuracy:.1%}; held-out exact sequences {held}"
              + ("; diverged" if r.diverged else ""))
        for target in (0.9, 0.99):
            reached = steps_to_reach(history, target)
            print(f"  held-out ≥ {target:.0%}: " + (f"at step {reached}" if reached else "not reached"))
    s = summary(results, wall_s)
    if len(results) > 1 and s["heldout_exact_mean"] is not None:
        spread = f" ± {s['heldout_exact_sd']:.1%}" if s["heldout_exact_sd"] is not None else ""
        print(f"{len(results)} seeds in {wall_s:.1f} s: held-out exact sequences {s['heldout_exact_mean']:.1%}{spread} "
              f"(min {s['heldout_exact_min']:.1%}, max {s['heldout_exact_max']:.1%})")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        run = _make_run(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"error: argument {_flag(error.field)}: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.json:
        print(f"task {args.task}, {run.model_of(run.seeds[0]).parameter_count():,} parameters per seed, "
              f"seeds {','.join(map(str, run.seeds))}, switches {run.switches.to_json()}")
    started = time.perf_counter()
    for metrics in run:
        _progress(run, metrics, args, started)
        for m in metrics:
            if m.diverged:
                print(f"\nseed {m.seed}: loss is not finite: the run diverged", file=sys.stderr)
    wall_s = time.perf_counter() - started
    print(file=sys.stderr)
    results = [run.results[s] for s in run.seeds if s in run.results]
    if args.json:
        for r in results:
            print(json.dumps({"seed": r.seed, "steps": r.steps, "reached_at": r.reached_at,
                              "heldout_exact": r.heldout_exact, "heldout_token": r.heldout_token,
                              "wall_s": round(r.wall_s, 2)}))
        print(json.dumps({"summary": summary(results, wall_s)}))
    else:
        _report(run, results, wall_s)
    if args.out:
        for path in _save(run, args.out):
            print(f"saved {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
