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
from lib.figures import plots
from lib.series import paper
from lib.stages import pipeline
from lib.tables import results, sensitivity

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir,
                           progress=progress)
cfg

# %%
# NBVAL_IGNORE_OUTPUT
pipeline.measure_all(cfg.profile, progress=cfg.progress)

# %%
table = results.build_results_table(cfg.profile.out_path, cfg.profile.checkpoints())
results.save_table(table, cfg.results_table)
print(f"{len(table)} models -> {paper.short(cfg.results_table)}")

# %% [markdown]
# ## The results table
#
# The measures at a glance, to 4 significant figures (full precision in the CSV).

# %%
results.round_sig(table, 4)

# %% [markdown]
# ## Summary
#
# Range of each quantity over the population (4 significant figures).

# %%
results.summary_numbers(table)

# %% [markdown]
# ## Sensitivity to the statistics sample
#
# The class statistics above use every training block. For the profile's `sensitivity.runs` (models spanning the grid), the statistics are collected again from the first 1/8, 1/4 and 1/2 of the training blocks, and every measure is recomputed. The table gives, per measure, the largest relative change (over those models) from the smallest and from the half sample to the whole split; "stable" means halving the sample moves it by less than 10 %. Fewer tokens leave more classes seen only a few times (a class seen once has zero within-class variance by construction), which is what moves the variability measures.

# %%
# NBVAL_IGNORE_OUTPUT
measured = pipeline.sensitivity_all(cfg.profile, progress=cfg.progress)
print(f"{len(measured)} (model, fraction) statistics measured")

# %%
sens = sensitivity.sensitivity_table(cfg.profile)
results.save_table(sens, cfg.table_path("sensitivity.csv"))
results.round_sig(sens[["checkpoint", "fraction", "train_tokens", "num_classes", "median_class_count", "frac_singletons"]], 3)

# %%
fig = sensitivity.sensitivity_figure(sens)
plots.show_and_save(fig, "sensitivity", cfg)
results.round_sig(sensitivity.stability(sens), 3)
