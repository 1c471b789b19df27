"""Every neural-collapse measure once, with what the rest of the project needs to know about it.

One ``Measure`` per column that ``linguistic_collapse.nc.measure`` computes: its label and unit, the scale it is
analysed and plotted on (log10 for the CDNVs and the log-kernel variance), which way collapse
goes, the paper's figure and claim about it, and the R^2 of validation loss on the same
statistic over the authors' own 230 models (docs/paper.md section 6). Plots, the analysis,
the notebooks and the README table read this module; ``linguistic_collapse.nc.measure`` computes exactly
``MEASURES`` (a test checks both ways). No torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Measure:
    """One measure and its metadata.

    ``transform`` "log" means log10 of the value is correlated and plotted on a log axis.
    ``collapse`` "lower"/"higher": which values mean more collapse. ``claim`` is the strength of
    the relation to validation loss that the paper reports ("strong", "clear", "some",
    "negligible"; "" when it states none); ``authors_r2`` is R^2 of loss on this statistic (on
    its ``transform`` scale) over the authors' 230 models, None where not known.
    """

    name: str
    label: str  # "<property tag>: <short name>", e.g. "NC1: CDNV"
    prop: str  # the neural-collapse property, e.g. "within-class variability"
    transform: str = "linear"  # "log" or "linear"
    collapse: str = "lower"  # "lower" or "higher"
    unit: str = ""  # empty: dimensionless
    figures: tuple[str, ...] = ()  # paper figures showing it against loss
    claim: str = ""
    authors_r2: float | None = None
    definition: str = ""

    @property
    def short(self) -> str:
        """The label without its property tag, e.g. "CDNV"."""
        return self.label.split(": ", 1)[-1]

    @property
    def expected_sign(self) -> int:
        """Sign of r(loss, measure) when more collapse goes with lower loss: +1 for measures
        that fall with collapse, -1 for those that rise."""
        return 1 if self.collapse == "lower" else -1


_ALL = [
    Measure("nc1_cdnv", "NC1: CDNV", "within-class variability", "log", figures=("fig1",),
            claim="strong", authors_r2=0.916,
            definition="mean over pairs of (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^4)"),
    Measure("nc1_cdnv_galanti", "NC1: CDNV (Galanti)", "within-class variability", "log",
            definition="mean over pairs of (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^2), scale-free"),
    Measure("nc1_pinv", "NC1: Tr(Σ_W Σ_B⁺)/K", "within-class variability", "log", figures=("companions",),
            definition="Tr(Sigma_W Sigma_B^+) / K, Sigma_W pooled within-class covariance, "
                       "Sigma_B = M^T M / K of the centred means (Papyan et al. 2020)"),
    Measure("nc2_norm_cv", "NC2: norm CV", "equinormness", figures=("fig2",), claim="negligible",
            authors_r2=0.079, definition="std_c ||m_c|| / mean_c ||m_c||"),
    Measure("nc2_lognorm_cv", "NC2: log-norm CV", "equinormness", authors_r2=0.865,
            definition="std_c log||m_c|| / mean_c log||m_c||"),
    Measure("nc2_interference_mean", "NC2: interference mean", "equiangularity", unit="cosine",
            definition="mean over pairs of cos(m_c, m_c')"),
    Measure("nc2_interference_std", "NC2: interference std", "equiangularity", unit="cosine",
            authors_r2=0.875, definition="population std over pairs of cos(m_c, m_c')"),
    Measure("nc2_interference_cv", "NC2: interference CV", "equiangularity", figures=("fig2",),
            claim="some", authors_r2=0.35,
            definition="std / |mean| over pairs of cos(m_c, m_c')"),
    Measure("nc2_etf_error", "NC2: ETF error", "equiangularity", figures=("companions",), authors_r2=0.738,
            definition="||G / ||G||_F - (I - 11^T / K) / sqrt(K - 1)||_F, G = M M^T of the "
                       "centred means (simplex-ETF error)"),
    Measure("gnc2_logkernel_mean", "GNC2: log-kernel mean", "hyperspherical uniformity",
            definition="mean over pairs of log(1 / ||u_c - u_c'||), u = m / ||m||"),
    Measure("gnc2_logkernel_var", "GNC2: log-kernel variance", "hyperspherical uniformity", "log",
            figures=("fig1", "fig2"), claim="strong", authors_r2=0.898,
            definition="population variance over pairs of log(1 / ||u_c - u_c'||)"),
    Measure("nc3_duality_mean", "NC3: duality mean", "self-duality", collapse="higher",
            unit="cosine", figures=("fig3",), claim="negligible", authors_r2=0.31,
            definition="mean_c cos(w_c, m_c)"),
    Measure("unc3_duality_cv", "UNC3: duality CV", "uniform duality", figures=("fig1", "fig3"),
            claim="clear", authors_r2=0.693,
            definition="std_c cos(w_c, m_c) / |mean_c cos(w_c, m_c)| (on |mean|: a random "
                       "model's mean duality can be negative)"),
    Measure("nc3_duality_error", "NC3: duality error", "self-duality", figures=("companions",), authors_r2=0.666,
            definition="||G / ||G||_F - (I - 11^T / K) / sqrt(K - 1)||_F, G = W M^T of the LM-head "
                       "rows and centred means of the K classes (self-duality error)"),
    Measure("nc4_agreement", "NC4: classifier agreement", "classifier agreement",
            collapse="higher", unit="fraction of tokens", figures=("fig1",), claim="strong",
            authors_r2=0.891,
            definition="token-weighted fraction of validation tokens where LM head and NCC agree"),
]

REGISTRY: dict[str, Measure] = {m.name: m for m in _ALL}
MEASURES: list[str] = list(REGISTRY)
# nc1_pinv's relative eigenvalue cut-offs, each reported (the first is linguistic_collapse.nc.measure.PINV_RTOL):
# a statement about it is made only when it holds under all of them (docs/preregistration.md)
PINV_RTOLS: tuple[float, ...] = (1e-10, 1e-6, 1e-3)
NEEDS_SCATTER: tuple[str, ...] = ("nc1_pinv",)  # need the pooled within-class scatter sw
# from class moments alone: no classifier, no pooled scatter (inner layers have neither)
GEOMETRY: list[str] = [m for m in MEASURES if m.startswith(("nc1", "nc2", "gnc2"))
                       and m not in NEEDS_SCATTER]

FIGURES: dict[str, str] = {
    "fig1": "Figure 1: NC1, GNC2, UNC3 and NC4 against validation loss",
    "fig2": "Figure 2: equinormness, equiangularity and hyperspherical uniformity",
    "fig3": "Figure 3: self-duality (NC3) and uniform duality (UNC3)",
    "companions": "Companions of Figures 1-3: the classic NC1 and the ETF and self-duality errors",
}


@dataclass(frozen=True)
class Comparison:
    """A comparative claim: ``better`` tracks validation loss more closely (higher R^2) than
    ``worse``; ``figure`` is where the paper makes it."""

    better: str
    worse: str
    figure: str
    text: str


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("gnc2_logkernel_var", "nc2_interference_cv", "fig2",
               "hyperspherical uniformity (GNC2) tracks loss better than equiangularity (NC2)"),
    Comparison("unc3_duality_cv", "nc3_duality_mean", "fig3",
               "uniform duality (UNC3) tracks loss better than self-duality (NC3)"),
)


# Strength words as R² bands [low, high): the paper's words read as fractions of loss variance
# explained, cut where a scatter plot visibly changes (no trend / a trend / tight / near a line).
BANDS: dict[str, tuple[float, float]] = {"negligible": (0.0, 0.15), "some": (0.15, 0.5),
                                         "clear": (0.5, 0.8), "strong": (0.8, 1.0)}


def band(r2: float) -> str:
    """The strength word of an R² (``BANDS``: lower edge inclusive; 1.0 is "strong")."""
    if not 0.0 <= r2 <= 1.0:
        raise ValueError(f"R² must lie in [0, 1], got {r2}")
    return next(name for name, (lo, hi) in BANDS.items() if lo <= r2 < hi or (hi == 1.0 and r2 == 1.0))


def get(name: str) -> Measure:
    """The registry entry of ``name``; ValueError naming the known measures otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown measure {name!r}; lib/linguistic_collapse/nc/registry.py knows {MEASURES}") from None


def figure_measures(figure: str) -> list[str]:
    """The measures a paper figure plots against loss, in registry order (e.g. "fig1")."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; lib/linguistic_collapse/nc/registry.py knows {list(FIGURES)}")
    return [m.name for m in _ALL if figure in m.figures]


def claimed_measures() -> list[str]:
    """Measures about which the paper states a strength of relation to loss (Figures 1-3)."""
    return [m.name for m in _ALL if m.claim]


def measure_transform(measure: str) -> str:
    """The analysis scale of a column, "log" or "linear" (columns not registered: linear)."""
    info = REGISTRY.get(measure)
    return info.transform if info is not None else "linear"


def analysis_scale(values: Sequence[float], measure: str) -> np.ndarray:
    """A measure's values on the scale it is analysed on: log10 for the registry's log
    measures (NaN where a value is not positive, so callers drop it), else as given."""
    v = np.asarray(values, dtype=float)
    if measure_transform(measure) == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v > 0, np.log10(v), np.nan)
    return v


def axis_label(measure: str) -> str:
    """Axis label: short name, unit (if any) and "log scale" where plotted so."""
    info = REGISTRY.get(measure)
    if info is None:
        return measure
    notes = [n for n in (info.unit, "log scale" if info.transform == "log" else "") if n]
    return f"{info.short} ({', '.join(notes)})" if notes else info.short


def label(measure: str) -> str:
    """Display label of a column ("NC1: CDNV"); the column name itself if not a measure."""
    info = REGISTRY.get(measure)
    return info.label if info is not None else measure


def markdown_table() -> str:
    """The measures as a Markdown table (for the README): name, property, definition, collapse
    direction, scale, the paper's claim and the authors' R^2."""
    rows = ["| measure | property | definition | collapse | scale | paper | authors' R² |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in _ALL:
        r2 = "" if m.authors_r2 is None else f"{m.authors_r2:.3g}"
        definition = m.definition.replace("||", "‖").replace("|", "\\|")  # table-safe
        rows.append(f"| {m.label} `{m.name}` | {m.prop} | {definition} | {m.collapse} | "
                    f"{m.transform} | {m.claim} | {r2} |")
    return "\n".join(rows)
