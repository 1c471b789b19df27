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
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.figures.sensitivity import sensitivity_figure
from linguistic_collapse.pipeline import jobs
from linguistic_collapse.series import paper
from linguistic_collapse.tables import claims, results, sensitivity
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir,
                           progress=progress)
cfg

# %%
# NBVAL_IGNORE_OUTPUT
jobs.measure_all(cfg.profile, progress=cfg.progress)

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
# The class statistics above use every training block. For the profile's `sensitivity.runs` (models spanning the grid), the statistics are collected again on `sensitivity.draws` random subsamples (without replacement, reproducible from `sensitivity.seed`) of 1/8, 1/4 and 1/2 of the training blocks, and every measure is recomputed. Each change from the full pass is read on the measure's analysis scale (dex for the log measures, the value's own units otherwise), as mean ± sd over the draws; a model's *shift* is that mean. A shift shared by every model leaves a cross-model R² unchanged; only the spread of the shifts between models can move it. So at each fraction a measure is *stable* when the 95 % upper confidence limit of the sd of the models' shifts (chi-square with n − 1 degrees of freedom: sd · √((n − 1)/χ²₀.₀₅,ₙ₋₁)) is at most `STABLE_SHARE` = 0.1 of the sd between the models of the primary population (the grid's final checkpoints, one per design point), on the same scale: spread of that size adds at most 1 % to the variance between models, whether or not it correlates with loss. The shared shift is reported, not judged. With few models the upper limit is several times the observed sd, so the table also gives the fewest models (`min_models`) at which the observed spread could be shown stable. Fewer tokens leave more classes seen only a few times (a class seen once has zero within-class variance by construction) and fewer classes seen at all, so the fixed-K variant below measures every sample of a run on only the classes present in all of them.

# %%
# NBVAL_IGNORE_OUTPUT
measured = jobs.sensitivity_all(cfg.profile, progress=cfg.progress)
print(f"{len(measured)} (model, fraction, draw) statistics measured")

# %%
population = claims.grid_final_rows(table)  # the primary population: one model per design point
sens = sensitivity.sensitivity_table(cfg.profile)
results.save_table(sens, cfg.table_path("sensitivity.csv"))
results.save_table(sensitivity.changes(sens, population), cfg.table_path("sensitivity_changes.csv"))
results.round_sig(sens[["checkpoint", "fraction", "draw", "train_tokens", "num_classes", "median_class_count", "frac_singletons"]], 3)

# %%
fig = sensitivity_figure(sens, population)
show_and_save(fig, "sensitivity", cfg)
stab = sensitivity.stability(sens, population)
results.save_table(stab, cfg.table_path("sensitivity_stability.csv"))
print(sensitivity.stability_rule(int(stab["models"].max()), len(population)))
print(results.round_sig(sensitivity.limits_table(), 3).to_string(index=False))
results.round_sig(stab, 3)

# %% [markdown]
# Fixed K: the same samples measured on only the classes present in every sample of their run (K per run below), so the class set does not change with the sample.

# %%
# NBVAL_IGNORE_OUTPUT
sens_k = sensitivity.fixed_k_table(cfg.profile)
results.save_table(sens_k, cfg.table_path("sensitivity_fixed_k.csv"))
stab_k = sensitivity.stability(sens_k, population)
results.save_table(stab_k, cfg.table_path("sensitivity_fixed_k_stability.csv"))
print(sens_k.groupby("checkpoint")["num_classes"].first().to_string())
results.round_sig(stab_k, 3)

# %%
findings = Findings(cfg.table_path("findings.md"), "03_measure")
sensitivity.record_findings(findings, stab, sens, "sensitivity_stability.csv", "sensitivity.csv")
sensitivity.record_findings(findings, stab_k, sens_k, "sensitivity_fixed_k_stability.csv", "sensitivity_fixed_k.csv",
                            prefix="sensitivity fixed-K")
print(f"findings -> {paper.short(findings.save())}")
