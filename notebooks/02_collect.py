# %% [markdown]
# # 02 · Collect the statistics
#
# For every measured checkpoint, the top-layer features of every next-token position are reduced to per-class statistics (paper §4): on the training blocks, per class $c$ the count $N_c$, the feature sum (giving the class mean $\mu_c$) and the within-class sum of squared distances to $\mu_c$; on the validation blocks, whether the LM head's decision agrees with the nearest class mean (NC4). Results go to `<out_dir>/stats/<run>-ck<epoch>/stats.safetensors`; finished files are skipped, interrupted passes resume.
#
# First one model, step by step, to see what the passes accumulate; then every other checkpoint.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead

# %%
from linguistic_collapse.core import names
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.figures.class_counts import class_count_figure
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.nc import accumulate, stats_file
from linguistic_collapse.pipeline import jobs
from linguistic_collapse.series import paper
from linguistic_collapse.tables import sample_sizes
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, progress=progress)
cfg

# %% [markdown]
# ## One model
#
# The largest architecture's final checkpoint, collected on its own first (the bars count tokens per pass).

# %%
# NBVAL_IGNORE_OUTPUT
corpus = jobs.prepare_profile_corpus(cfg.profile, progress=cfg.progress)
ck = names.largest(cfg.profile.checkpoints())
path = Layout(cfg.profile.out_path).stats(ck)
jobs.collect_checkpoints(cfg.profile, [ck], corpus=corpus, progress=cfg.progress)  # kept if current
print(f"model {ck}: {paper.short(path)}")

# %% [markdown]
# What the file holds: per-class tensors over the vocabulary (`V` classes, features of width `D`), and the metadata that records the blocks and tokens each pass read.

# %%
stats, meta = stats_file.read_stats(path)
sample_sizes.stats_contents(stats, meta)

# %% [markdown]
# ### How many samples does each class get?
#
# Every measure is built from class means, so a class seen once has a mean but no within-class spread, and a class never seen has neither. The histogram shows the class counts $N_c$ (log scale); the table how many of the vocabulary's classes fall below each threshold (`analysis.count_thresholds`).

# %%
counts = stats["counts"].numpy()
thresholds = cfg.profile.analysis.count_thresholds
fig = class_count_figure(counts, thresholds=thresholds)
show_and_save(fig, "class_counts", cfg)
sample_sizes.class_count_thresholds(counts, thresholds=thresholds)

# %% [markdown]
# The sample every model's statistics rest on (the same blocks for every model), recorded in `findings.md`:

# %%
findings = Findings(cfg.table_path("findings.md"), "02_collect")
summary = sample_sizes.record_findings(findings, counts, meta)
findings.save()
summary

# %% [markdown]
# ### The passes are tied by the class means
#
# The validation pass decides each token's nearest class mean with the means of *this* file's training pass. The file records a hash of the means it used; it must equal the hash of the means recomputed from the stored counts and sums.

# %%
recomputed = accumulate.means_hash(accumulate.class_means(stats["counts"], stats["sums"]))
print(f"recorded means hash   {meta['means_hash'][:16]}…")
print(f"recomputed means hash {recomputed[:16]}…  tied: {recomputed == meta['means_hash']}")

# %% [markdown]
# ## Every checkpoint
#
# The same for the rest of the population (finished files are skipped; the outer bar counts checkpoints).

# %%
# NBVAL_IGNORE_OUTPUT
jobs.collect_all(cfg.profile, corpus=corpus, progress=cfg.progress)

# %% [markdown]
# ## What was collected
#
# One row per checkpoint: number of classes (tokens seen as a next-token target), tokens in each pass, and whether the later sums used this file's own class means.

# %%
sample_sizes.stats_overview(Layout(cfg.profile.out_path).stats_dir)
