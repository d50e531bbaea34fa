"""Engine-independent pieces of the engine adapters."""

import pytest

from herdsman.runtime.engines.uvicorn import graceful_shutdown_timeout


@pytest.mark.parametrize("graceful, expected", [(30.0, 28.9), (5.0, 4.4), (1.0, 0.4), (0.0, 0.1)])
def test_uvicorns_graceful_timeout_leaves_a_margin_before_the_masters_kill(graceful, expected):
    assert graceful_shutdown_timeout(graceful) == pytest.approx(expected)
