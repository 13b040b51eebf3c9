"""Model performance figures, as ratios against baselines measured in the same run.

    python benchmarks/bench_model.py [--threads 1]

Prints: our plain forward vs torch.nn.Transformer of the same size (batch 1); the GPT stack's forward and
training step vs torch.nn.TransformerEncoder with a causal mask; a full trace vs a plain forward of the default
zoo model; training steps/s at depth 2, 4, 6; checkpoint sizes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import Switches  # noqa: E402
from model.tasks import get_task  # noqa: E402
from model.trace import trace, trace_size  # noqa: E402
from model.train import TrainConfig, TrainingRun, model_config_for  # noqa: E402
from model.zoo import default_entry, load_manifest, load_zoo_model  # noqa: E402


def median_ms(fn, repeats: int = 200, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class TorchReference(torch.nn.Module):
    """torch.nn.Transformer with the same embeddings, positions and unembedding as ours."""

    def __init__(self, config):
        super().__init__()
        self.src_embed = torch.nn.Embedding(config.src_vocab_size, config.d_model)
        self.tgt_embed = torch.nn.Embedding(config.tgt_vocab_size, config.d_model)
        self.pos = torch.nn.Parameter(torch.zeros(config.max_len, config.d_model))
        self.core = torch.nn.Transformer(
            d_model=config.d_model, nhead=config.n_heads, num_encoder_layers=config.n_encoder_layers,
            num_decoder_layers=config.n_decoder_layers, dim_feedforward=config.d_ff, dropout=0.0, batch_first=True,
        )
        self.unembed = torch.nn.Linear(config.d_model, config.tgt_vocab_size)

    def forward(self, src, tgt):
        mask = self.core.generate_square_subsequent_mask(tgt.size(1))
        s = self.src_embed(src) + self.pos[: src.size(1)]
        t = self.tgt_embed(tgt) + self.pos[: tgt.size(1)]
        return self.unembed(self.core(s, t, tgt_mask=mask, tgt_is_causal=True))


def bench_forward(config) -> None:
    from model.transformer import Seq2Seq

    ours = Seq2Seq(config, Switches()).eval()
    reference = TorchReference(config).eval()
    src = torch.randint(3, config.src_vocab_size, (1, 10))
    tgt = torch.randint(3, config.tgt_vocab_size, (1, 11))
    with torch.no_grad():
        ours_ms = median_ms(lambda: ours(src, tgt))
        ref_ms = median_ms(lambda: reference(src, tgt))
    print(f"plain forward, batch 1, {config.n_encoder_layers}+{config.n_decoder_layers} layers, d_model "
          f"{config.d_model}: ours {ours_ms:.3f} ms, torch.nn.Transformer {ref_ms:.3f} ms, "
          f"ratio {ours_ms / ref_ms:.2f}x (target <= 1.2x)")


class CausalEncoderReference(torch.nn.Module):
    """torch.nn.TransformerEncoder with a causal mask, Pre-LN and a final norm (as GPT-2 and our GPT stack), with
    the same embedding, positions and unembedding as ours."""

    def __init__(self, config):
        super().__init__()
        n_layers = config.n_decoder_layers
        self.embed = torch.nn.Embedding(config.tgt_vocab_size, config.d_model)
        self.pos = torch.nn.Parameter(torch.zeros(config.max_len, config.d_model))
        layer = torch.nn.TransformerEncoderLayer(config.d_model, config.n_heads, config.d_ff, dropout=0.0,
                                                 batch_first=True, norm_first=True)
        self.core = torch.nn.TransformerEncoder(layer, n_layers, norm=torch.nn.LayerNorm(config.d_model),
                                                enable_nested_tensor=False)
        self.unembed = torch.nn.Linear(config.d_model, config.tgt_vocab_size)

    def forward(self, tokens):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.size(1))
        x = self.embed(tokens) + self.pos[: tokens.size(1)]
        return self.unembed(self.core(x, mask=mask, is_causal=True))


def _bare_step(model, tokens, targets, optimizer) -> None:
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def bench_gpt_stack() -> None:
    """The reverse GPT's size (4 layers, d_model 64): forward at batch 1, and a training step at batch 64 on
    sequences as long as its table, in a bare loop for both models, and through our trainer (TrainingRun: sampling,
    posing, gradient probes included)."""
    from model.families import OneStack

    entry = next(e for e in load_manifest() if e.arch == "decoder_only" and e.task == "reverse")
    config = entry.config
    ours, reference = OneStack(config, Switches(norm_position="pre")), CausalEncoderReference(config)
    tokens = torch.randint(3, config.tgt_vocab_size, (1, 20))
    ours.eval(), reference.eval()
    with torch.no_grad():
        ours_ms, ref_ms = median_ms(lambda: ours(tokens)), median_ms(lambda: reference(tokens))
    print(f"GPT stack forward, batch 1, {config.n_decoder_layers} layers, d_model {config.d_model}, 20 tokens: ours "
          f"{ours_ms:.3f} ms, nn.TransformerEncoder (causal) {ref_ms:.3f} ms, ratio {ours_ms / ref_ms:.2f}x "
          "(target <= 1.2x)")
    ours.train(), reference.train()
    batch = torch.randint(3, config.tgt_vocab_size, (64, config.max_len))
    targets = torch.randint(3, config.tgt_vocab_size, (64, config.max_len))
    steps = {}
    for name, model in (("ours", ours), ("reference", reference)):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps[name] = median_ms(lambda m=model, o=optimizer: _bare_step(m, batch, targets, o), repeats=40, warmup=5)
    run = TrainingRun(config, Switches(norm_position="pre"), TrainConfig(task="reverse", steps=40, eval_every=10_000))
    history = list(run)
    trainer_ms = 1000 * (history[-1].elapsed_s - history[9].elapsed_s) / 30  # steps 11..40: no start-up
    print(f"GPT training step, batch 64 x {config.max_len} tokens: ours in a bare loop {steps['ours']:.1f} ms, "
          f"nn.TransformerEncoder in a bare loop {steps['reference']:.1f} ms, ratio "
          f"{steps['ours'] / steps['reference']:.2f}x (target <= 1.1x); our trainer {trainer_ms:.1f} ms/step "
          f"(real sequences, padded to the batch's longest), {trainer_ms / steps['reference']:.2f}x")


def bench_trace() -> None:
    entry = default_entry()
    model, task, _ = load_zoo_model(entry.name)
    text = "3141592653"
    src = torch.tensor([task.src_tokenizer.encode(text)])
    tgt = torch.tensor([[1] + task.tgt_tokenizer.encode(text)])
    with torch.no_grad():
        plain_ms = median_ms(lambda: model(src, tgt), repeats=100)
    trace_ms = median_ms(lambda: trace(model, task, text), repeats=30, warmup=3)
    no_grad_ms = median_ms(lambda: trace(model, task, text, with_gradients=False), repeats=30, warmup=3)
    size = trace_size(trace(model, task, text))
    print(f"full trace of {entry.name} on a {len(text)}-digit input (encode, greedy decode, all stats, "
          f"gradients): {trace_ms:.1f} ms (target < 30 ms); without gradients {no_grad_ms:.1f} ms; "
          f"plain teacher-forced forward {plain_ms:.2f} ms; ratio {trace_ms / plain_ms:.0f}x; JSON {size:,} B")


def bench_training() -> None:
    task = get_task("reverse")
    rates = {}
    for depth in (2, 4, 6):
        config = model_config_for(task, n_encoder_layers=depth, n_decoder_layers=depth)
        run = TrainingRun(config, Switches(norm_position="pre"), TrainConfig(steps=30, eval_every=10_000))
        history = list(run)
        # steps 6..30, so start-up (first allocations) is not counted
        rates[depth] = 25 / (history[-1].elapsed_s - history[4].elapsed_s)
    base = rates[2]
    print("training (batch 64, reverse): " + ", ".join(
        f"depth {d}+{d}: {r:.1f} steps/s ({1000 / r:.0f} ms/step, {r / base:.2f}x depth 2)" for d, r in rates.items()))


def bench_sizes() -> None:
    for entry in load_manifest():
        print(f"checkpoint {entry.file}: {entry.size_bytes / 1e6:.2f} MB (limit 2 MB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    torch.manual_seed(0)
    config = default_entry().model_config
    from model.config import ModelConfig

    bench_forward(ModelConfig.from_dict(config))
    bench_gpt_stack()
    bench_trace()
    bench_training()
    bench_sizes()


if __name__ == "__main__":
    main()
