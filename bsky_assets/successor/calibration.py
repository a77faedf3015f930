"""Calibration that keeps the ranking and the prevalence: a strictly increasing quantile map.

The ridge's out-of-fold predictions are mapped onto Perspective's training scores quantile by
quantile, so the share of held-out posts at or above any threshold (0.5 above all: the research
group thresholds every attribute there) follows Google's, and the map is strictly increasing
everywhere, inside the fitted range and beyond it, so no two different raw scores ever become
one probability (isotonic regression's plateaus tie texts and cost both AUC and Spearman).

By construction: the knots' x are the distinct quantiles of the predictions, their y the matching
quantiles of the scores mixed with a sliver (`MIX`) of the quantile level itself, which makes y
strictly increasing without moving any value by more than MIX; the knots are squeezed into
[EDGE, 1 - EDGE] and continued past both ends by rational tails that approach 0 and 1 without
ever reaching them (an exponential would underflow to a tie within a few units).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_KNOTS = 1000
MIX = 1e-3
EDGE = 1e-6


@dataclass
class QuantileCalibration:
    x: np.ndarray  # strictly increasing raw scores
    y: np.ndarray  # strictly increasing probabilities in (0, 1)

    @classmethod
    def fit(cls, predicted: np.ndarray, truth: np.ndarray) -> QuantileCalibration:
        predicted = np.asarray(predicted, dtype=np.float64)
        truth = np.clip(np.asarray(truth, dtype=np.float64), 0.0, 1.0)
        if len(predicted) < 2 or np.ptp(predicted) == 0:
            # nothing to learn a shape from: the identity on the score scale, kept strict
            centre = float(predicted.mean()) if len(predicted) else 0.0
            level = float(truth.mean()) if len(truth) else 0.5
            return cls.from_knots(np.array([centre - 1, centre + 1]), np.array([level, level]))
        levels = np.linspace(0.0, 1.0, min(MAX_KNOTS, len(predicted)))
        x = np.quantile(predicted, levels)
        y = np.quantile(truth, levels)
        return cls.from_knots(x, y)

    @classmethod
    def from_knots(cls, x: np.ndarray, y: np.ndarray) -> QuantileCalibration:
        """Knots with non-decreasing x and y made strictly increasing (see the module doc)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        distinct, starts, counts = np.unique(x, return_index=True, return_counts=True)
        # tied x (many texts with one prediction): one knot, at the mean of their y
        merged = np.add.reduceat(y, starts) / counts
        levels = np.linspace(0.0, 1.0, len(distinct))
        strict = (1 - MIX) * np.maximum.accumulate(merged) + MIX * levels
        squeezed = EDGE + (1 - 2 * EDGE) * strict
        if len(distinct) == 1:  # one knot: give it a neighbour so slopes exist
            distinct = np.array([distinct[0] - 1, distinct[0] + 1])
            squeezed = np.array([squeezed[0] - EDGE / 2, squeezed[0] + EDGE / 2])
        return cls(distinct, squeezed)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        out = np.interp(raw, self.x, self.y)
        low, high = raw < self.x[0], raw > self.x[-1]
        if low.any():
            slope = (self.y[1] - self.y[0]) / (self.x[1] - self.x[0])
            rate = slope / self.y[0]
            out[low] = self.y[0] / (1.0 + rate * (self.x[0] - raw[low]))
        if high.any():
            slope = (self.y[-1] - self.y[-2]) / (self.x[-1] - self.x[-2])
            room = 1.0 - self.y[-1]
            rate = slope / room
            out[high] = 1.0 - room / (1.0 + rate * (raw[high] - self.x[-1]))
        return out
