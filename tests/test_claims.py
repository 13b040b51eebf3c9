"""Every claim of the note is measured: zoo claims from the shipped models, training claims from the
runs in the store (not_measured without them, and computed from whatever metrics are stored)."""

import pytest
from helpers import GOOD, batch_norm_cells, position_cells, spec_with
from helpers import depth_cells as _depth_cells
from helpers import fill_sweep as _fill
from helpers import rows as _rows

from app.lab.runs import RunSpec
from app.lab.store import RunStore
from app.teaching.claims import CLAIMS, VERDICTS, measure
from app.teaching.claims.common import FLOAT32_FLOOR, GRADIENT_FLOOR, heldout_batch, noise_marker, zoo
from app.teaching.claims.render import render_text, verdict_view
from app.web.i18n import Translator, labels
from model.config import Switches
from model.tasks import get_task
from model.train import TrainConfig, model_config_for

CLAIM_IDS = ["R1", "R2", "R3", "R4", "R5", "N1", "N2", "N3", "N4", "N5", "E1", "E2",
             "P1", "P2", "P3", "P4", "P5", "D1", "D2", "D3", "D4"]
STORE_CLAIMS = ["R3", "R4", "N2", "N3", "N4", "N5", "P2", "P4"]
ZOO_CLAIMS = [c for c in CLAIM_IDS if c not in STORE_CLAIMS]
LESSONS = {"residual", "normalization", "encoder-stack", "positional-encoding", "decoder-stack",
           "training-vs-inference", "three-families"}


EN, ZH = Translator("en"), Translator("zh")


def en(text) -> str:
    return render_text(text, EN)


def test_every_claim_of_the_note_has_a_text_in_both_languages():
    assert set(CLAIMS) == set(CLAIM_IDS)
    for claim_id, kind in CLAIMS.items():
        for lang in ("en", "zh"):
            assert labels(lang)[f"claim.{claim_id}.statement"].strip(), claim_id
        assert kind in ("measurement", "construction"), claim_id


def test_an_unknown_claim_is_refused():
    with pytest.raises(KeyError, match="unknown claim"):
        measure("X9")


def _check_shape(v, claim_id):
    assert v.claim == claim_id and v.verdict in VERDICTS
    assert v.numbers and v.sources
    for t in (EN, ZH):
        summary, method = render_text(v.summary, t), render_text(v.method, t)
        assert summary.strip() and method.strip()
        assert "{" not in summary + method and "claim." not in summary + method  # every key and value found
    return v


@pytest.mark.parametrize("claim_id", ZOO_CLAIMS)
def test_zoo_claims_are_measured_without_a_store(claim_id):
    v = _check_shape(measure(claim_id), claim_id)
    assert v.verdict != "not_measured"
    assert any(ch.isdigit() for ch in en(v.summary)) and any(ch.isdigit() for ch in render_text(v.summary, ZH))


def test_the_pe_rotation_is_exact():
    v = measure("P3")
    assert v.verdict == "holds" and v.numbers["max_abs_error_all_offsets"] == noise_marker(FLOAT32_FLOOR)
    rows = {key: value for key, _, value in verdict_view(v, Translator("en"))["numbers"]}
    assert rows["max_abs_error_all_offsets"] == "below 1e-4 (rounding noise)"
    assert rows["d_model"] == str(v.numbers["d_model"])  # other figures as measured
    assert "低于 1e-4（舍入噪声）" in render_text(v.summary, ZH)  # shown as such, not as digits


@pytest.mark.parametrize("claim_id", STORE_CLAIMS)
def test_training_claims_are_not_measured_with_an_empty_store(tmp_path, claim_id):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        v = _check_shape(measure(claim_id, store), claim_id)
    assert v.verdict == "not_measured" and "app.lab.precompute" in en(v.summary)
    assert v.numbers["sweep_runs_done"] == 0


def _measure(tmp_path, name: str, claim_id: str, plan: str, cells: dict):
    with RunStore(tmp_path / f"{name}.sqlite3") as store:
        _fill(store, plan, cells)
        return _check_shape(measure(claim_id, store), claim_id)


def test_r3_follows_the_stored_accuracies(tmp_path):
    fails = {"acc": 0.1, "reach": None}
    fails_deep = _depth_cells(no_residual_keep_cross_6=fails, **{f"no_residual_{d}": fails for d in (2, 4, 6)})
    v = _measure(tmp_path, "a", "R3", "depth-residual-norm", fails_deep)
    assert v.verdict == "holds" and v.numbers["no_residual_keep_cross_depth6_heldout_accuracy"] == 0.1
    assert "sweep:depth-residual-norm" in v.sources
    assert "a bottleneck that has nothing to do with depth" in en(v.summary)  # judged with the cross skip kept
    fails_early = _depth_cells(**{f"no_residual_keep_cross_{d}": {"acc": 0.2, "reach": None} for d in (2, 4, 6)})
    v = _measure(tmp_path, "b", "R3", "depth-residual-norm", fails_early)
    assert v.verdict == "holds_with_caveats" and "2 layers" in en(v.summary)
    v = _measure(tmp_path, "c", "R3", "depth-residual-norm", _depth_cells())
    assert v.verdict == "does_not_hold" and v.numbers["no_residual_keep_cross_depth6_heldout_accuracy"] == 1.0


def test_r3_without_the_cross_skip_runs_is_judged_on_every_skip_cut(tmp_path):
    cells = {key: cell for key, cell in _depth_cells(no_residual_6={"acc": 0.1, "reach": None}).items()
             if key[0] != "no_residual_keep_cross"}  # a store from before the sweep had that variant
    v = _measure(tmp_path, "a", "R3", "depth-residual-norm", cells)
    assert v.verdict == "holds" and "no_residual_keep_cross_depth6_heldout_accuracy" not in v.numbers
    assert "bottleneck" not in en(v.summary)


def test_r4_reduction_is_computed_from_steps_to_target(tmp_path):
    near_30 = _depth_cells(**{f"no_residual_{d}": {"acc": 1.0, "reach": 140} for d in (2, 4, 6)})
    v = _measure(tmp_path, "a", "R4", "depth-residual-norm", near_30)
    assert v.verdict == "holds" and v.numbers["depth4_reduction"] == pytest.approx(1 - 100 / 140, abs=1e-3)
    never = _depth_cells(**{f"no_residual_{d}": {"acc": 0.3, "reach": None} for d in (2, 4, 6)})
    v = _measure(tmp_path, "b", "R4", "depth-residual-norm", never)
    assert v.verdict == "holds_with_caveats" and "not reached in 600 steps" in en(v.summary)
    slower = _depth_cells(**{f"pre_ln_{d}": {"acc": 1.0, "reach": 300} for d in (2, 4, 6)})
    assert _measure(tmp_path, "c", "R4", "depth-residual-norm", slower).verdict == "does_not_hold"


def test_n2_and_n4_follow_the_stored_runs(tmp_path):
    v = _measure(tmp_path, "a", "N2", "depth-residual-norm", _depth_cells(post_ln_6={"acc": 0.4, "reach": None}))
    assert v.verdict == "holds_with_caveats" and v.numbers["post_ln_depth6_heldout_accuracy"] == 0.4
    v = _measure(tmp_path, "b", "N2", "depth-residual-norm", _depth_cells())
    assert v.verdict == "holds"
    # the mechanism, measured at initialisation on the precompute's five seeds (no training): Xiong et al. 2020
    assert v.numbers["post_ln_init_grad_last_over_first"] > 1 > v.numbers["pre_ln_init_grad_last_over_first"]
    assert "on every seed the gradient grows toward the output under Post-LN" in en(v.summary)
    slow_then_failing = {f"{variant}_{depth}": cell for variant in ("no_norm", "no_norm_xavier")
                         for depth, cell in ((2, {"acc": 1.0, "reach": 200}), (4, {"acc": 1.0, "reach": 200}),
                                             (6, {"acc": 0.05, "reach": None}))}
    v = _measure(tmp_path, "c", "N4", "depth-residual-norm", _depth_cells(**slow_then_failing))
    assert v.verdict == "holds" and v.numbers["no_norm_depth6_heldout_accuracy"] == 0.05
    assert v.numbers["depth2_speedup_pre_ln_vs_no_norm"] == pytest.approx(0.5)
    assert "no norm never reached it in 600 steps" in en(v.summary)  # a result, not a gap
    v = _measure(tmp_path, "d", "N4", "depth-residual-norm", _depth_cells())
    assert v.verdict == "does_not_hold" and v.numbers["depth6_speedup_pre_ln_vs_no_norm"] == 0


def test_n4_says_which_initialisation_it_holds_under(tmp_path):
    only_xavier_fails = _depth_cells(no_norm_xavier_4={"acc": 0.1, "reach": None},
                                     no_norm_xavier_6={"acc": 0.08, "reach": None})
    v = _measure(tmp_path, "a", "N4", "depth-residual-norm", only_xavier_fails)
    assert v.verdict == "holds_with_caveats" and v.numbers["no_norm_xavier_depth6_heldout_accuracy"] == 0.08
    assert ("The initialisation decides: with Xavier/Glorot uniform the model without a norm fails from 4 layers, "
            "while with PyTorch default (uniform ±1/√fan-in) 6+6 layers train without any norm.") in en(v.summary)


def test_n3_drift_is_computed_from_the_stored_layer_statistics(tmp_path):
    drifting = _depth_cells(no_norm_6={**GOOD, "drift": 2.0}, pre_ln_6={**GOOD, "drift": 1.0})
    v = _measure(tmp_path, "a", "N3", "depth-residual-norm", drifting)
    assert v.verdict == "holds_with_caveats" and "contested" in en(v.summary)
    assert v.numbers["post_ln_input_std_drift_cv"] == 0 and v.numbers["no_norm_input_std_drift_cv"] > 0.1
    steady = _depth_cells(post_ln_6={**GOOD, "drift": 2.0})
    assert _measure(tmp_path, "b", "N3", "depth-residual-norm", steady).verdict == "does_not_hold"


def test_p2_roughness_is_computed_from_the_stored_losses(tmp_path):
    cells = {("pre_ln", d): dict(GOOD) for d in (2, 4)}
    v = _measure(tmp_path, "a", "P2", "pe-every-layer",
                 {**cells, **{("pe_every_layer", d): {"acc": 0.5, "reach": None, "noise": 0.3} for d in (2, 4)}})
    assert v.verdict == "holds" and v.numbers["pre_ln_depth4_accuracy_pe_every_layer"] == 0.5
    assert v.numbers["pre_ln_depth4_roughness_ratio"] is None or v.numbers["pre_ln_depth4_roughness_ratio"] > 2
    same = {("pe_every_layer", d): dict(GOOD) for d in (2, 4)}
    v = _measure(tmp_path, "b", "P2", "pe-every-layer", {**cells, **same})
    assert v.verdict == "does_not_hold" and v.numbers["pre_ln_depth2_roughness_ratio"] == pytest.approx(1.0)
    assert "Post-LN" not in en(v.summary)  # only the arrangements the sweep trained


def test_p2_compares_post_ln_too_when_the_sweep_has_it(tmp_path):
    cells = {(v, d): dict(GOOD) for v in ("pre_ln", "pe_every_layer", "post_ln") for d in (2, 4, 6)}
    cells |= {("post_ln_pe_every_layer", d): {"acc": 0.4, "reach": None, "noise": 0.3} for d in (2, 4, 6)}
    v = _measure(tmp_path, "a", "P2", "pe-every-layer", cells)
    assert v.verdict == "holds" and v.numbers["post_ln_depth6_accuracy_pe_every_layer"] == 0.4
    assert v.numbers["pre_ln_depth6_accuracy_pe_every_layer"] == 1.0 and "Post-LN — depth 2" in en(v.summary)


def test_p4_compares_sinusoidal_learned_and_no_pe_on_longer_inputs(tmp_path):
    v = _measure(tmp_path, "a", "P4", "position-encodings", position_cells(0.1, 0.02))
    assert v.verdict == "does_not_hold" and v.numbers["pre_ln_accuracy_long_inputs"] == 0.1
    assert v.numbers["learned_pe_accuracy_long_inputs"] == 0.02 and v.numbers["long_lengths"] == "11–14"
    assert "does better than learned positions" in en(v.summary)
    v = _measure(tmp_path, "b", "P4", "position-encodings", position_cells(0.97, 0.97))
    assert v.verdict == "holds" and "no better than learned" in en(v.summary)
    cells = position_cells(0.97, 0.97)
    cells[("no_pe", 2)] = {**cells[("no_pe", 2)], "probes": None}  # a run trained before runs were probed
    assert _measure(tmp_path, "c", "P4", "position-encodings", cells).verdict == "not_measured"


def test_a_partial_sweep_is_not_measured_until_the_needed_runs_are_done(tmp_path):
    v = _measure(tmp_path, "a", "R3", "depth-residual-norm", {("pre_ln", 2): dict(GOOD)})
    assert v.verdict == "not_measured" and v.numbers == {"sweep_runs_done": 1, "sweep_runs_total": 24}


def test_r1_adds_the_gradients_recorded_in_training(tmp_path):
    cells = _depth_cells(**{f"no_residual_{d}": {**GOOD, "grad_ratio": 1e-3} for d in (2, 4, 6)})
    v = _measure(tmp_path, "a", "R1", "depth-residual-norm", cells)
    assert v.numbers["trained_depth"] == 6
    assert v.numbers["trained_no_residual_decoder_first_over_last"] == pytest.approx(1e-3)
    # the zoo models' encoders do not all show the drop, so the decoder's bottleneck alone makes it a caveat
    assert v.verdict == "holds_with_caveats" and "a bottleneck, not the vanishing product" in en(v.summary)


def test_n5_reads_how_the_batch_norm_runs_answer_with_each_kind_of_statistics(tmp_path):
    v = _measure(tmp_path, "a", "N5", "batch-vs-layer-norm", batch_norm_cells(1.0, 0.1))
    assert v.verdict == "holds_with_caveats" and v.sources[0] == "sweep:batch-vs-layer-norm"
    assert v.numbers["batchnorm_accuracy_each_input_alone"] == 0.1
    assert v.numbers["batchnorm_accuracy_running_statistics"] == 1
    # LayerNorm: one input's output ignores the others, up to rounding
    assert v.numbers["layernorm_train_change_alone"] == noise_marker(FLOAT32_FLOOR)
    assert "leaves padding out of its statistics" in en(v.summary)
    assert _measure(tmp_path, "b", "N5", "batch-vs-layer-norm", batch_norm_cells(0.5, 0.1)).verdict == "holds"
    v = _measure(tmp_path, "c", "N5", "batch-vs-layer-norm", batch_norm_cells(1.0, 1.0))
    assert v.verdict == "does_not_hold" and "however its statistics are taken" in en(v.summary)


def test_d3_reports_a_stored_run_trained_without_the_mask(tmp_path):

    spec = spec_with(causal_mask=False)
    with RunStore(tmp_path / "runs.sqlite3") as store:
        run = store.create(spec)
        store.add_metrics(run.id, [{**row, "heldout_seq_accuracy": 0.04} for row in _rows(2)])
        store.finish(run.id, "done")
        v = _check_shape(measure("D3", store), "D3")
    assert v.verdict == "holds" and f"run:{run.id}" in v.sources
    assert v.numbers["unmasked_run_teacher_forced_token_accuracy"] == 0.9
    assert v.numbers["unmasked_run_greedy_heldout_accuracy"] == 0.04


def test_d3_is_not_answered_by_a_newer_gpt_trained_without_the_mask(tmp_path):
    """A lesson trains a GPT without its mask; the claim is about the 2017 decoder's run."""
    with RunStore(tmp_path / "runs.sqlite3") as store:
        ours = store.create(spec_with(causal_mask=False))
        store.add_metrics(ours.id, _rows(2))
        store.finish(ours.id, "done")
        gpt_config = model_config_for(get_task("reverse"), arch="decoder_only")
        gpt = store.create(RunSpec(gpt_config, Switches(causal_mask=False), TrainConfig(task="reverse")))
        store.add_metrics(gpt.id, _rows(2))
        store.finish(gpt.id, "done")
        v = measure("D3", store)
    assert f"run:{ours.id}" in v.sources and f"run:{gpt.id}" not in v.sources


def test_the_gradient_noise_floor_is_where_float32_stops_agreeing_with_float64():
    """GRADIENT_FLOOR's measurement, again on this machine: above the floor float32 gives float64's gradient,
    below it (residual connections ablated, so nothing real reaches the decoder) float32 gives rounding only."""
    import copy

    from model.trace import layer_gradient_norms

    model, task = zoo("reverse-pre-4x4")
    batch = heldout_batch(task)
    ablated = model.switches.replace(residual=False)
    grads = {precision: layer_gradient_norms(m, batch.src, batch.tgt_in, batch.tgt_out, ablated)["decoder"][-1]
             for precision, m in (("float32", model), ("float64", copy.deepcopy(model).double()))}
    assert grads["float32"] < GRADIENT_FLOOR / 5  # the floor stands clear of the noise
    assert grads["float64"] < grads["float32"] / 1e4  # the float32 figure is not a small real gradient
    intact = {precision: layer_gradient_norms(m, batch.src, batch.tgt_in, batch.tgt_out, model.switches)["decoder"]
              for precision, m in (("float32", model), ("float64", copy.deepcopy(model).double()))}
    assert min(intact["float32"]) > 100 * GRADIENT_FLOOR
    assert intact["float32"] == pytest.approx(intact["float64"], rel=1e-3)
