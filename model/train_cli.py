"""Command line for model.train: every switch is a flag; a progress bar; a summary at the end."""

from __future__ import annotations

import argparse
import sys
import time

from model.config import ConfigError, Switches
from model.tasks import TASKS, get_task
from model.train import TrainConfig, TrainingRun, model_config_for, steps_to_reach


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use on or off")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.train", description="Train a small switchable Transformer.")
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
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-size", type=int, default=200)
    p.add_argument("--stop-at", type=float, default=None, help="stop once held-out sequence accuracy reaches this")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="checkpoint path (.pt)")
    return p


def _bar(done: int, total: int, width: int = 28) -> str:
    filled = int(width * done / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        switches = Switches(
            residual=args.residual,
            residual_off=args.residual_off,
            norm=args.norm,
            norm_position=args.norm_position,
            pos_encoding=args.pos_encoding,
            pos_every_layer=args.pos_every_layer,
            causal_mask=args.causal_mask,
            memory=args.memory,
        )
        train_config = TrainConfig(
            task=args.task, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            warmup_steps=args.warmup, seed=args.seed, eval_every=args.eval_every, eval_size=args.eval_size,
        )
        model_config = model_config_for(
            get_task(args.task), d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff,
            n_encoder_layers=args.encoder_layers or args.layers, n_decoder_layers=args.decoder_layers or args.layers,
        )
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    run = TrainingRun(model_config, switches, train_config)
    print(f"task {args.task}, {run.model.parameter_count():,} parameters, switches {switches.to_json()}")
    seq_acc = None
    started = time.perf_counter()
    for m in run:
        if m.heldout_seq_accuracy is not None:
            seq_acc = m.heldout_seq_accuracy
        if sys.stderr.isatty() or m.step % max(1, args.eval_every) == 0 or m.step == args.steps:
            held = "—" if seq_acc is None else f"{seq_acc:.1%}"
            end = "\r" if sys.stderr.isatty() else "\n"
            print(f"{_bar(m.step, args.steps)} step {m.step}/{args.steps} loss {m.loss:.4f} "
                  f"tok {m.token_accuracy:.1%} held-out seq {held}  {m.step / m.elapsed_s:.1f} steps/s",
                  end=end, file=sys.stderr, flush=True)
        if m.diverged:
            print("\nloss is not finite: the run diverged", file=sys.stderr)
        if args.stop_at is not None and seq_acc is not None and seq_acc >= args.stop_at:
            break
    elapsed = time.perf_counter() - started
    last = run.history[-1]
    print(file=sys.stderr)
    print(f"done: {last.step} steps in {elapsed:.1f} s; final loss {last.loss:.4f}; "
          f"teacher-forced token accuracy {last.token_accuracy:.1%}; "
          f"held-out exact sequences {seq_acc if seq_acc is None else f'{seq_acc:.1%}'}")
    for target in (0.9, 0.99):
        reached = steps_to_reach(run.history, target)
        print(f"  held-out ≥ {target:.0%}: " + (f"at step {reached}" if reached else "not reached"))
    if args.out:
        run.save(args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
