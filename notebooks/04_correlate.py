# %% [markdown]
# # 04 · Collapse and generalization
#
# Reads a results table (any table with the schema of `03_measure`) and reproduces Figures 1–3 of the paper: validation loss against each measure, one point per model coloured by parameter count, with the R² of a least-squares line. Beyond the paper: Spearman ρ beside Pearson r, intervals from a bootstrap that resamples whole training runs (a run's checkpoints are not independent models), each measure's partial correlation with loss after controlling for log parameter count and epochs trained, and the paper's claims tested on three populations. Writes `correlations.csv` beside the table.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
results_table = None  # override: any table with the schema of runs/<profile>/results.csv (needs output_dir)
output_dir = None  # override: folder for tables and figures instead of runs/ and figures/<profile>/

# %%
from lib.figures import plots, plots_loss
from lib.nc import registry
from lib.series import paper
from lib.tables import analysis, claims, results

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir)
table = results.load_table(cfg.results_table)
print(f"{len(table)} models from {paper.short(cfg.results_table)}")

# %% [markdown]
# ## Correlations with validation loss
#
# Per measure (log10 where the registry says): Pearson r and R² with 95% intervals from a bootstrap over whole training runs, Spearman ρ, and the partial r after controlling for log parameters and epochs trained.

# %%
corr = analysis.correlate(table, n_bootstrap=cfg.profile.analysis.n_bootstrap, seed=cfg.profile.analysis.seed)
results.save_table(corr, cfg.table_path("correlations.csv"))
analysis.correlation_summary(corr)

# %% [markdown]
# ## Figure 1 · NC1, GNC2, UNC3 and NC4 against validation loss
#
# The paper's claim: all four improve with scale and correlate with lower validation loss, NC1 (CDNV), GNC2 and NC4 strongly. Compare the R² in each panel.

# %%
fig = plots_loss.loss_vs_measures(table, registry.figure_measures("fig1"), corr)
plots.show_and_save(fig, "fig1_loss_vs_nc", cfg)

# %% [markdown]
# ## Figure 2 · Equinormness, equiangularity, hyperspherical uniformity
#
# Claim: equinormness relates negligibly to loss, equiangularity somewhat, GNC2 strongly — class means head toward a uniform spread on the sphere, not a simplex ETF. Equiangularity is shown as the paper measures it: the coefficient of variation of the interference (std / |mean| of the pairwise cosines).

# %%
fig = plots_loss.loss_vs_measures(table, registry.figure_measures("fig2"), corr)
plots.show_and_save(fig, "fig2_loss_vs_nc2", cfg)

# %% [markdown]
# ## Figure 3 · Self-duality (NC3) and uniform duality (UNC3)
#
# Claim: NC3 relates negligibly to loss, UNC3 clearly.

# %%
fig = plots_loss.loss_vs_measures(table, registry.figure_measures("fig3"), corr)
plots.show_and_save(fig, "fig3_loss_vs_nc3", cfg)

# %% [markdown]
# ## The CDNV and its units
#
# The paper's CDNV divides by ‖μ_c − μ_c'‖⁴, Galanti's by ‖μ_c − μ_c'‖². Only the second is unchanged when all features are rescaled, so compare how much each moves from the narrowest to the widest models.

# %%
print(claims.CDNV_UNITS_NOTE)
fig = plots_loss.loss_vs_measures(table, ["nc1_cdnv", "nc1_cdnv_galanti"], corr)
plots.show_and_save(fig, "cdnv_units", cfg)
results.round_sig(claims.cdnv_units_table(table), 3)

# %% [markdown]
# ## Scaling
#
# Each measure against model size, then against width (one line per depth) and against epochs trained (one line per width and weight decay): does collapse develop with scale and training? Each figure's title says what it averages over.

# %%
for name, fig in plots.scaling_figures(table, registry.MEASURES).items():
    plots.show_and_save(fig, name, cfg)

# %% [markdown]
# ## Do the paper's claims hold here?
#
# Each claim of Figures 1–3 as the paper states it: direction (more collapse, lower loss), strength against the same statistic on the authors' 230 models, and the two comparisons. Three populations: all models, without the loss-plateau models, and final checkpoints only. The two lines above the table say how plateau models were found and how "holds?" is decided.

# %%
claims_df = claims.claims_table(table, n_bootstrap=cfg.profile.analysis.n_bootstrap, seed=cfg.profile.analysis.seed)
results.save_table(claims_df, cfg.table_path("claims.csv"))
print(claims_df.attrs["plateau"])
print(claims_df.attrs["rule"])
claims_df
