"""The training engine's figures, each against a baseline measured in the same run.

    python benchmarks/bench_engine.py [--quick] [--repeats 3]

Prints: five seeds trained together vs one seed (2+2 and 6+6, wall per step) and the compute floor
(one seed with a five times larger batch); one seed's training step vs torch.nn.Transformer trained
by a bare loop; a plain batch-1 forward vs torch.nn.Transformer; the default 2+2 model trained to 99%
held-out exact answers; peak memory of five seeds of 6+6; and (unless --quick) every precomputed
sweep the lessons and claims need, five seeds each, from an empty store with one command.
Training figures use one thread, as a training worker does. Check `uptime` first: the machine is shared.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_model import TorchReference, median_ms  # noqa: E402

from model.config import Switches  # noqa: E402
from model.tasks import PAD, get_task  # noqa: E402
from model.train import MultiSeedRun, TrainConfig, TrainingRun, model_config_for  # noqa: E402
from model.transformer import Seq2Seq  # noqa: E402

TASK = get_task("reverse")
PRE_LN = Switches(norm_position="pre")
NO_EVAL = 100_000


def config(depth: int):
    return model_config_for(TASK, n_encoder_layers=depth, n_decoder_layers=depth)


def engine_ms_per_step(depth: int, seeds: int, batch_size: int = 64, steps: int = 25) -> float:
    """Median wall time of one engine step (all seeds), after 5 warm-up steps."""
    run = MultiSeedRun(config(depth), PRE_LN, TrainConfig(steps=steps + 5, batch_size=batch_size, eval_every=NO_EVAL),
                       seeds=range(seeds))
    times, last = [], time.perf_counter()
    for metrics in run:
        now = time.perf_counter()
        times.append(now - last)
        last = now
        if metrics[0].step == steps + 4:
            break
    return 1000 * statistics.median(times[5:])


def reference_ms_per_step(depth: int, steps: int = 25) -> float:
    """torch.nn.Transformer of the same size, trained by the textbook loop on the same batches."""
    torch.manual_seed(0)
    model = TorchReference(config(depth))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = random.Random(0)
    times = []
    for _ in range(steps + 5):
        start = time.perf_counter()
        batch = TASK.batch(rng, 64)
        logits = model(batch.src, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[5:])


def medians(fn, repeats: int) -> tuple[float, list[float]]:
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def bench_seeds(repeats: int) -> None:
    for depth in (2, 6):
        one, ones = medians(lambda d=depth: engine_ms_per_step(d, 1), repeats)
        five, fives = medians(lambda d=depth: engine_ms_per_step(d, 5), repeats)
        floor, _ = medians(lambda d=depth: engine_ms_per_step(d, 1, batch_size=5 * 64), repeats)
        print(f"{depth}+{depth}: 5 seeds together {five:.1f} ms/step vs 1 seed {one:.1f} ms/step: {five / one:.2f}x "
              f"(target <= 2.5x); throughput {5 * one / five:.2f}x five runs one after another (target >= 2x)")
        runs = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(fives, ones, strict=True))
        print(f"      floor: 1 seed with a 5x batch costs {floor / one:.2f}x one seed (the compute five seeds "
              f"need without any batching overhead); 5 seeds/1 seed per repeat: {runs} ms")
    small_one, small_five = engine_ms_per_step(2, 1, batch_size=8), engine_ms_per_step(2, 5, batch_size=8)
    print(f"2+2, batch 8 (where per-op overhead, not arithmetic, dominates a step): 5 seeds together "
          f"{small_five:.1f} ms/step = {small_five / small_one:.2f}x one seed")
    torch.set_num_threads(2)
    two = engine_ms_per_step(2, 5)
    torch.set_num_threads(1)
    one = engine_ms_per_step(2, 1)
    print(f"2+2: 5 seeds together on both cores (2 threads) {two:.1f} ms/step = {two / one:.2f}x one seed on one")


def bench_step_vs_torch(repeats: int) -> None:
    ours, _ = medians(lambda: engine_ms_per_step(2, 1), repeats)
    reference, _ = medians(lambda: reference_ms_per_step(2), repeats)
    print(f"1 seed, 2+2, batch 64: our training step {ours:.1f} ms vs torch.nn.Transformer bare loop "
          f"{reference:.1f} ms: {ours / reference:.2f}x (target <= 1.3x)")


def bench_forward() -> None:
    cfg = config(2)
    ours, reference = Seq2Seq(cfg, Switches()).eval(), TorchReference(cfg).eval()
    src = torch.randint(3, cfg.src_vocab_size, (1, 10))
    tgt = torch.randint(3, cfg.tgt_vocab_size, (1, 11))
    with torch.no_grad():
        ratios = []
        for _ in range(5):
            ratios.append(median_ms(lambda: ours(src, tgt)) / median_ms(lambda: reference(src, tgt)))
    print(f"plain forward, batch 1, 2+2: ours / torch.nn.Transformer {statistics.median(ratios):.2f}x "
          f"(target <= 1.2x; five medians {', '.join(f'{r:.2f}' for r in ratios)})")


def bench_default_model() -> None:
    """The default zoo recipe (reverse, 2+2, Post-LN, Adam 1e-3, batch 64), seed 0, until 99% held-out."""
    cfg = TrainConfig(task="reverse", steps=1500, eval_every=50, stop_at=0.99)
    run = TrainingRun(config(2), Switches(), cfg)
    started = time.perf_counter()
    history = list(run)
    seconds = time.perf_counter() - started
    print(f"default 2+2 model to 99% held-out exact answers: {seconds:.1f} s, {history[-1].step} steps "
          f"(held-out {history[-1].heldout_seq_accuracy:.1%}; target <= 10 s)")


MEMORY_SCRIPT = """
import resource, sys, torch
torch.set_num_threads(1)
from model.config import Switches
from model.tasks import get_task
from model.train import MultiSeedRun, TrainConfig, model_config_for
if sys.argv[1] == "train":
    config = model_config_for(get_task("reverse"), n_encoder_layers=6, n_decoder_layers=6)
    run = MultiSeedRun(config, Switches(norm_position="pre"), TrainConfig(steps=20, eval_every=20), range(5))
    for _ in run:
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_memory() -> None:
    root = Path(__file__).resolve().parents[1]

    def peak(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, mode], capture_output=True, text=True, cwd=root)
        return float(out.stdout.strip().splitlines()[-1])

    idle, trained = peak("idle"), peak("train")
    print(f"peak memory, 5 seeds of 6+6 (20 steps and a held-out evaluation): {trained:.0f} MB "
          f"(target <= 1024 MB); the same process with torch imported and nothing trained: {idle:.0f} MB")


def bench_sweeps(data_dir: str | None) -> None:
    from app.lab.precompute import PLANS, SEEDS, precompute
    from app.lab.store import RunStore
    from app.web.settings import Settings

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(data_dir or scratch)
        started = time.perf_counter()
        with RunStore(directory / "runs.sqlite3") as store:
            ids = precompute(store, PLANS, workers=2, settings=Settings(data_dir=directory),
                             log=lambda *a, **k: print(*a, **k, file=sys.stderr))
            minutes = (time.perf_counter() - started) / 60
            runs = [store.get(i) for i in sorted({i for plan in ids.values() for i in plan})]
            print(f"every precomputed sweep ({len(PLANS)} plans: {len(runs) // len(SEEDS)} configurations x "
                  f"{len(SEEDS)} seeds = {len(runs)} runs, {sum(r.steps_done for r in runs):,} seed-steps) from an "
                  f"empty store, 2 worker processes: {minutes:.1f} min (target <= 20 min)")
            _print_outcomes(runs)


def _print_outcomes(runs) -> None:
    """Per configuration: how many seeds reached 99% held-out and when, and the final held-out accuracy."""
    by_config: dict[str, list] = {}
    for run in runs:
        spec = run.spec
        name = (f"{spec.model.n_encoder_layers}+{spec.model.n_decoder_layers} "
                f"{run.label.split(':', 1)[-1].split('×')[0].strip()}")
        by_config.setdefault(name, []).append(run)
    for name, group in sorted(by_config.items()):
        reached = sorted(r.steps_done for r in group if (r.final or {}).get("heldout_seq_accuracy", 0) >= 0.99)
        finals = [(r.final or {}).get("heldout_seq_accuracy") or 0.0 for r in group]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        print(f"  {name:28s} reached 99%: {len(reached)}/{len(group)} seeds"
              f"{f' (median step {statistics.median(reached):.0f})' if reached else ''}; "
              f"final held-out {statistics.fmean(finals):.1%} ± {spread:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the sweeps (about 20 minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", help="keep the sweeps' run store here (default: a temporary directory)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread unless said")
    bench_forward()
    bench_step_vs_torch(args.repeats)
    bench_seeds(args.repeats)
    bench_default_model()
    bench_memory()
    if not args.quick:
        bench_sweeps(args.data_dir)


if __name__ == "__main__":
    main()
