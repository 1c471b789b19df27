# %% [markdown]
# # 01 · Train the population
#
# Reads the profile `profiles/<profile>.yaml` and trains every run of its grid — widths × depths × variants (epochs, weight decay) plus the seed-only replicas — into `<out_dir>/models/<run>/checkpoint-<epoch>/`. Finished runs are skipped, interrupted ones resume from their last epoch. `02_collect` reads the checkpoints.
#
# To step through: set `profile` below (`smoke` runs in minutes, offline) and run the cells in order. Every other setting comes from the profile; figures go to `figures/<profile>/`.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead

# %%
from lib.figures import plots, plots_training, walkthrough
from lib.series import paper
from lib.stages import costs, pipeline
from lib.tables import results

cfg = paper.notebook_setup(profile, progress=progress)
cfg

# %% [markdown]
# ## The corpus
#
# The text is tokenized once (a byte-level BPE trained on the training split, or the pretrained tokenizer the profile names) and cut into blocks of `context_len` tokens; the cache is reused by every later step. Each block gives `context_len - 1` next-token targets: the classes whose features `02_collect` collects.

# %%
# NBVAL_IGNORE_OUTPUT
corpus = pipeline.prepare_profile_corpus(cfg.profile, progress=cfg.progress)

# %%
walkthrough.corpus_sizes(corpus)

# %% [markdown]
# A training block, decoded, and its first tokens as the model sees them:

# %%
tokenizer = corpus.tokenizer()
block = corpus.train_blocks()[0]
print(tokenizer.decode(block.tolist()))
print(tokenizer.convert_ids_to_tokens(block[:24].tolist()))

# %% [markdown]
# How often each token occurs as a training target, by frequency rank (log-log; a Zipf-like line). The rare classes on the right are the ones `02_collect` sees only a handful of times.

# %%
fig = walkthrough.token_frequency_rank(corpus.train_blocks(), tokenizer)
plots.show_and_save(fig, "corpus_token_frequency", cfg)

# %% [markdown]
# ## The grid
#
# One row per training run, with its estimated cost (FLOPs from 6·N·tokens plus attention; GPU-hours at the profile's assumed utilisation).

# %%
jobs = costs.dry_run(cfg.profile)
jobs

# %% [markdown]
# ## Train
#
# Each run trains with AdamW and linear decay, one checkpoint per epoch. This is the long step: the outer bar counts runs (with an ETA), the inner one the batches of the current run.

# %%
# NBVAL_IGNORE_OUTPUT
pipeline.train_all(cfg.profile, corpus=corpus, progress=cfg.progress)

# %% [markdown]
# ## Training curves
#
# Validation loss (nats per token) and top-1 accuracy after each epoch, one line per run, coloured by parameter count; seed-only replicas of one architecture are drawn thin and dashed so they stay apart. Larger models should reach lower loss, and longer training should keep lowering it.

# %%
runs = results.load_run_results(cfg.profile.out_path)
fig = plots_training.training_curves(runs)
plots.show_and_save(fig, "training_curves", cfg)

# %% [markdown]
# ## Validation loss over width × depth
#
# Final validation loss of each architecture for every variant (epochs, weight decay), all on one colour scale: the spread the correlations of `04_correlate` rely on.

# %%
train_table = results.training_table(cfg.profile.out_path, cfg.profile.runs())
fig = plots_training.loss_grid_heatmaps(train_table)
plots.show_and_save(fig, "loss_grid", cfg)

# %% [markdown]
# ## Summary

# %%
results.training_summary(train_table)
