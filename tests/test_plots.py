"""lib.plots: every figure function runs on a small table; save_figure is atomic and deterministic."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib import analysis, plots  # noqa: E402
from lib.analysis import MEASURES  # noqa: E402


@pytest.fixture(autouse=True)
def _style_and_cleanup():
    plots.apply_style()
    yield
    plt.close("all")


def small_table() -> pd.DataFrame:
    """8 checkpoints over width x depth x epochs x weight decay, measures tied to loss."""
    rows = []
    rng = np.random.default_rng(0)
    for depth in (1, 2):
        for width in (32, 64):
            for wd, ep in ((0.0005, 1), (0.1, 3)):
                n_params = 1000 * width * (1 + depth)
                loss = 6 - 0.5 * np.log10(n_params) - 0.1 * ep + 0.05 * rng.standard_normal()
                row = {"name": f"L{depth}-d{width}-e{ep}-wd{wd!r}-s0-ck{ep}", "depth": depth, "width": width,
                       "epochs": ep, "weight_decay": wd, "seed": 0, "checkpoint": ep, "n_params": n_params,
                       "val_loss": loss, "val_acc": 0.1 * (6 - loss)}
                row.update({m: np.exp(loss - 3 + 0.1 * k) for k, m in enumerate(MEASURES)})
                rows.append(row)
    return pd.DataFrame(rows)


def panel_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_save_figure_png_svg_deterministic(tmp_path):
    def make():
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [3, 1, 2], label="a")
        ax.legend()
        return fig

    fig = make()
    paths = plots.save_figure(fig, "demo", "test", figures_dir=tmp_path)
    assert [p.name for p in paths] == ["demo.png", "demo.svg"]
    assert all(p.parent == tmp_path / "test" and p.stat().st_size > 0 for p in paths)
    assert not plt.fignum_exists(fig.number)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = paths[1].read_bytes()
    plots.save_figure(make(), "demo", "test", figures_dir=tmp_path)
    assert paths[1].read_bytes() == first
    assert b"<dc:date>" not in first
    assert [p.name for p in tmp_path.joinpath("test").iterdir() if p.name.startswith(".")] == []


def test_save_figure_rejects_bad_input(tmp_path):
    fig = plt.figure()
    with pytest.raises(ValueError, match="plain file stem"):
        plots.save_figure(fig, "a/b", "test", figures_dir=tmp_path)
    with pytest.raises(ValueError, match="unsupported figure formats"):
        plots.save_figure(fig, "a", "test", formats=("bmp",), figures_dir=tmp_path)


def test_loss_vs_measures_panels_and_r2():
    table = small_table()
    measures = ["nc1_cdnv", "gnc2_logkernel_var", "unc3_duality_cv", "nc4_agreement"]
    fig = plots.loss_vs_measures(table, measures)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    assert panels[0].get_xscale() == "log" and panels[3].get_xscale() == "linear"
    assert panels[0].get_title() == "NC1: CDNV"
    assert all(ax.get_ylabel() == plots.LOSS_LABEL for ax in panels)
    texts = panel_texts(fig)
    assert len(texts) == 4 and all("$R^2$ = " in t and "n = 8" in t for t in texts)
    # R^2 printed is that of the least-squares line in plotted (log10) coordinates
    r = np.corrcoef(np.log10(table["nc1_cdnv"]), table["val_loss"])[0, 1]
    assert f"$R^2$ = {r * r:.2f}" in texts[0]
    assert any(ax.get_ylabel() == "parameters" for ax in fig.axes)  # shared colour bar


def test_loss_vs_measures_uses_given_correlations():
    table = small_table()
    corr = pd.DataFrame({"measure": ["nc2_norm_cv", "nc3_duality_mean"], "r2": [0.123, 0.456]})
    fig = plots.loss_vs_measures(table, ["nc2_norm_cv", "nc3_duality_mean"], corr, ncols=4)
    texts = panel_texts(fig)
    assert texts[0].startswith("$R^2$ = 0.12") and texts[1].startswith("$R^2$ = 0.46")


def test_scaling_grid_shape_and_labels():
    fig = plots.scaling_grid(small_table(), ["nc1_cdnv", "nc4_agreement"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 8
    assert [ax.get_xlabel() for ax in panels[:4]] == [plots.FACTORS[f][1] for f in
                                                       ("width", "depth", "epochs", "weight_decay")]
    assert panels[0].get_yscale() == "log" and panels[4].get_yscale() == "linear"


def test_training_curves_and_heatmap():
    results = {
        "L1-d32-e2-wd0.0005-s0": {"n_params": 1e4, "checkpoints": [
            {"epoch": 1, "val_loss": 3.0, "val_acc": 0.2}, {"epoch": 2, "val_loss": 2.8, "val_acc": 0.25}]},
        "L2-d64-e2-wd0.0005-s0": {"n_params": 1e5, "checkpoints": [
            {"epoch": 2, "val_loss": 2.4, "val_acc": 0.3}, {"epoch": 1, "val_loss": 2.6, "val_acc": 0.28}]},
    }
    fig = plots.training_curves(results)
    assert fig.axes[0].get_ylabel() == plots.LOSS_LABEL
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [2.6, 2.4])  # sorted by epoch
    table = small_table()
    fig = plots.loss_grid_heatmap(table, epochs=3, weight_decay=0.1)
    cells = sorted(t.get_text() for t in fig.axes[0].texts)
    sub = table[table["epochs"] == 3]
    assert cells == sorted(f"{v:.2f}" for v in sub["val_loss"])
    with pytest.raises(ValueError, match="exactly one variant"):
        plots.loss_grid_heatmap(table)


def test_permutation_figures():
    table = small_table()
    perm = analysis.permutation_test(table, ["nc1_cdnv", "nc4_agreement"], n_permutations=200)
    fig = plots.permutation_figure(perm)
    assert len([t for t in fig.axes[0].texts if "p = " in t.get_text()]) == 2
    x, mask, _ = analysis.transformed(table, "nc1_cdnv")
    null = {"nc1_cdnv": analysis.permutation_null(x, table.loc[mask, "val_loss"].to_numpy(), 200, 0)}
    fig = plots.permutation_figure(perm, null)
    assert len(fig.axes) == 1 and "p = " in fig.axes[0].texts[0].get_text()


def test_token_frequency_figure_highlights_names():
    tokens = pd.DataFrame({"token": ["Lily", "the", "Tom", "."], "count": [50, 400, 30, 300],
                           "variability": [0.1, 2.0, 0.2, 1.5], "interference": [0.01, 0.2, 0.02, 0.3]})
    fig = plots.token_frequency_figure(tokens, names=["lily", "tom"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    highlighted = ax.collections[1].get_offsets()
    np.testing.assert_allclose(np.asarray(highlighted), [[50, 0.1], [30, 0.2]])


def test_cli_figures(tmp_path):
    table_path = analysis.save_table(small_table(), tmp_path / "results.csv")
    parser = argparse.ArgumentParser()
    plots.register_cli(parser.add_subparsers())
    args = parser.parse_args(["figures", "--table", str(table_path), "--profile", "t",
                              "--figures-dir", str(tmp_path / "figs")])
    assert args.func(args) == 0
    written = sorted(p.name for p in (tmp_path / "figs" / "t").iterdir())
    assert written == sorted(f"{n}.{f}" for n in plots.PAPER_FIGURES for f in ("png", "svg"))


def test_human_count_and_uncrowded_log_axis():
    assert [plots.human_count(v) for v in (512, 51_200, 1.23e6, 2e9)] == ["512", "51.2k", "1.23M", "2B"]
    fig, ax = plt.subplots()
    ax.plot([1.1, 1.6], [0, 1])
    plots.log_axis(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_text()]
    assert 2 <= len(labels) <= 4 and all("10^" not in s for s in labels)
    assert analysis.axis_label("nc1_cdnv") == "CDNV (log scale)"
    assert analysis.axis_label("nc4_agreement") == "classifier agreement (fraction of tokens)"
