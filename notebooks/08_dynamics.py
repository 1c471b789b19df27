# %% [markdown]
# # 08 · Collapse through training
#
# Does collapse lead or lag the loss? The paper measures its models only at the end of epochs. Here the runs of the profile's `dynamics` section are trained again, in `<out_dir>/dynamics/<run>/`, with the grid's code, seeds and data order, and saved at evenly spaced steps (`dynamics.points_per_epoch` per epoch, plus the initialisation). Each snapshot's validation loss is computed on every validation block, as in the grid; its statistics are collected and measured as in `02_collect` and `03_measure`, but on the first `dynamics.max_train_blocks` training blocks only, to bound the cost (the table below gives the cap). The measures are therefore comparable across snapshots of a run, not to the grid's full-statistics values in `results.csv`.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead

# %%
from linguistic_collapse.figures.dynamics import dynamics_figure, summary_markdown
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.pipeline import dynamics
from linguistic_collapse.series import paper
from linguistic_collapse.tables import lead_lag, results
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, progress=progress)
cfg

# %% [markdown]
# What runs: per run, the snapshots, the optimiser steps in all and between two snapshots, and the blocks each snapshot's statistics read.

# %%
dynamics.plan_summary(cfg.profile)

# %%
# NBVAL_IGNORE_OUTPUT
table = dynamics.run_all(cfg.profile, progress=cfg.progress)
results.save_table(table, cfg.table_path("dynamics.csv"))
print(f"{len(table)} snapshots of {table['run'].nunique()} runs -> {paper.short(cfg.table_path('dynamics.csv'))}")

# %% [markdown]
# ## Check: the epoch-end snapshots are the grid's checkpoints
#
# The retraining must reproduce the grid run it follows. At each epoch end, `same_weights` compares the snapshot's weights (sha256) with the grid checkpoint of that epoch, and the two validation losses are shown side by side (`None`/NaN: the grid run is not trained).

# %%
results.round_sig(dynamics.grid_agreement(cfg.profile, table), 6)

# %% [markdown]
# ## Measures and loss against tokens seen
#
# One panel per quantity, the validation loss first, one colour per run; measures analysed on a log scale are drawn on one. A dotted line in a run's colour marks the point from which the quantity has covered 90 % of its total change (initialisation to the last snapshot) for good. A measure whose dotted line lies left of the loss's settles before the loss; right of it, after. Runs with the same seed see the same blocks in their first epoch, so their curves share the x axis. A value at initialisation far outside the range of the later snapshots (a CV whose mean is near 0 at random weights, such as the interference CV or the duality CV) would squash the curve: the panel is fitted to the later snapshots and that value is drawn as a triangle at the panel's edge with its value written beside it.

# %%
fig = dynamics_figure(table)
show_and_save(fig, "dynamics", cfg)

# %% [markdown]
# ## Lead and lag
#
# Per run, measure and setting: `step_measure` and `step_loss`, the optimiser steps at which each has covered a `threshold` fraction of its total change for good (interpolated between snapshots; the measure on its analysis scale); `lag_steps` = their difference (positive: the measure settles after the loss); `settles` says before, with (within one snapshot interval) or after. Six settings: three thresholds (80, 90 and 95 %) × two baselines for the total change, from the initialisation (step 0) and from the first snapshot after it. The second matters: a measure that is ill-conditioned at random initialisation (a coefficient of variation whose mean is near zero, such as the duality CV while the mean cosine is about 0) jumps at the first snapshot and, counted from step 0, then seems to settle early. `xcorr_lag` is the lag, in snapshots, that maximises the correlation between the changes of the measure and of the loss from one snapshot to the next (positive: the measure's changes follow the loss's), and `xcorr_r` that correlation; with about ten snapshots per epoch it is coarse.

# %%
lags = lead_lag.lead_lag_settings(table)
results.save_table(lags, cfg.table_path("dynamics_lead_lag.csv"))
results.round_sig(lags.drop(columns=["tokens_measure", "tokens_loss"]), 3)

# %% [markdown]
# ## What survives every setting
#
# Per run and measure: how many of the six settings say before, with and after; `robust` is the verdict when all six agree (else "mixed"); `never_before` / `never_after` are the weaker one-sided statements (no setting says before / after). Then per measure across the runs: `all_runs` is a verdict that holds in every run under every setting.
#
# The dynamics runs have **one seed each and no replicates** (the `cpu` profile has two runs): a verdict here describes these trajectories and is not an estimate with an uncertainty. Only what holds under all six settings in both runs is a statement this notebook makes; the rest depends on the threshold or the baseline.

# %%
robust = lead_lag.robust_verdicts(lags)
robust

# %%
both = lead_lag.robust_statements(robust)
both

# %%
summary_markdown(lags)

# %%
findings = Findings(cfg.table_path("findings.md"), "08_dynamics")
lead_lag.record_findings(findings, table, lags)
print(f"findings -> {paper.short(findings.save())}")
