"""Table 1 drawn as a table (``05_permutation``): the permutation test's cells, our significant
rows in bold on a tint."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from linguistic_collapse.figures.style import math_label
from linguistic_collapse.tables.analysis import COMPARED_COLUMNS, table1_display


def table1_figure(perm_df: pd.DataFrame, alpha: float) -> Figure:
    """Table 1 drawn as a table (the cells of ``linguistic_collapse.tables.analysis.table1_display``: signed r, R²,
    Spearman ρ, p and Holm p); in rows significant at ``alpha`` after Holm, our own cells in bold
    on a tint (the authors' columns and the comparison with them, ``COMPARED_COLUMNS``, stay
    plain). With too few replicas for a test, the figure says so instead."""
    height = 0.3 * (len(perm_df) + 1) + 0.9
    if perm_df["r"].isna().all():
        fig, ax = plt.subplots(figsize=(9.5, height))
        ax.set_axis_off()
        note = perm_df["note"].iloc[0] if "note" in perm_df else "no permutation results"
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
        return fig
    cells = table1_display(perm_df)
    ours = [c not in COMPARED_COLUMNS for c in cells.columns]
    chars = sum(max(len(str(c)), *(len(str(v)) for v in cells[c])) + 2 for c in cells.columns)
    cells["measure"] = cells["measure"].map(math_label)  # after the width: mathtext is shorter drawn
    fig, ax = plt.subplots(figsize=(max(9.5, 0.095 * chars), height))  # ~0.095 in per 10-pt character
    ax.set_axis_off()
    significant = (perm_df["p_holm"].astype(float) < alpha).to_numpy()
    table = ax.table(cellText=cells.to_numpy(), colLabels=list(cells.columns), loc="center",
                     cellLoc="right", colLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.auto_set_column_width(list(range(len(cells.columns))))
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("0.85")
        cell.set_linewidth(0.5)
        if col == 0:
            cell.set_text_props(ha="left")
            cell._loc = "left"
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.93")
        elif significant[row - 1] and ours[col]:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#fde3d6")
    table.scale(1, 1.35)
    ax.set_title(f"Table 1 · permutation test over {int(perm_df['n'].iloc[0])} seed-only replicas, "
                 f"{int(perm_df['m'].iloc[0]):,} permutations\n"
                 f"bold: our Holm-adjusted p < {alpha:g}; r, R², ρ: with validation loss",
                 fontsize="medium")
    return fig
