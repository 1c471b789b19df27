# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Collapse and generalization
#
# Reads a results table (any table with the schema of `03_measure`) and reproduces Figures 1–3 of the paper: validation loss against each measure, one point per model coloured by parameter count, with the R² of a least-squares line. Beyond the paper: each measure's partial correlation with validation loss after controlling for log parameter count and epochs, and bootstrap confidence intervals for R². Writes `correlations.csv` beside the table.

# %% tags=["parameters"]
profile = "smoke"  # figures go to figures/<profile>/
results_table = "runs/smoke/results.csv"  # input table
analysis_n_bootstrap = 200  # bootstrap resamples for the R² intervals
analysis_seed = 0  # seed of the bootstrap

# %%
from pathlib import Path

from lib import analysis, plots

plots.apply_style()
table = analysis.load_table(results_table)
print(f"{len(table)} models from {results_table}")

# %%
corr = analysis.correlate(table, n_bootstrap=analysis_n_bootstrap, seed=analysis_seed)
analysis.save_table(corr, Path(results_table).with_name("correlations.csv"))
analysis.round_sig(corr, 3)

# %% [markdown]
# ## Figure 1 · NC1, GNC2, UNC3 and NC4 against validation loss
#
# The paper's claim: all four improve with scale and correlate with lower validation loss, NC1 (CDNV), GNC2 and NC4 strongly. Compare the R² in each panel.

# %%
fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES["fig1_loss_vs_nc"], corr)
plots.show_and_save(fig, "fig1_loss_vs_nc", profile)

# %% [markdown]
# ## Figure 2 · Equinormness, equiangularity, hyperspherical uniformity
#
# Claim: equinormness relates negligibly to loss, equiangularity somewhat, GNC2 strongly — class means head toward a uniform spread on the sphere, not a simplex ETF.

# %%
fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES["fig2_loss_vs_nc2"], corr)
plots.show_and_save(fig, "fig2_loss_vs_nc2", profile)

# %% [markdown]
# ## Figure 3 · Self-duality (NC3) and uniform duality (UNC3)
#
# Claim: NC3 relates negligibly to loss, UNC3 clearly.

# %%
fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES["fig3_loss_vs_nc3"], corr)
plots.show_and_save(fig, "fig3_loss_vs_nc3", profile)

# %% [markdown]
# ## Scaling
#
# Each measure against width, depth, epochs and weight decay: does collapse develop with scale and training?

# %%
fig = plots.scaling_grid(table, analysis.MEASURES)
plots.show_and_save(fig, "scaling", profile)

# %% [markdown]
# ## Summary
#
# R² and partial correlation per measure, to 3 significant figures.

# %%
analysis.correlation_summary(corr)

# %% [markdown]
# ## Does the paper's claim hold here?
#
# For each measure of Figures 1–3, the strength of its relation to validation loss that the paper reports, and whether this population agrees (strong: R² ≥ 0.5; clear: ≥ 0.2; some: ≥ 0.1; negligible: < 0.1).

# %%
analysis.paper_claims(corr)
