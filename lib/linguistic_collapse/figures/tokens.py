"""The per-token views of ``06_tokens``: variability and interference against a token's train
count with first names highlighted (``token_frequency_figure``), and a dropdown over the tokens
that shows one token's row and nearest classes (``token_explorer``). The numbers come from
``linguistic_collapse.tables.tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from linguistic_collapse.figures.style import log_axis, panel_grid
from linguistic_collapse.tables.tokens import name_set, token_summary


def token_frequency_figure(tokens_df: pd.DataFrame, names: Sequence[str] | None = None) -> Figure:
    """Per-token variability (log y) and interference against train count (log x), first names
    highlighted."""
    names = name_set(names)
    data = tokens_df[tokens_df["count"] > 0]
    is_name = data["token"].str.lower().isin(names).to_numpy()
    fig, axes = panel_grid(2, 2)
    for ax, col, label in zip(axes, ["variability", "interference"],
                              ["variability (CDNV, log scale)", "interference (cosine)"],
                              strict=True):
        ax.scatter(data["count"], data[col], s=6, color="0.65", alpha=0.5, label="all tokens", rasterized=True)
        ax.scatter(data["count"][is_name], data[col][is_name], s=30, color="tab:red", edgecolor="black",
                   linewidth=0.5, label="first names", zorder=3)
        ax.set_xscale("log")
        if col == "variability" and (data[col] > 0).all():
            log_axis(ax, "y")
        ax.set(xlabel="train count of token (log scale)", ylabel=label, title=f"Token {col} vs frequency")
    axes[0].legend(loc="best", fontsize="small")
    return fig


def token_explorer(tokens: pd.DataFrame, stats: Mapping[str, Any], k: int = 5) -> Any:
    """A dropdown over tokens (most frequent first) that shows ``token_summary`` for the choice."""
    # display libraries: loaded only when shown in a notebook
    import ipywidgets as widgets
    from IPython.display import display

    ordered = tokens.sort_values("count", ascending=False)
    options = [(f"{t!r} (id {i}, n={n})", int(i)) for t, i, n in
               zip(ordered["token"], ordered["token_id"], ordered["count"], strict=True)]
    picker = widgets.Dropdown(options=options, description="token")
    out = widgets.Output()

    def show(change: Any = None) -> None:
        out.clear_output()
        with out:
            display(token_summary(tokens, stats, picker.value, k=k).round(4))

    picker.observe(show, names="value")
    show()
    return widgets.VBox([picker, out])
