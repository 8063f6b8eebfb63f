"""SecAgg+: the server unmasks the weighted sum of the sites' updates and no single one."""

import numpy as np
import pytest
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_extract
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import Key

from flip.fl.experiment import ExperimentOptions, prepare, site_files
from flip.fl.runtime.simulation import run_in_simulation
from flip.fl.secure_aggregation import (
    CLIPPING_RANGE,
    client_app,
    secure_server_app,
    site_update,
)
from flip.fl.tasks.models import model_factory
from tests.fl.messy import write_sites

#: SecAggPlusWorkflow's default quantisation range.
QUANTIZATION_RANGE = 4194304


def _as_if_unmasked(masked: list[np.ndarray]) -> list[np.ndarray]:
    """Decode one site's masked vector the way the server decodes the unmasked sum."""
    q_ratio, vectors = factor_extract(masked)
    return [
        v * QUANTIZATION_RANGE / q_ratio
        for v in dequantize(vectors, CLIPPING_RANGE, QUANTIZATION_RANGE)
    ]


@pytest.mark.slow
def test_the_server_unmasks_the_sum_and_cannot_read_any_one_update(tmp_path):
    sites = write_sites(tmp_path)
    options = ExperimentOptions(sites=sites, target="num", positive="num>0", rounds=1)
    prepared = prepare(options)
    n_features = len(prepared.encoding.names)
    initial = model_factory("tabular-logreg")(n_features, 0)
    start = [v.numpy().copy() for v in initial.state_dict().values()]
    config = {
        "task": "tabular-logreg",
        "seed": 0,
        "local-epochs": 2,
        "learning-rate": 0.05,
        "batch-size": 32,
        "l2": 1e-3,
    }
    seen = []
    app, result = secure_server_app(
        config, initial.state_dict(), rounds=1, n_sites=len(sites), observe=seen.append
    )
    with site_files(prepared):
        run_in_simulation(app, client_app, len(sites))
        updates = [site_update({**config, "server-round": 1}, i, start) for i in range(len(sites))]

    total = sum(n for _, n in updates)
    expected = [sum(u[k] * n for u, n in updates) / total for k in range(len(start))]
    for got, want in zip(result.state_dict.values(), expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-3)

    replies = [m for m in seen if m.metadata.reply_to_message_id]
    arrays = [a for r in replies if r.has_content() for a in r.content.array_records.values()]
    assert replies and all(len(a) == 0 for a in arrays), "parameters left a site unmasked"
    masked = [
        [bytes_to_ndarray(b) for b in record[Key.MASKED_PARAMETERS]]
        for r in replies
        for record in r.content.config_records.values()
        if Key.MASKED_PARAMETERS in record
    ]
    assert len(masked) == len(sites)
    for vector in masked:
        decoded = _as_if_unmasked(vector)
        for update, _ in updates:
            error = max(float(np.max(np.abs(d - u))) for d, u in zip(decoded, update, strict=True))
            assert error > 1.0, "a site's update was readable at the server"


@pytest.mark.parametrize("n_sites", [2, 3, 4, 10, 100])
def test_secret_sharing_suits_any_number_of_sites(n_sites):
    from flwr.server.workflow import SecAggPlusWorkflow

    from flip.fl.secure_aggregation import _sharing

    shares, threshold = _sharing(n_sites)
    SecAggPlusWorkflow(shares, threshold)
    if isinstance(shares, int):
        assert 2 < shares <= n_sites and threshold == shares - 1
