"""Command line for model.train: every switch is a flag; several seeds train together.

    python -m model.train --task reverse --layers 2 --seeds 0-4 --steps 600 --stop-at 0.99 --json
    python -m model.train --arch decoder_only --task reverse --layers 2 --seeds 0-2

With one seed it shows a progress bar and a summary; with --json it prints one JSON line per seed
(seed, steps, reached_at, heldout_exact, heldout_token, wall_s) and a last line {"summary": …}.
A bad value is refused in one line that names the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

from model.checkpoint import save_checkpoint
from model.config import ConfigError, ModelConfig, Switches, TrainConfig, choices_of, help_of, type_of
from model.tasks import TASKS, get_task
from model.train import MultiSeedRun, SeedResult, model_config_for, steps_to_reach

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


# Flags come from the schema in model/config.py: one per field, named --field-name unless FLAG_OF says otherwise.
SWITCH_FLAGS = [f.name for f in fields(Switches)]
TRAIN_FLAGS = ["steps", "batch_size", "lr", "warmup_steps", "grad_clip", "init", "eval_every", "eval_size", "stop_at"]
SIZE_FLAGS = ["arch", "d_model", "n_heads", "d_ff"]


def _add_setting(p: argparse.ArgumentParser, cls: type, name: str, **overrides) -> None:
    """One flag for one config field: its type, choices, default and help, all from the field's declaration."""
    kind = type_of(cls, name)
    field = next(f for f in fields(cls) if f.name == name)
    options = {"dest": name, "default": field.default, "help": help_of(cls, name)}
    if kind is bool:
        options.update(type=_on_off, metavar="on|off")
    elif choices_of(cls, name):
        options.update(choices=choices_of(cls, name))
    elif kind in (int, float):
        options.update(type=kind)
    elif name == "residual_off":
        options.update(default="")
    p.add_argument(_flag(name), **(options | overrides))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m model.train", description="Train a small switchable Transformer on one or more seeds.")
    _add_setting(p, TrainConfig, "task", choices=sorted(TASKS))
    p.add_argument("--layers", type=int, default=2, help="layers of each stack (a GPT has a decoder only, a BERT an "
                                                          "encoder only)")
    p.add_argument("--encoder-layers", dest="n_encoder_layers", type=int, help="overrides --layers for the encoder")
    p.add_argument("--decoder-layers", dest="n_decoder_layers", type=int, help="overrides --layers for the decoder")
    for name in SIZE_FLAGS:
        _add_setting(p, ModelConfig, name)
    for name in SWITCH_FLAGS:
        _add_setting(p, Switches, name)
    for name in TRAIN_FLAGS:
        _add_setting(p, TrainConfig, name)
    p.add_argument("--seeds", "--seed", type=parse_seeds, default=[0], metavar="N|A-B|A,B,…",
                   help="seeds trained together, e.g. 0-4")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="one JSON line per seed, then a summary line")
    p.add_argument("--out", default=None, help="checkpoint path (.pt); with several seeds, -seed<N> is added")
    return p


def _flag(field: str) -> str:
    return FLAG_OF.get(field, "--" + field.replace("_", "-"))


def _make_run(args) -> MultiSeedRun:
    switches = Switches(**{name: getattr(args, name) for name in SWITCH_FLAGS})
    train = {name: getattr(args, name) for name in TRAIN_FLAGS}
    train_config = TrainConfig(task=args.task, seed=args.seeds[0], **train)
    model_config = model_config_for(
        get_task(args.task), **{name: getattr(args, name) for name in SIZE_FLAGS},
        n_encoder_layers=args.n_encoder_layers or args.layers, n_decoder_layers=args.n_decoder_layers or args.layers,
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
    held_loss = [m.heldout_loss for m in metrics if m.heldout_loss is not None]
    loss = statistics.fmean(m.loss for m in metrics)
    seeds = f"seeds training {len(metrics)}/{len(run.seeds)}  " if len(run.seeds) > 1 else ""
    held_text = f"seq {statistics.fmean(held):.1%}" if held else "seq —"
    if run.task.reads_text:
        held_text = f"{statistics.fmean(held_loss) / math.log(2):.3f} bits/char" if held_loss else "bits/char —"
    rate = step / max(time.perf_counter() - started, 1e-9)
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"{_bar(step, args.steps)} step {step}/{args.steps} {seeds}loss {loss:.4f} held-out {held_text}  "
          f"{rate:.1f} steps/s", end=end, file=sys.stderr, flush=True)


def summary(results: list[SeedResult], wall_s: float) -> dict:
    exact = [r.heldout_exact for r in results if r.heldout_exact is not None]
    reached = [r.reached_at for r in results if r.reached_at is not None]
    losses = [r.heldout_loss for r in results if r.heldout_loss is not None]
    return {
        "seeds": [r.seed for r in results],
        "heldout_exact_mean": statistics.fmean(exact) if exact else None,
        "heldout_exact_sd": statistics.stdev(exact) if len(exact) > 1 else None,
        "heldout_exact_min": min(exact, default=None),
        "heldout_exact_max": max(exact, default=None),
        "heldout_bits_per_char_mean": statistics.fmean(losses) / math.log(2) if losses else None,
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
        if r.heldout_loss is not None:  # a corpus: no whole answer, a loss per character
            held = (f"{r.heldout_loss / math.log(2):.3f} bits per character, the most likely character right "
                    f"{r.heldout_token:.1%} of the time")
        scored = "held-out" if r.heldout_loss is not None else "held-out exact sequences"
        print(f"{prefix}done: {r.steps} steps in {r.wall_s:.1f} s; final loss {last.loss:.4f}; "
              f"teacher-forced token accuracy {last.token_accuracy:.1%}; {scored} {held}"
              + ("; diverged" if r.diverged else ""))
        if r.heldout_loss is not None:
            continue
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
        print(f"error: argument {_flag(error.field)}: {error.message}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.json:
        print(f"{args.arch}, task {args.task}, {run.model_of(run.seeds[0]).parameter_count():,} parameters per seed, "
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
                              "heldout_loss": r.heldout_loss,
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
