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
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead
results_table = None  # override: write the table elsewhere (needs output_dir too)
output_dir = None  # override: folder for tables and figures instead of runs/ and figures/<profile>/

# %%
from lib import analysis, paper, pipeline

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir,
                           progress=progress)
cfg

# %%
# NBVAL_IGNORE_OUTPUT
pipeline.measure_all(cfg.profile, progress=cfg.progress)

# %%
table = analysis.build_results_table(cfg.out_path, cfg.checkpoints())
analysis.save_table(table, cfg.results_table)
print(f"{len(table)} models -> {paper.short(cfg.results_table)}")

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
