"""Why Post-LN needs warm-up (Xiong et al., 2020, Fig. 3): at initialisation, the gradient of each decoder
layer's weights, Post-LN against Pre-LN, on freshly initialised models of the precomputed sweep's size.
Measured on several seeds; no training involved, so it needs no stored run."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import torch

from app.lab.precompute import BASE, SEEDS
from app.teaching.claims.common import heldout_batch
from model.config import Switches
from model.tasks import PAD, get_task
from model.train import new_model

DEPTH = 6


def decoder_weight_gradients(norm_position: str, seed: int, depth: int = DEPTH) -> list[float]:
    """‖∂loss/∂W‖ over all the weights of each decoder layer, first layer first, at initialisation."""
    config = replace(BASE.model, n_encoder_layers=depth, n_decoder_layers=depth)
    switches = Switches(norm_position=norm_position)
    model = new_model(config, switches, seed, BASE.train.init)
    batch = heldout_batch(get_task(BASE.task))
    with torch.enable_grad():
        logits = model(batch.src, batch.tgt_in, switches)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        layers = list(model.decoder.layers())
        grads = torch.autograd.grad(loss, [p for layer in layers for p in layer.parameters()])
    norms, i = [], 0
    for layer in layers:
        count = len(list(layer.parameters()))
        norms.append(torch.sqrt(sum(g.pow(2).sum() for g in grads[i:i + count])).item())
        i += count
    return norms


@cache  # deterministic, and a few seconds: measured once per process
def last_over_first(norm_position: str, seeds: tuple[int, ...] = SEEDS) -> tuple[float, ...]:
    """Per seed: the last decoder layer's weight-gradient norm over the first one's."""
    ratios = []
    for seed in seeds:
        norms = decoder_weight_gradients(norm_position, seed)
        ratios.append(norms[-1] / norms[0])
    return tuple(ratios)
