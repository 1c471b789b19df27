"""linguistic_collapse.figures: every figure function runs on a small table; save_figure is atomic and deterministic."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from linguistic_collapse.figures import class_counts, cli, save, scaling, style, table1, training  # noqa: E402
from linguistic_collapse.figures.loss import loss_vs_measures  # noqa: E402
from linguistic_collapse.figures.tokens import token_explorer, token_frequency_figure  # noqa: E402
from linguistic_collapse.nc import registry  # noqa: E402
from linguistic_collapse.nc.registry import MEASURES  # noqa: E402
from linguistic_collapse.tables import analysis, claims, results, sample_sizes  # noqa: E402


@pytest.fixture(autouse=True)
def _style_and_cleanup():
    style.apply_style()
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
    paths = save.save_figure(fig, "demo", "test", figures_dir=tmp_path)
    assert [p.name for p in paths] == ["demo.png", "demo.svg"]
    assert all(p.parent == tmp_path / "test" and p.stat().st_size > 0 for p in paths)
    assert not plt.fignum_exists(fig.number)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = paths[1].read_bytes()
    save.save_figure(make(), "demo", "test", figures_dir=tmp_path)
    assert paths[1].read_bytes() == first
    assert b"<dc:date>" not in first
    assert [p.name for p in tmp_path.joinpath("test").iterdir() if p.name.startswith(".")] == []


def test_show_and_save_leaves_no_paths_as_the_cell_value(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [2, 1])
    assert save.show_and_save(fig, "demo", "test", figures_dir=tmp_path) is None, \
        "a cell ending in show_and_save would print this machine's paths"
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == ["demo.png", "demo.svg"]


def test_save_figure_rejects_bad_input(tmp_path):
    fig = plt.figure()
    with pytest.raises(ValueError, match="plain file stem"):
        save.save_figure(fig, "a/b", "test", figures_dir=tmp_path)
    with pytest.raises(ValueError, match="unsupported figure formats"):
        save.save_figure(fig, "a", "test", formats=("bmp",), figures_dir=tmp_path)


def test_loss_vs_measures_panels_and_r2():
    table = small_table()
    measures = ["nc1_cdnv", "gnc2_logkernel_var", "unc3_duality_cv", "nc4_agreement"]
    fig = loss_vs_measures(table, measures)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    assert panels[0].get_xscale() == "log" and panels[3].get_xscale() == "linear"
    assert panels[0].get_title() == "NC1: CDNV"
    assert all(ax.get_ylabel() == style.LOSS_LABEL for ax in panels)
    texts = panel_texts(fig)
    assert len(texts) == 4 and all("$R^2$ = " in t and "n = 8" in t for t in texts)
    # R^2 printed is that of the least-squares line in plotted (log10) coordinates
    r = np.corrcoef(np.log10(table["nc1_cdnv"]), table["val_loss"])[0, 1]
    assert f"$R^2$ = {r * r:.2f}" in texts[0]
    assert any(ax.get_ylabel() == "parameters" for ax in fig.axes)  # shared colour bar


def test_loss_vs_measures_uses_given_correlations():
    table = small_table()
    corr = pd.DataFrame({"measure": ["nc2_norm_cv", "nc3_duality_mean"], "r2": [0.123, 0.456]})
    fig = loss_vs_measures(table, ["nc2_norm_cv", "nc3_duality_mean"], corr, ncols=4)
    texts = panel_texts(fig)
    assert texts[0].startswith("$R^2$ = 0.12") and texts[1].startswith("$R^2$ = 0.46")


def test_loss_vs_measures_marks_plateau_models_and_fits_without_them():
    """Plateau models (claims.plateau_mask) are triangles; a second line fits the rest, and the
    annotation gives both R² (that of the rest recomputed independently here)."""
    table = small_table()
    stuck = table.iloc[:3].assign(val_loss=lambda d: d["val_loss"] + 2.0,
                                  name=lambda d: d["name"] + "-stuck")
    table = pd.concat([table, stuck], ignore_index=True)
    plateau, _ = claims.plateau_mask(table)
    assert plateau.sum() == 3
    fig = loss_vs_measures(table, ["nc4_agreement"])
    ax = next(a for a in fig.axes if a.get_label() != "<colorbar>")
    markers = [c.get_paths()[0].vertices.shape[0] for c in ax.collections]  # circle vs triangle
    assert len(ax.collections) == 2 and markers[0] != markers[1]
    assert [len(c.get_offsets()) for c in ax.collections] == [8, 3]
    assert len(ax.get_lines()) == 2  # fit with and without the plateau models
    x, y = table["nc4_agreement"].to_numpy(), table["val_loss"].to_numpy()
    r_all = np.corrcoef(x, y)[0, 1] ** 2
    r_rest = np.corrcoef(x[~plateau], y[~plateau])[0, 1] ** 2
    text = panel_texts(fig)[0]
    assert f"$R^2$ = {r_all:.2f} (all, n = 11)" in text
    assert f"$R^2$ = {r_rest:.2f} (no plateau, n = 8)" in text
    assert fig.legends and "plateau model (3)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_loss_vs_measures_without_plateau_draws_one_fit():
    fig = loss_vs_measures(small_table(), ["nc4_agreement"])
    ax = next(a for a in fig.axes if a.get_label() != "<colorbar>")
    assert len(ax.collections) == 1 and len(ax.get_lines()) == 1 and not fig.legends


def test_training_curves_and_heatmap():
    results = {
        "L1-d32-e2-wd0.0005-s0": {"n_params": 1e4, "checkpoints": [
            {"epoch": 1, "val_loss": 3.0, "val_acc": 0.2}, {"epoch": 2, "val_loss": 2.8, "val_acc": 0.25}]},
        "L2-d64-e2-wd0.0005-s0": {"n_params": 1e5, "checkpoints": [
            {"epoch": 2, "val_loss": 2.4, "val_acc": 0.3}, {"epoch": 1, "val_loss": 2.6, "val_acc": 0.28}]},
    }
    fig = training.training_curves(results)
    assert fig.axes[0].get_ylabel() == style.LOSS_LABEL
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [2.6, 2.4])  # sorted by epoch
    table = small_table()
    fig = training.loss_grid_heatmap(table, epochs=3, weight_decay=0.1)
    cells = sorted(t.get_text() for t in fig.axes[0].texts)
    sub = table[table["epochs"] == 3]
    assert cells == sorted(f"{v:.2f}" for v in sub["val_loss"])
    with pytest.raises(ValueError, match="exactly one variant"):
        training.loss_grid_heatmap(table)


def test_table1_figure_is_a_table_with_signed_r_and_resolution_limited_p():
    table = small_table()
    perm = analysis.table1(table, n_permutations=200, seed=0, alpha=0.05)
    perm.loc[0, ["p", "p_holm"]] = 1 / 201  # no permuted |r| reached the observed one
    fig = table1.table1_figure(perm, alpha=0.05)
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert {"Holm p", "R²", "Spearman ρ", "≤ 5.0e-3", "NC1: CDNV"} <= set(texts)
    assert f"{perm['r'].iloc[1]:+.3f}" in texts  # signed r

def test_scaling_figures_say_what_they_aggregate():
    figs = scaling.scaling_figures(small_table(), ["nc1_cdnv", "nc4_agreement"])
    assert list(figs) == ["scaling_size", "scaling_width", "scaling_training"]
    assert "no averaging" in figs["scaling_size"].get_suptitle()
    assert "mean over weight decay and seeds" in figs["scaling_width"].get_suptitle()
    assert "mean over depth and seeds" in figs["scaling_training"].get_suptitle()
    width_panel = figs["scaling_width"].axes[0]
    assert width_panel.get_yscale() == "log" and len(width_panel.lines) == 2  # one line per depth
    labels = [t.get_text() for t in figs["scaling_width"].legends[0].get_texts()]
    assert labels == ["depth 1", "depth 2"]


def test_loss_heatmaps_share_one_colour_scale():
    table = small_table()
    fig = training.loss_grid_heatmaps(table)
    meshes = [ax.collections[0] for ax in fig.axes if ax.collections and ax.get_title()]
    assert len(meshes) == 2
    assert len({(m.norm.vmin, m.norm.vmax) for m in meshes}) == 1
    final = table[table["checkpoint"] == table["epochs"]]
    assert meshes[0].norm.vmin == pytest.approx(final["val_loss"].min())
    bar = [ax for ax in fig.axes if ax.get_ylabel() == style.LOSS_LABEL and not ax.get_title()][0]
    labels = [t.get_text() for t in bar.get_yticklabels()]
    assert labels[0] == f"{final['val_loss'].min():.2f}" and labels[-1] == f"{final['val_loss'].max():.2f}"


def test_colour_bar_labelled_at_both_ends_and_replicas_spread():
    results = {f"L1-d32-e1-wd0.0005-s{s}": {"n_params": 82_300.0, "checkpoints": [
        {"epoch": 1, "val_loss": 5.1, "val_acc": 0.16}]} for s in range(3)}
    results["L2-d64-e1-wd0.0005-s0"] = {"n_params": 1.07e6, "checkpoints": [
        {"epoch": 1, "val_loss": 4.5, "val_acc": 0.2}]}
    fig = training.training_curves(results)
    xs = sorted(float(line.get_xdata()[0]) for line in fig.axes[0].lines if len(line.get_xdata()))
    assert len(set(xs)) == 4  # three replicas offset from each other and from the grid run
    bar = [ax for ax in fig.axes if ax.get_ylabel() == "parameters"][0]
    fig.canvas.draw()
    labels = [t.get_text() for t in bar.get_yticklabels()]
    assert labels[0] == "82.3k" and labels[-1] == "1.07M"


def test_log_ticks_have_one_label_each():
    for low, high in ((0.68, 0.78), (0.05, 0.6), (82_000, 1.07e6)):
        ticks = style._geometric_ticks(low, high)
        assert 2 <= len(ticks) <= 5 and len(set(ticks)) == len(ticks)
        assert all(low * 0.999 <= t <= high * 1.001 for t in ticks)


def test_step_through_helpers():
    blocks = np.array([[0, 1, 2, 2, 3], [3, 2, 2, 1, 0]])
    fig = class_counts.token_frequency_rank(blocks)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [4, 2, 1, 1])
    counts = np.array([0, 0, 3, 7, 30, 1])
    thresholds = sample_sizes.class_count_thresholds(counts, (1, 5, 20))
    assert thresholds["classes"].tolist() == [2, 4, 5]
    fig = class_counts.class_count_figure(counts, (1, 5, 20))
    assert "4 of 6 classes seen" in fig.axes[0].get_title()


def test_token_frequency_figure_highlights_names():
    tokens = pd.DataFrame({"token": ["Lily", "the", "Tom", "."], "count": [50, 400, 30, 300],
                           "variability": [0.1, 2.0, 0.2, 1.5], "interference": [0.01, 0.2, 0.02, 0.3]})
    fig = token_frequency_figure(tokens, names=["lily", "tom"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    highlighted = ax.collections[1].get_offsets()
    np.testing.assert_allclose(np.asarray(highlighted), [[50, 0.1], [30, 0.2]])


def test_token_explorer_offers_tokens_by_count_and_shows_each_choice():
    tokens = pd.DataFrame({"token_id": [0, 1, 2], "token": ["a", "b", "c"], "count": [5, 50, 20],
                           "variability": [0.3, 0.1, 0.2], "interference": [0.0, 0.1, 0.2]})
    counts = np.array([5, 50, 20])
    stats = {"counts": counts, "sums": np.random.default_rng(0).standard_normal((3, 4)) * counts[:, None]}
    picker, _ = token_explorer(tokens, stats, k=1).children
    assert [value for _, value in picker.options] == [1, 2, 0]  # most frequent first
    assert picker.options[0][0] == "'b' (id 1, n=50)" and picker.value == 1
    picker.value = 0  # the summary of another token is drawn without error


@pytest.mark.slow  # the whole figures command: bootstrap correlations and every paper figure
def test_cli_figures(tmp_path):
    table_path = results.save_table(small_table(), tmp_path / "results.csv")
    parser = argparse.ArgumentParser()
    cli.register_cli(parser.add_subparsers())
    args = parser.parse_args(["figures", "--table", str(table_path), "--profile", "t",
                              "--figures-dir", str(tmp_path / "figs")])
    assert args.func(args) == 0
    written = sorted(p.name for p in (tmp_path / "figs" / "t").iterdir())
    assert written == sorted(f"{n}.{f}" for n in cli.PAPER_FIGURES for f in ("png", "svg"))


def test_human_count_and_uncrowded_log_axis():
    assert [style.human_count(v) for v in (512, 51_200, 1.23e6, 2e9)] == ["512", "51.2k", "1.23M", "2B"]
    fig, ax = plt.subplots()
    ax.plot([1.1, 1.6], [0, 1])
    style.log_axis(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_text()]
    assert 2 <= len(labels) <= 4 and all("10^" not in s for s in labels)
    assert registry.axis_label("nc1_cdnv") == "CDNV (log scale)"
    assert registry.axis_label("nc4_agreement") == "classifier agreement (fraction of tokens)"


def test_scaling_figures_leave_out_an_empty_measure():
    """A measure the table lacks entirely (the authors' files have no Galanti CDNV) gets no panel
    instead of a log-axis error."""
    table = small_table().assign(nc1_cdnv_galanti=np.nan)
    figs = scaling.scaling_figures(table, ["nc1_cdnv", "nc1_cdnv_galanti"])
    assert [ax.get_title() for ax in figs["scaling_size"].axes if ax.get_visible()][:1] == ["NC1: CDNV"]


def _text_box_covers(fig) -> list[int]:
    """Per panel: how many scatter points lie under its R² text box (display coordinates)."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    covered = []
    for ax in [a for a in fig.axes if a.get_label() != "<colorbar>"]:
        box = ax.texts[0].get_bbox_patch().get_window_extent(renderer)
        pts = np.vstack([ax.transData.transform(c.get_offsets()) for c in ax.collections])
        covered.append(int(sum(box.contains(x, y) for x, y in pts)))
    return covered


def test_r2_text_goes_where_no_point_is():
    """Points in the upper left, upper right and lower right (the old rule chose an upper corner
    by the slope's sign) leave the text the empty lower left corner."""
    rng = np.random.default_rng(3)
    table = small_table()
    x = np.concatenate([rng.uniform(0, 0.3, 4), rng.uniform(0.7, 1.0, 4)])
    table = table.assign(nc4_agreement=x, val_loss=np.concatenate([rng.uniform(0.8, 1, 8)]))
    table.loc[7, "val_loss"] = 0.0  # one low point on the right: the lower left stays empty
    fig = loss_vs_measures(table, ["nc4_agreement"])
    assert _text_box_covers(fig) == [0]
    assert fig.axes[0].texts[0].get_position() == (0.03, 0.05)  # the lower left corner


def test_r2_text_avoids_plateau_triangles():
    table = small_table()
    stuck = table.iloc[:3].assign(val_loss=lambda d: d["val_loss"] + 2.0, name=lambda d: d["name"] + "-stuck")
    table = pd.concat([table, stuck], ignore_index=True)
    fig = loss_vs_measures(table, ["nc1_cdnv", "nc2_interference_cv", "nc4_agreement"])
    assert _text_box_covers(fig) == [0, 0, 0]


def test_subscripts_are_mathtext():
    assert style.math_label("NC1: Tr(Σ_W Σ_B⁺)/K") == r"NC1: Tr($\Sigma_{W}$ $\Sigma_{B}^{+}$)/K"
    assert style.math_label("NC2: norm CV") == "NC2: norm CV"
    fig = loss_vs_measures(small_table(), ["nc1_pinv"])
    ax = fig.axes[0]
    assert "_" not in ax.get_title().replace("_{", "") and r"$\Sigma_{W}$" in ax.get_title()
    assert r"$\Sigma_{B}^{+}$" in ax.get_xlabel()


def test_table1_bolds_only_our_cells():
    table = small_table()
    perm = analysis.table1(table, n_permutations=200, seed=0, alpha=0.05)
    perm["p_holm"] = 0.001  # every row significant
    perm = perm.assign(r_ci_low=-0.9, r_ci_high=-0.1, authors_r=-0.5, diff_p=0.3, authors_p_holm=0.2)
    fig = table1.table1_figure(perm, alpha=0.05)
    cells = fig.axes[0].tables[0].get_celld()
    header = {col: cells[0, col].get_text().get_text() for col in range(len(perm.columns)) if (0, col) in cells}
    for (row, col), cell in cells.items():
        if row == 0:
            continue
        theirs = header[col] in analysis.COMPARED_COLUMNS
        assert (cell.get_text().get_fontweight() == "bold") == (not theirs), header[col]
    assert {"authors r", "difference p", "authors Holm p"} <= set(header.values())


def test_sensitivity_figure_titles_and_legend_are_readable():
    from linguistic_collapse.figures.sensitivity import sensitivity_figure

    rows = []
    for ck, shift in (("a", -0.2), ("b", -0.1)):
        rows.append({"checkpoint": ck, "fraction": 1.0, "draw": 0, "num_classes": 9, **{m: 1.0 for m in MEASURES}})
        rows += [{"checkpoint": ck, "fraction": 0.5, "draw": d, "num_classes": 9,
                  **{m: 10 ** (shift + 0.01 * d) for m in MEASURES}} for d in (0, 1)]
    fig = sensitivity_figure(pd.DataFrame(rows), small_table(), MEASURES[:2], ncols=2)
    ax = fig.axes[0]
    tick = ax.get_xticklabels()[0].get_fontsize()
    assert ax.title.get_fontsize() >= tick  # the title no smaller than the tick labels
    legend = fig.legends[0]
    assert legend.get_texts()[0].get_fontsize() >= 0.9 * tick
    assert [t.get_text() for t in legend.get_texts()][:2] == ["a", "b"]


def test_symlog_axis_labels_a_range_inside_one_decade_in_plain_numbers():
    """The default symlog ticks leave −0.06..−0.86 with only minor labels such as −8.6e-1."""
    import matplotlib.pyplot as plt
    from linguistic_collapse.figures.style import symlog_axis

    fig, ax = plt.subplots()
    ax.plot([0, 1], [-0.0581, -0.8615])
    symlog_axis(ax, 1.0)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    plt.close(fig)
    assert len(labels) >= 3 and not any("e" in s or "times" in s for s in labels), labels


def test_factor_ticks_use_a_log_axis_only_for_a_geometric_grid():
    """Widths 32, 48, ..., 128 on a log axis crowd their top labels; 32, 64, 128 do not."""
    import matplotlib.pyplot as plt
    from linguistic_collapse.figures.scaling import _factor_ticks

    fig, (even, doubling) = plt.subplots(1, 2)
    assert not _factor_ticks(even, pd.Series([32, 48, 64, 80, 96, 112, 128]), True)
    assert _factor_ticks(doubling, pd.Series([32, 64, 128]), True)
    assert (even.get_xscale(), doubling.get_xscale()) == ("linear", "log")
    plt.close(fig)
