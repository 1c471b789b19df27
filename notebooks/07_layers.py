# %% [markdown]
# # 07 · Collapse through depth
#
# The paper measures collapse only at the top, in the LM head's input. Here the same class statistics are gathered from every layer's residual stream, in the same forward passes as the top (`collect.layers` in the profile; `python -m lib collect --layers all`), and NC1, NC2 and GNC2 are measured per layer. NC3, UNC3 and NC4 need a classifier and exist only at the top.
#
# Residual-stream index *i* of a model with *L* blocks: 0 is the embeddings (token plus position), 0 < *i* < *L* the output of block *i*, and *L* the last block's output **before** the final layer norm. Relative depth is *i* / *L*. The top features (the final norm's output, the LM head's input) are drawn as stars beyond relative depth 1: the final norm rescales every token, so they differ from index *L*.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead

# %%
from lib.figures import plots, plots_layers
from lib.series import paper
from lib.tables import depth, results

cfg = paper.notebook_setup(profile, progress=progress)
cfg

# %% [markdown]
# ## One row per model and layer
#
# Read from `<out_dir>/metrics/<model>.json` (section `layers`, written by 03_measure) and saved as `layers.csv` beside the results table.

# %%
table = depth.layers_table(cfg.profile.out_path, cfg.profile.checkpoints())
results.save_table(table, cfg.table_path("layers.csv"))
print(f"{table['name'].nunique()} models, {len(table)} rows -> {paper.short(cfg.table_path('layers.csv'))}")
results.round_sig(table[table["name"] == table["name"].iloc[-1]], 4) if len(table) else table

# %% [markdown]
# ## Every measure against relative depth
#
# One line per model through its residual stream, coloured by width; stars: the head input. The CDNVs and the log-kernel variance are on log scales.

# %%
plots.show_and_save(plots_layers.depth_figure(table), "layers_depth", cfg)

# %% [markdown]
# ## What the population shows
#
# Per measure, over the models with at least two residual layers: the fraction of models whose measure is monotone in depth (falling or rising all the way), how many fall and how many rise, and where the largest change between consecutive layers happens (on the measure's analysis scale, log10 for the CDNVs and the log-kernel variance): the most common step, the share of models with it there, and the median relative depth at which that step ends. The sentences below are computed from this table.

# %%
summary = depth.depth_summary(table)
results.round_sig(summary, 3)

# %%
print(depth.describe_depth(summary))
