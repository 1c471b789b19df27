"""A small ipywidgets explorer for the token analysis: pick a token, see its collapse figures."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from torch import Tensor

from lib.analysis import nearest_classes


def token_summary(tokens: pd.DataFrame, stats: Mapping[str, Tensor], token_id: int, k: int = 5) -> pd.DataFrame:
    """One token's count, variability, interference and its ``k`` nearest classes by cosine."""
    row = tokens.loc[tokens["token_id"] == token_id]
    if row.empty:
        raise ValueError(f"token id {token_id} is not a class of this model (never a train target)")
    near = nearest_classes(stats, token_id, k=k)
    near = near.merge(tokens[["token_id", "token", "count"]], on="token_id", how="left")
    head = row[["token_id", "token", "count", "variability", "interference"]].assign(cosine=float("nan"))
    return pd.concat([head.assign(role="token"), near.assign(role="nearest")], ignore_index=True)


def token_explorer(tokens: pd.DataFrame, stats: Mapping[str, Tensor], k: int = 5):
    """A dropdown over tokens (most frequent first) that shows ``token_summary`` for the choice."""
    import ipywidgets as widgets
    from IPython.display import display

    ordered = tokens.sort_values("count", ascending=False)
    options = [(f"{t!r} (id {i}, n={n})", int(i)) for t, i, n in
               zip(ordered["token"], ordered["token_id"], ordered["count"], strict=True)]
    picker = widgets.Dropdown(options=options, description="token")
    out = widgets.Output()

    def show(change=None) -> None:
        out.clear_output()
        with out:
            display(token_summary(tokens, stats, picker.value, k=k).round(4))

    picker.observe(show, names="value")
    show()
    return widgets.VBox([picker, out])
