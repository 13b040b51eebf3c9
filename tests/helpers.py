"""What several test files share: finding English words in Chinese text, and fake sweeps in a run store
(runs with made-up metrics, stored the way the job runner stores them)."""

import asyncio
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from app.lab.precompute import PLANS
from app.lab.runs import RunSpec
from app.lab.store import RunStore
from app.lab.sweeps import sweep_items
from app.web.settings import Settings
from model.config import Switches, TrainConfig
from model.tasks import get_task
from model.train import model_config_for

# ---- English words in Chinese text ------------------------------------------------------------------

# What may stay in Latin letters on a Chinese page: names of models, sweeps, variants, switches, hooks and
# commands (identifiers a student types or looks up), and a few names, formula symbols and terms Chinese
# texts keep too (LayerNorm(x + Sublayer(x)) is the paper's formula).
ALLOWED_IDENTIFIERS = re.compile(r"""(?x)
    (reverse-(post|pre)|en-numbers|zh-numbers)-\dx\d | depth-residual-norm | pe-every-layer | batch-vs-layer-norm
  | depth-12 | position-encodings | causal-mask-off | learned_pe | no_pe | no_residual_keep_cross
  | post_ln_pe_every_layer | pre_ln_xavier | no_norm_xavier
  | (causal_mask|pos_encoding|pos_every_layer|norm|memory|residual)=\w+ | fan[_-](in|out)
  | pre_ln | post_ln | post_ln_warmup | no_residual | no_norm | pe_every_layer | batch_norm | no_causal_mask
  | (encoder\.\d+\.)?hook_\w+ | cross_attn\.hook_k | pos_every_layer | pos_encoding=none | causal_mask
  | memory=(final|same_depth) | norm=batch | rotation_for_offset | d_model | float32 | (Post|Pre)-LN
  | python | app\.lab\.precompute | app\.teaching\.verdicts
""")
ALLOWED_WORDS = {"LayerNorm", "BatchNorm", "Adam", "Xavier", "Glorot", "GPT", "BERT", "Transformer", "RoPE",
                 "Santurkar", "Xiong", "Wilson", "logits", "Sublayer", "sin", "cos", "max", "pos",
                 "addnorm", "PyTorch", "API", "English"}  # every page: app name, API link, language switch
# Whole pages also hold terms Chinese technical writing keeps in English, cited authors, the study note's
# own English glosses (quoted), model names (LLaMA) and the English-number task's inputs ("three hundred twelve").
TERMS_KEPT_IN_CHINESE = {"Add", "Norm", "logit", "lens", "teacher", "forcing", "softmax", "ReLU", "RMSNorm", "JSON",
                         "notebook", "memory", "bos", "eos", "Glorot", "ALiBi", "ICS",
                         "Ioffe", "Szegedy", "Xiong", "Tenney", "Haviv", "Press",
                         "Residual", "Connection", "Positional", "Encoding", "Token", "Embedding", "SubLayer",
                         "three", "hundred", "twelve", "LLaMA"}


@contextmanager
def serving(settings: Settings, what: str = "the test server") -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, on a thread; yields its base URL."""
    import uvicorn

    from app.factory import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60  # worker processes warm every zoo model first
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def english_words(text: str) -> list[str]:
    """The English words of a text meant to be Chinese: runs of three or more Latin letters, except in the
    identifiers and words allowed above."""
    found = []
    for token in re.findall(r"[A-Za-z0-9_.=\-]*[A-Za-z]{3,}[A-Za-z0-9_.=\-]*", text):
        token = token.strip(".-=")
        if not ALLOWED_IDENTIFIERS.fullmatch(token):
            found += [word for word in re.findall(r"[A-Za-z]{3,}", token) if word not in ALLOWED_WORDS]
    return found


def visible_text(html: str) -> str:
    """What a reader sees of a page: no scripts, styles, comments, tags or attribute values."""
    html = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)
    html = re.sub(r"(?s)<!--.*?-->", " ", html)
    text = re.sub(r"<[^>]+>", " ", html)  # attribute values go with their tags
    return text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'")


def english_words_on_page(html: str) -> list[str]:
    """The English words a reader of a Chinese page sees, leaving out formulas (KaTeX source) and the
    terms kept in English. A sublayer's API name (encoder.0.ffn, decoder.1.cross_attn) is an identifier:
    left out too."""
    text = re.sub(r"(?s)\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)", " ", visible_text(html))
    text = re.sub(r"\b(?:encoder|decoder)\.\d+(?:\.[a-z_]+)?", " ", text)
    return [word for word in english_words(text) if word not in TERMS_KEPT_IN_CHINESE]


def fresh_claims(client, timeout: float = 60.0) -> dict:
    """/api/claims once the verdicts are measured for the store as it is (they are measured off the request)."""
    import time

    deadline = time.time() + timeout
    while True:
        report = client.get("/api/claims").json()
        if report["fresh"]:
            return report
        assert time.time() < deadline, "the claims were not measured in time"
        time.sleep(0.2)


# ---- fake sweeps ----------------------------------------------------------------------------------


def spec_with(task: str = "reverse", seed: int = 0, **switches) -> RunSpec:
    """A run of `task` at the lab's default sizes, with the given switches."""
    return RunSpec(model_config_for(get_task(task)), Switches(**switches), TrainConfig(task=task, seed=seed))


def rows(depth: int, acc: float = 1.0, reach: int | None = 100, steps: int = 600, noise: float = 0.0,
         drift: float = 0.0, grad_ratio: float = 2.0) -> list[dict]:
    out = []
    for step in range(10, steps + 1, 10):
        reached = reach is not None and step >= reach
        layers = {stack: list(range(depth)) for stack in ("encoder", "decoder")}
        out.append({
            "step": step, "loss": 2.0 * math.exp(-step / 100) + 0.01 + noise * (-1) ** (step // 10),
            "token_accuracy": 0.9, "lr": 1e-3, "grad_norm": 1.0, "elapsed_s": step / 10, "diverged": False,
            "layer_grad_norms": {s: [0.01 * (grad_ratio - (grad_ratio - 1) * i / max(depth - 1, 1)) for i in ls]
                                 for s, ls in layers.items()},
            "layer_input_mean": {s: [0.0 for _ in ls] for s, ls in layers.items()},
            "layer_input_std": {s: [1.0 + drift * (i + 1) * step / steps for i in ls] for s, ls in layers.items()},
            "heldout_seq_accuracy": acc if step == steps else (0.995 if reached else 0.3 * acc),
            "heldout_token_accuracy": acc,
        })
    return out


GOOD = {"acc": 1.0, "reach": 100}


def fill_sweep(store: RunStore, plan: str, cells: dict, seeds: tuple[int, ...] = (0,)) -> None:
    """cells: {(variant, depth): keyword arguments of rows, the same for every seed, or a list of them, one per
    seed (None: that seed unrun)}; cells not given stay unrun."""
    base, depths, variants = PLANS[plan]
    items = sweep_items(base, depths, variants, Settings(), seeds)
    store.create_sweep(plan, items)
    for item in items:
        per_seed = cells.get((item["variant"], item["depth"]))
        if per_seed is None:
            continue
        for seed, kwargs in zip(seeds, per_seed if isinstance(per_seed, list) else [per_seed] * len(seeds),
                                strict=True):
            if kwargs is not None:
                kwargs = dict(kwargs)
                probes = kwargs.pop("probes", None)
                run = store.create(item["spec"].with_seed(seed))
                store.add_metrics(run.id, rows(item["depth"], **kwargs))
                if probes is not None:
                    store.set_probes(run.id, probes)
                store.finish(run.id, "done")


def long_probe(seq: float, token: float = 0.5) -> dict:
    """What model.train.probes stores for a run's accuracy on inputs longer than in training."""
    return {"long_inputs": {"min_len": 11, "max_len": 14, "trained_max_len": 10, "inputs": 100,
                            "seq_accuracy": seq, "token_accuracy": token}}


def batch_probe(running: float, alone: float, padding: float | None = None) -> dict:
    """What model.train.probes stores for a BatchNorm run used with each kind of statistics."""
    return {"batch_statistics": {"inputs": 100, "running_statistics": running, "batch_of_100": running,
                                 "alone": alone, "batch_of_100_padding_counted": alone if padding is None else padding}}


def position_cells(sinusoidal: float, learned: float, none: float = 0.0) -> dict:
    return {("pre_ln", 2): {**GOOD, "probes": long_probe(sinusoidal)},
            ("learned_pe", 2): {**GOOD, "probes": long_probe(learned)},
            ("no_pe", 2): {"acc": 0.05, "reach": None, "probes": long_probe(none)}}


def batch_norm_cells(running: float, alone: float, layer_acc: float = 1.0) -> dict:
    return {("pre_ln", 2): {"acc": layer_acc, "reach": 100},
            ("batch_norm", 2): {"acc": running, "reach": None, "probes": batch_probe(running, alone)}}


def depth_cells(**changes) -> dict:
    cells = {(v, d): dict(GOOD) for v in PLANS["depth-residual-norm"][2] for d in (2, 4, 6)}
    for key, value in changes.items():
        variant, depth = key.rsplit("_", 1)
        cells[(variant, int(depth))] = value
    return cells


STORE_CLAIMS = ("R1", "R2", "R3", "R4", "R5", "N2", "N3", "N4", "N5", "P2", "P4")


def stored_claim_verdicts(tmp_path) -> list:
    """Verdicts of the claims that read the run store, from empty, partial and filled stores chosen so that
    every optional sentence of their summaries appears at least once."""
    from app.teaching.claims import measure

    failing = {"acc": 0.2, "reach": None}
    stores = {
        "empty": {},
        "partial": {"depth-residual-norm": {("pre_ln", 2): dict(GOOD)}},
        "good": {"depth-residual-norm": depth_cells(),
                 "pe-every-layer": {(v, d): dict(GOOD) for v in ("pre_ln", "pe_every_layer") for d in (2, 4)},
                 "position-encodings": position_cells(0.95, 0.5), "batch-vs-layer-norm": batch_norm_cells(1.0, 0.1)},
        "failing": {"depth-residual-norm": depth_cells(
            **{f"no_residual_{d}": failing for d in (2, 4, 6)}, post_ln_6=failing, no_norm_6={**failing, "drift": 2.0},
            no_norm_2={"acc": 1.0, "reach": 200}, no_norm_4={"acc": 1.0, "reach": 200},
            pre_ln_6={**GOOD, "drift": 1.0}),
            "pe-every-layer": {**{("pre_ln", d): dict(GOOD) for d in (2, 4)},
                               **{("pe_every_layer", d): {"acc": 0.5, "reach": None, "noise": 0.3} for d in (2, 4)}},
            "position-encodings": position_cells(0.05, 0.04), "batch-vs-layer-norm": batch_norm_cells(0.5, 0.1)},
        "near30": {"depth-residual-norm": depth_cells(**{f"no_residual_{d}": {"acc": 1.0, "reach": 140}
                                                         for d in (2, 4, 6)}),
                   "pe-every-layer": {**{("pre_ln", d): dict(GOOD) for d in (2, 4)},
                                      **{("pe_every_layer", d): {**GOOD, "noise": 0.05} for d in (2, 4)}},
                   "position-encodings": position_cells(0.7, 0.8), "batch-vs-layer-norm": batch_norm_cells(1.0, 1.0)},
        "shallow": {"depth-residual-norm": {(v, d): dict(GOOD) for v in PLANS["depth-residual-norm"][2]
                                            for d in (2, 4)}},
    }
    verdicts = []
    for name, plans in stores.items():
        with RunStore(tmp_path / f"{name}.sqlite3") as store:
            for plan, cells in plans.items():
                fill_sweep(store, plan, cells)
            if name == "failing":
                run = store.create(spec_with(causal_mask=False))
                store.add_metrics(run.id, [{**row, "heldout_seq_accuracy": 0.04} for row in rows(2)])
                store.finish(run.id, "done")
                verdicts.append(measure("D3", store))
            verdicts += [measure(claim, store) for claim in STORE_CLAIMS]
    return verdicts


def run_async(main):
    """asyncio.run(main) on a thread of its own: a browser test's Playwright leaves an event loop running on
    the test thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main).result()


# The titles of drawn figures that run past their figure's right edge (Plotly cuts them off there).
CLIPPED_TITLES = """() => [...document.querySelectorAll('.plot[data-rendered=true]')]
  .filter((plot) => plot.offsetParent !== null)
  .flatMap((plot) => {
    const svg = plot.querySelector('.main-svg'), title = plot.querySelector('.gtitle');
    if (!svg || !title) return [];
    return title.getBoundingClientRect().right > svg.getBoundingClientRect().right + 1 ? [title.textContent] : [];
  })"""
