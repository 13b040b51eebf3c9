"""Store quotas: a run's checkpoint size is known before it trains, and the limits are checked against it."""


import pytest
from test_job_faults import big_spec
from test_jobs import spec

from app.lab.quotas import QuotaExceeded, Quotas, checkpoint_mb
from app.lab.store import RunStore
from model.checkpoint import checkpoint_bytes
from model.train import new_model


@pytest.mark.parametrize("make", [spec, lambda: big_spec(steps=2)])
def test_the_estimated_checkpoint_size_is_the_real_one(make):
    run = make()
    model = new_model(run.model, run.switches, seed=0)
    real = len(checkpoint_bytes(model, run.train, [])) / (1 << 20)
    estimate = checkpoint_mb(run.model)
    assert real <= estimate <= real * 1.1 + 0.1


def test_a_run_that_would_overfill_the_store_is_refused_naming_the_limit(tmp_path):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        Quotas(max_store_mb=100).check([spec()], store)  # fits
        with pytest.raises(QuotaExceeded, match=r"ADDNORM_MAX_STORE_MB"):
            Quotas(max_checkpoint_mb=500, max_store_mb=store.size_mb() + 1).check([big_spec(steps=2)], store)
        with pytest.raises(QuotaExceeded, match=r"ADDNORM_MAX_CHECKPOINT_MB"):
            Quotas(max_checkpoint_mb=1).check([big_spec(steps=2)], store)
