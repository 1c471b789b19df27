# %% [markdown]
# # 07 · Collapse through depth
#
# The paper measures collapse only at the top, in the LM head's input. Here the same class statistics are gathered from every layer's residual stream, in the same forward passes as the top (`collect.layers` in the profile; `python -m linguistic_collapse collect --layers all`), and NC1, NC2 and GNC2 are measured per layer. NC3, UNC3 and NC4 need a classifier and exist only at the top.
#
# Residual-stream index *i* of a model with *L* blocks: 0 is the embeddings (token plus position), 0 < *i* < *L* the output of block *i*, and *L* the last block's output **before** the final layer norm. Relative depth is *i* / *L*. The top features (the final norm's output, the LM head's input) are drawn as stars beyond relative depth 1: the final norm rescales every token, so they differ from index *L*.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
progress = True  # tqdm bars here; `make paper` sets False and prints progress lines instead

# %%
from linguistic_collapse.figures.depth import depth_figure
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.series import paper
from linguistic_collapse.tables import depth, results
from linguistic_collapse.tables.findings import Findings

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
# One line per model through its residual stream, coloured by width; stars: the head input. The first panel is the headline, Galanti's CDNV, which is scale-free. The CDNVs and the log-kernel variance are on log scales. The log-norm CV and the interference CV are coefficients of variation whose mean can be near 0, so a few layers of a few models reach hundreds: their panels use a log scale when every value is positive and otherwise a symmetric-log scale, linear within ±1 and logarithmic beyond. Each panel's title says which scale it uses.

# %%
show_and_save(depth_figure(table), "layers_depth", cfg)

# %% [markdown]
# ## What the population shows
#
# **The headline is Galanti's CDNV**, (σ²_c + σ²_c′) / (2‖μ_c − μ_c′‖²). It is scale-free: multiplying every feature by s leaves it unchanged. The paper's CDNV divides by ‖μ_c − μ_c′‖⁴, so it scales as 1/s². It therefore falls through depth partly because the un-normalised residual stream grows from block to block, whether or not the classes collapse.
#
# Per measure, over the models with at least two blocks: in how many models the measure is monotone in depth (falling or rising all the way). Also where the largest change between consecutive layers happens, on the measure's analysis scale (log10 for the CDNVs and the log-kernel variance): the most common step, the share of models with it there, and the median relative depth at which that step ends.

# %%
summary = depth.depth_summary(table)
results.round_sig(summary, 3)

# %% [markdown]
# ## Head input against the last residual stream
#
# The final layer norm rescales every token. Per model, each CDNV at the head input (after the norm) divided by its value at the last residual stream (index *L*, before it). A scale-free measure should barely move, and the paper's CDNV should move a lot.

# %%
ratios = depth.head_vs_residual(table)
ratio_summary = depth.ratio_summary(ratios)
results.round_sig(ratio_summary, 3)

# %% [markdown]
# The sentences below are computed from these tables.

# %%
exceptions = depth.not_monotone(table) if len(table) else []
print(depth.describe_depth(summary, ratio_summary, exceptions))

# %% [markdown]
# ## How the features grow through depth
#
# Does the paper's CDNV fall because the classes collapse or because the features grow? Per model and residual stream, from its statistics file: the mean class-mean norm ‖μ_c‖, the root-mean-square distance between class means and the within-class sd. The paper's CDNV scales as 1/s² when every feature is multiplied by s, so with s the class-mean distance its change from the embeddings to the last residual stream splits exactly into −2 × the distances' growth and the change of CDNV × distance² (the CDNV at a fixed class-mean distance). All changes in dex (log10 of last / first). Per depth *L*, how many models have Galanti's scale-free CDNV falling, from end to end and monotonically.

# %%
growth = depth.growth_table(cfg.profile.out_path, table)
growth_summary = depth.growth_summary(growth)
per_depth = depth.by_depth(table, growth_summary)
results.save_table(growth_summary, cfg.table_path("layers_growth.csv"))
results.save_table(per_depth, cfg.table_path("layers_by_depth.csv"))
results.round_sig(per_depth, 3)

# %%
print(depth.describe_growth(growth_summary, per_depth))

# %%
findings = Findings(cfg.table_path("findings.md"), "07_layers")
depth.record_findings(findings, summary, ratio_summary, exceptions)
depth.record_growth_findings(findings, growth_summary, per_depth)
print(f"findings -> {paper.short(findings.save())}")
