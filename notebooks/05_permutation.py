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
# # 05 · Permutation test over seed-only replicas (Table 1)
#
# Among models that differ only in their data-shuffling seed, does a measure still track validation loss? For each measure: R², Pearson r and the p-value from random permutations of the losses (fraction of permuted |r| at least the observed |r|). Writes `permutation.csv` beside the results table.

# %% tags=["parameters"]
profile = "smoke"  # the profile names the replica group (grid.replicas)
results_table = "runs/smoke/results.csv"  # input table
analysis_n_permutations = 1000  # random permutations of the losses
analysis_seed = 0  # seed of the permutations

# %%
from pathlib import Path

from lib import analysis, plots
from lib.profiles import load_profile

plots.apply_style()
table = analysis.load_table(results_table)
grid = load_profile(profile).grid
replicas = analysis.replica_rows(table, grid.replicas, main_seed=grid.seed)
print(f"{len(replicas)} seed-only replicas of {replicas['run'].iloc[0] if len(replicas) else 'none'}")

# %%
perm = analysis.table1(replicas, n_permutations=analysis_n_permutations, seed=analysis_seed)
analysis.save_table(perm, Path(results_table).with_name("permutation.csv"))
analysis.round_sig(perm, 3)

# %% [markdown]
# ## Table 1 as a figure
#
# |r| per measure; red bars are significant at p < 0.05. The paper finds NC1, GNC2 and UNC3 (among others) significant across 21 seeds of one architecture.

# %%
fig = plots.permutation_figure(perm)
plots.show_and_save(fig, "table1_permutation", profile)
