"""Numbers published in the seed papers, for side-by-side comparison with our regenerated tables.

Transcribed from Dang et al., NeurIPS 2021 (../shared/seeds/001_*): Table 1 is the mean over 100
random ImageNet validation batches per N, Keras ImageNet-pretrained models.
"""

from __future__ import annotations

import pandas as pd

from labelleak.metrics.sets import SET_METRICS

#: Table 1: (method, model, N) -> (precision, recall, F1, exact match)
TABLE1 = {
    ("yin", "resnet50", 10): (1.0, 0.996, 0.998, 0.96),
    ("yin", "resnet50", 50): (1.0, 0.974, 0.987, 0.27),
    ("yin", "resnet50", 100): (1.0, 0.960, 0.979, 0.04),
    ("yin", "efficientnet_b0", 10): (0.010, 1.0, 0.020, 0.0),
    ("yin", "efficientnet_b0", 50): (0.049, 1.0, 0.093, 0.0),
    ("yin", "efficientnet_b0", 100): (0.095, 1.0, 0.174, 0.0),
    ("rlg", "resnet50", 10): (0.999, 0.998, 0.998, 0.97),
    ("rlg", "resnet50", 50): (0.998, 0.976, 0.987, 0.27),
    ("rlg", "resnet50", 100): (0.978, 0.966, 0.972, 0.02),
    ("rlg", "efficientnet_b0", 10): (1.0, 1.0, 1.0, 1.0),
    ("rlg", "efficientnet_b0", 50): (0.999, 1.0, 0.999, 0.95),
    ("rlg", "efficientnet_b0", 100): (0.998, 0.999, 0.999, 0.78),
}



def table1_frame() -> pd.DataFrame:
    """The published Table 1 in the tidy layout of our aggregates (mean only)."""
    rows = [{"method": m, "model": model, "n": n, "metric": metric, "mean": value}
            for (m, model, n), values in TABLE1.items() for metric, value in zip(SET_METRICS, values)]
    return pd.DataFrame(rows)


#: Table 4 (defenses against RLG, EfficientNetB0, N = 10; ImageNet, Keras pretrained):
#: (defense, model) -> (precision, recall, F1, exact match); "las" is the paper's ASR model (untrained,
#: one utterance per update, bag of words over 16k word pieces).
TABLE4 = {
    ("none", "efficientnet_b0"): (1.0, 1.0, 1.0, 1.0),
    ("signsgd", "efficientnet_b0"): (0.010, 1.0, 0.020, 0.0),
    ("graddrop-0.5", "efficientnet_b0"): (0.999, 0.843, 0.914, 0.17),
    ("graddrop-0.9", "efficientnet_b0"): (1.0, 0.294, 0.455, 0.0),
    ("none", "las"): (0.998, 1.0, 0.999, 0.988),
    ("signsgd", "las"): (0.504, 0.181, 0.266, 0.104),
    ("graddrop-0.5", "las"): (0.857, 1.0, 0.923, 0.881),
    ("graddrop-0.9", "las"): (0.997, 0.981, 0.989, 0.866),
}


def table4_frame() -> pd.DataFrame:
    """The published Table 4 (RLG under defenses) in the tidy layout of our aggregates (mean only)."""
    rows = [{"method": "rlg", "defense": d, "model": model, "metric": metric, "mean": value}
            for (d, model), values in TABLE4.items() for metric, value in zip(SET_METRICS, values)]
    return pd.DataFrame(rows)
