"""A GPT reading a text writes on from the typed line, each token drawn with a temperature: a few samples, each
from a seed of its own, so the same state and temperature always show the same samples (and a shared link too)."""

from __future__ import annotations

import torch

from app.playground.registry import load_model
from app.playground.state import PlaygroundState
from app.web.errors import BadInput
from model.config import ModelConfig
from model.families import sampled_continue
from model.tasks import BOS, EOS, PAD, Task
from model.tasks.text import MASK_ID, SAMPLED_CHARACTERS

SAMPLES = 3
MAX_TEMPERATURE = 2.0


def samples(state: PlaygroundState, temperature: float) -> list[str]:
    """SAMPLES continuations of the state's line (seeds 1…SAMPLES); BadInput for a model that writes no text."""
    model, task, _ = load_model(state.model)
    if not writes_text(task, model.config):
        raise BadInput("model", f"{state.model} writes no text: sampling is for a GPT (decoder_only) on a text task")
    model.eval()
    prompt = torch.tensor([task.src_tokenizer.encode(state.input)])
    never = (PAD, BOS, EOS, MASK_ID)  # no character of the text: a continuation is characters only
    drawn = [sampled_continue(model, prompt, SAMPLED_CHARACTERS, temperature, seed, state.switches, never)
             for seed in range(1, SAMPLES + 1)]
    return [task.tgt_tokenizer.decode(ids[0].tolist()) for ids in drawn]


def writes_text(task: Task, config: ModelConfig) -> bool:
    """A GPT reading a text: what it writes after a line can be sampled."""
    return task.reads_text and config.arch == "decoder_only"
