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
from linguistic_collapse.figures.class_counts import token_frequency_rank
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.figures.training import loss_grid_heatmaps, training_curves
from linguistic_collapse.pipeline import costs, jobs
from linguistic_collapse.series import paper
from linguistic_collapse.tables import results, sample_sizes, training_checks
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, progress=progress)
cfg

# %% [markdown]
# ## The corpus
#
# The text is tokenized once (a byte-level BPE trained on the training split, or the pretrained tokenizer the profile names) and cut into blocks of `context_len` tokens; the cache is reused by every later step. Each block gives `context_len - 1` next-token targets: the classes whose features `02_collect` collects.

# %%
# NBVAL_IGNORE_OUTPUT
corpus = jobs.prepare_profile_corpus(cfg.profile, progress=cfg.progress)

# %%
sample_sizes.corpus_sizes(corpus)

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
fig = token_frequency_rank(corpus.train_blocks(), tokenizer)
show_and_save(fig, "corpus_token_frequency", cfg)

# %% [markdown]
# ## The grid
#
# One row per training run, with its estimated cost (FLOPs from 6·N·tokens plus attention; GPU-hours at the profile's assumed utilisation).

# %%
cost_table = costs.dry_run(cfg.profile)
cost_table

# %% [markdown]
# ## Train
#
# Each run trains with AdamW and linear decay, one checkpoint per epoch. This is the long step: the outer bar counts runs (with an ETA), the inner one the batches of the current run.

# %%
# NBVAL_IGNORE_OUTPUT
jobs.train_all(cfg.profile, corpus=corpus, progress=cfg.progress)

# %% [markdown]
# ## Training curves
#
# Validation loss (nats per token) and top-1 accuracy after each epoch, one line per run, coloured by parameter count; seed-only replicas of one architecture are drawn with open circles on thin dashed lines, each offset a little to the right of its epoch, so they stay apart from each other and from the grid runs (filled circles, solid lines). Larger models should reach lower loss, and longer training should keep lowering it.

# %%
runs = results.load_run_results(cfg.profile.out_path)
fig = training_curves(runs)
show_and_save(fig, "training_curves", cfg)

# %% [markdown]
# ## Validation loss over width × depth
#
# Final validation loss of each architecture for every variant (epochs, weight decay), all on one colour scale: the spread the correlations of `04_correlate` rely on.

# %%
train_table = results.training_table(cfg.profile.out_path, cfg.profile.runs())
fig = loss_grid_heatmaps(train_table)
show_and_save(fig, "loss_grid", cfg)

# %% [markdown]
# ## Summary

# %%
results.training_summary(train_table)

# %% [markdown]
# ## Weight decay: how much can it do here?
#
# AdamW's decoupled decay multiplies every decayed weight by 1 − lr_t · wd at each step. Over a whole run, gradients aside, the weights shrink by the factor ∏ₜ (1 − lr_t · wd), computed below from the profile's learning rate, schedule and number of steps. A shrink of a few percent is all the 0.1-against-5e-4 contrast can do in this grid: the paper's weight-decay effect appears after 10 epochs, which this grid does not train, so the contrast has no power to show it. Next to it: in how many pairs of measured models that differ only in weight decay (same architecture, epochs, seed and checkpoint) the larger decay gives the higher validation loss.

# %%
shrink = training_checks.profile_decay_shrink(cfg.profile, corpus.n_train_blocks)
results.save_table(shrink, cfg.table_path("weight_decay_shrink.csv"))
models = training_checks.measured_rows(train_table, cfg.profile.checkpoints())  # as in results.csv
wds = sorted(models["weight_decay"].astype(float).unique())
wd_pairs = training_checks.weight_decay_pairs(models, wds[0], wds[-1])
print(training_checks.describe_pairs(wd_pairs, wds[0], wds[-1]))
results.round_sig(shrink, 4)

# %% [markdown]
# ## How close is the loss plateau to the unigram cross-entropy?
#
# A model that predicts only the training split's token frequencies has the loss of their entropy, the unigram cross-entropy (nats per token, in-sample on the training targets). Beside it: the plateau models that `linguistic_collapse.tables.claims.plateau_mask` sets apart (above the widest gap in the sorted validation losses of the measured checkpoints), their losses, and the best of the other models.

# %%
unigram = training_checks.unigram_cross_entropy(corpus.train_blocks())
plateau = training_checks.plateau_summary(models, unigram)
print(f"unigram cross-entropy of the training split: {unigram:.3f} nats/token")
print(plateau["rule"])
rows = training_checks.plateau_against_unigram(models, unigram)
results.round_sig(rows[rows["plateau"]], 4)

# %%
findings = Findings(cfg.table_path("findings.md"), "01_train")
training_checks.record_findings(findings, unigram, plateau, shrink, wd_pairs, wds[-1])
print(f"findings -> {paper.short(findings.save())}")
