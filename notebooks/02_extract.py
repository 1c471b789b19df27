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
# # 02 · Extract the statistics
#
# For every measured checkpoint, three passes over the data (paper §4): pass 1 sums features per next-token class on the training blocks, pass 2 sums squared distances to those class means, pass 3 compares the LM head's decision with the nearest class centre on the validation blocks. Results go to `<out_dir>/stats/<run>-ck<epoch>/stats.safetensors`; finished files are skipped, interrupted passes resume.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml
progress = True  # tqdm progress bars

# %%
from lib import collect, dispatch, plots
from lib.profiles import load_profile

cfg = load_profile(profile)
plots.apply_style()

# %%
# NBVAL_IGNORE_OUTPUT
dispatch.collect_all(cfg, progress=progress)

# %% [markdown]
# ## What was collected
#
# One row per checkpoint: number of classes (tokens seen as a next-token target), tokens in each pass, and the hash tying passes 2 and 3 to the pass-1 means.

# %%
overview = collect.stats_overview(cfg.out_path / "stats")
overview
