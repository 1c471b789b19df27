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
# # 03 · Measure neural collapse
#
# Computes every measure of paper §5 (NC1, NC2, GNC2, NC3, UNC3, NC4) from each checkpoint's statistics into `<out_dir>/metrics/`, then writes the results table `runs/<profile>/results.csv`: one row per model with its run specification, size, validation loss and accuracy, and every measure.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml
results_table = "runs/smoke/results.csv"  # where the table is written
progress = True  # tqdm progress bars

# %%
from lib import analysis, dispatch, plots
from lib.profiles import load_profile

cfg = load_profile(profile)
plots.apply_style()

# %%
# NBVAL_IGNORE_OUTPUT
dispatch.measure_all(cfg, progress=progress)

# %%
table = analysis.build_results_table(cfg.out_path, cfg.checkpoints())
analysis.save_table(table, results_table)
print(f"{len(table)} models -> {results_table}")

# %% [markdown]
# ## The results table
#
# The measures at a glance, to 4 significant figures (full precision in the CSV).

# %%
analysis.round_sig(table, 4)

# %% [markdown]
# ## Summary
#
# Range of each quantity over the population (4 significant figures).

# %%
analysis.summary_numbers(table)
