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
# # 06 · Individual tokens
#
# Per-token variability (mean pairwise CDNV with every other class) and interference (mean cosine of its centred mean with every other), for the largest model of the run; their relation to token frequency; the most and least collapsed tokens; first names against the average token.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml
results_table = "runs/smoke/results.csv"  # picks the largest model
progress = True  # tqdm progress bars

# %%
from lib import analysis, collect, data, dispatch, measure, plots
from lib.profiles import load_profile

cfg = load_profile(profile)
plots.apply_style()

# %%
table = analysis.load_table(results_table)
ck = analysis.largest_model(table)
stats = collect.load_stats(dispatch.stats_path(cfg.out_path, ck))
tokenizer = data.load_tokenizer(cfg.out_path / "corpus" / "tokenizer")
tokens = analysis.token_table(measure.per_class_measures(stats, progress=progress), tokenizer)
print(f"model {ck}: {len(tokens)} token classes")

# %% [markdown]
# ## Variability and interference against frequency
#
# First names in red. The paper reports that names are far more collapsed (lower variability and interference) than the average token, and that the average token's interference is positive.

# %%
fig = plots.token_frequency_figure(tokens)
plots.show_and_save(fig, "tokens_frequency", profile)

# %% [markdown]
# ## First names against the average token

# %%
names = analysis.first_name_table(tokens)
analysis.round_sig(names, 4)

# %% [markdown]
# ## Most and least collapsed tokens (by variability)

# %%
analysis.round_sig(analysis.most_and_least_collapsed(tokens, k=10), 4)

# %% [markdown]
# ## Explorer
#
# In JupyterLab: pick a token to see its count, variability, interference and nearest classes.

# %%
# NBVAL_IGNORE_OUTPUT
from lib.explorer import token_explorer

token_explorer(tokens, stats)
