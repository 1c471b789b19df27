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
# # 01 · Train the population
#
# Reads the profile `profiles/<profile>.yaml` and trains every run of its grid — widths × depths × variants (epochs, weight decay) plus the seed-only replicas — into `<out_dir>/models/<run>/checkpoint-<epoch>/`. Finished runs are skipped, interrupted ones resume from their last epoch. Writes nothing else; `02_extract` reads the checkpoints.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml
progress = True  # tqdm progress bars (papermill runs turn them off)

# %%
from lib import analysis, dispatch, plots, train
from lib.profiles import load_profile

cfg = load_profile(profile)
plots.apply_style()

# %% [markdown]
# ## The grid
#
# One row per training run, with its estimated cost (FLOPs from 6·N·tokens plus attention; GPU-hours at the profile's assumed utilisation).

# %%
jobs = dispatch.dry_run(cfg)
jobs

# %% [markdown]
# ## Train
#
# The corpus is tokenized once and cached; each run trains with AdamW and linear decay, one checkpoint per epoch. This is the long step.

# %%
# NBVAL_IGNORE_OUTPUT
corpus = train.prepare_profile_corpus(cfg, progress=progress)
dispatch.train_all(cfg, corpus=corpus, progress=progress)

# %%
print(f"corpus: {corpus.n_train_blocks} train blocks, {corpus.n_val_blocks} validation "
      f"blocks of {corpus.context_len} tokens; vocabulary {corpus.vocab_size}")

# %% [markdown]
# ## Training curves
#
# Validation loss (nats per token) and top-1 accuracy after each epoch, one line per run, coloured by parameter count. Larger models should reach lower loss, and longer training should keep lowering it.

# %%
runs = analysis.load_run_results(cfg.out_path)
fig = plots.training_curves(runs)
plots.show_and_save(fig, "training_curves", profile)

# %% [markdown]
# ## Validation loss over width × depth
#
# Final validation loss of each architecture for every variant (epochs, weight decay): the spread the correlations of `04_correlate` rely on.

# %%
train_table = analysis.training_table(cfg.out_path, cfg.runs())
for (epochs, wd), _ in train_table.groupby(["epochs", "weight_decay"]):
    fig = plots.loss_grid_heatmap(train_table, epochs=epochs, weight_decay=wd)
    plots.show_and_save(fig, f"loss_grid_e{epochs}_wd{wd:g}", profile)

# %% [markdown]
# ## Summary

# %%
analysis.training_summary(train_table)
