"""The calibration is strictly increasing everywhere and keeps the prevalence at 0.5."""

import numpy as np
import pytest

from bsky_assets.successor.calibration import QuantileCalibration


def _strictly_increasing(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) > 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strictly_increasing_inside_at_the_ends_and_outside(seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=800)
    # a skewed, tied, bounded target: many texts at one score, like Perspective's low tail
    truth = np.clip(np.round(rng.beta(0.8, 4.0, 800), 2), 0, 1)
    calibration = QuantileCalibration.fit(raw, truth)
    grid = np.concatenate(
        [
            np.linspace(-1e6, raw.min(), 200),  # far below the fitted range
            np.linspace(raw.min(), raw.max(), 5000),
            np.linspace(raw.max(), 1e6, 200),  # far above it
        ]
    )
    grid = np.unique(grid)
    mapped = calibration.apply(grid)
    assert _strictly_increasing(mapped)
    assert (mapped > 0).all() and (mapped < 1).all()
    ends = calibration.apply(np.array([calibration.x[0], calibration.x[-1]]))
    assert _strictly_increasing(calibration.y) and _strictly_increasing(calibration.x)
    assert ends.tolist() == [calibration.y[0], calibration.y[-1]]  # continuous at the ends


def test_ties_in_the_predictions_never_make_a_plateau():
    raw = np.array([0.0] * 300 + [1.0] * 300 + list(np.linspace(2, 3, 400)))
    truth = np.concatenate([np.full(300, 0.05), np.full(300, 0.3), np.linspace(0.3, 0.95, 400)])
    calibration = QuantileCalibration.fit(raw, truth)
    assert _strictly_increasing(calibration.apply(np.linspace(-5, 8, 3000)))


def test_the_share_at_one_half_follows_the_training_scores():
    rng = np.random.default_rng(3)
    truth = rng.beta(1.0, 3.0, 5000)
    raw = 3 * truth + rng.normal(scale=0.4, size=5000) - 7  # a biased, noisy, shifted ridge
    calibration = QuantileCalibration.fit(raw, truth)
    mapped = calibration.apply(raw)
    assert np.mean(mapped >= 0.5) == pytest.approx(np.mean(truth >= 0.5), abs=0.003)
    # the ranking is the ridge's own
    assert (np.argsort(mapped, kind="stable") == np.argsort(raw, kind="stable")).all()


def test_a_constant_prediction_still_gives_a_strict_map():
    calibration = QuantileCalibration.fit(np.zeros(50), np.full(50, 0.2))
    assert _strictly_increasing(calibration.apply(np.linspace(-3, 3, 100)))
