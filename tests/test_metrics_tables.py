"""Set metrics, bootstrap intervals, and the table writer (n/a rows counted, never dropped)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labelleak.metrics.bootstrap import mean_ci
from labelleak.metrics.sets import set_scores
from labelleak.reports.tables import TableSpec, aggregate, to_latex, to_markdown


def test_set_scores():
    s = set_scores({1, 2, 3, 9}, {1, 2, 3})
    assert s["precision"] == 0.75 and s["recall"] == 1 and s["exact_match"] == 0
    assert s["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert set_scores([], {1})["precision"] == 0 and set_scores([], {1})["f1"] == 0
    assert set_scores([4, 1], [1, 4, 4])["exact_match"] == 1
    with pytest.raises(ValueError):
        set_scores({1}, set())


def test_bootstrap_interval_contains_mean_and_is_seeded():
    x = np.random.default_rng(0).uniform(size=40)
    m, lo, hi = mean_ci(x, seed=3)
    assert lo < m < hi and m == pytest.approx(x.mean())
    assert mean_ci(x, seed=3) == (m, lo, hi)
    assert mean_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert all(np.isnan(mean_ci([])))


@pytest.fixture
def scores():
    rows = []
    for model in ["resnet50", "efficientnet_b0"]:
        for method in ["yin", "rlg"]:
            for b in range(4):
                na = model == "resnet50" and method == "rlg" and b == 0
                val = np.nan if na else (0.5 if method == "yin" else 1.0)
                rows.append(dict(model=model, n=10, method=method, batch=b, status="n/a" if na else "ok",
                                 precision=val, recall=val, f1=val, exact_match=val))
    return pd.DataFrame(rows)


def test_aggregate_counts_na(scores):
    agg = aggregate(scores, ["method", "n", "model"], ("precision", "exact_match"))
    cell = agg[(agg.model == "resnet50") & (agg.method == "rlg") & (agg.metric == "precision")].iloc[0]
    assert cell["n_updates"] == 3 and cell["n_na"] == 1 and cell["mean"] == 1.0
    assert len(agg) == 2 * 2 * 2


def test_markdown_and_latex_layout(scores):
    agg = aggregate(scores, ["method", "n", "model"], ("precision", "f1"))
    spec = TableSpec("t", "Title", "Caption.", rows=("method", "n"), block="model", metrics=("precision", "f1"),
                     row_order={"method": ("yin", "rlg")}, block_order=("resnet50", "efficientnet_b0"))
    md = to_markdown(agg, spec, "abc123")
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[3].strip() == "ResNet50 Prec" and "3 (1)" in md and "abc123" in md
    assert lines[2].startswith("| Yin") and lines[3].startswith("| RLG")
    tex = to_latex(agg, spec, "abc123")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\multicolumn{3}{c}{EfficientNetB0}" in tex


def test_every_na_cell_states_why_below_the_table():
    """An n/a update is counted in its cell and its reason stated under the table (numbers folded to #)."""
    import pandas as pd

    from labelleak.reports.tables import TableSpec, aggregate, to_markdown

    scores = pd.DataFrame([
        dict(method="rlg", n=10, model="m", status="n/a", reason="no clear gap (best margin 11.1 < 30)", f1=float("nan")),
        dict(method="rlg", n=10, model="m", status="n/a", reason="no clear gap (best margin 3.2 < 30)", f1=float("nan")),
        dict(method="rlg", n=10, model="m", status="ok", reason="", f1=1.0),
        dict(method="yin", n=10, model="m", status="ok", reason="", f1=0.5)])
    agg = aggregate(scores, ["method", "n", "model"], ("f1",))
    assert list(agg["na_reasons"]) == ["2 x no clear gap (best margin # < #)", ""]
    md = to_markdown(agg, TableSpec("t", "T", "c", rows=("method", "n"), block="model", metrics=("f1",)), "h")
    assert "- RLG, N = 10, m: 2 n/a: 2 x no clear gap (best margin # < #)" in md and "Yin et al. (Eq. 5), N = 10" not in md
