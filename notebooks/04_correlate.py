# %% [markdown]
# # 04 · Collapse and generalization
#
# Reads a results table (any table with the schema of `03_measure`) and reproduces Figures 1–3 of the paper: validation loss against each measure, one point per model coloured by parameter count, with the R² of a least-squares line. Beyond the paper: Spearman ρ beside Pearson r, intervals from a bootstrap that resamples whole design points (depth × width × training length: a run's checkpoints, its seed replicas and its weight-decay twin are not independent models), each measure's partial correlation with loss after controlling for log parameter count and epochs trained, the paper's claims judged by the pre-registered decision rule (`docs/preregistration.md`) on one model per design point, every measure's r with its sign, a test of "collapse develops with scale and training", and a robustness row on classes with at least `min_count` samples. Writes `correlations.csv`, `claims.csv`, `signs.csv`, `scaling.csv` and `min_count.csv` beside the table, and this notebook's section of `findings.md`.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
results_table = None  # override: any table with the schema of runs/<profile>/results.csv (needs output_dir)
output_dir = None  # override: folder for tables and figures instead of runs/ and figures/<profile>/

# %%
from linguistic_collapse.figures.loss import loss_vs_measures
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.figures.scaling import scaling_figures
from linguistic_collapse.nc import registry
from linguistic_collapse.series import paper
from linguistic_collapse.tables import analysis, claims, results, robustness, scaling
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir)
table = results.load_table(cfg.results_table)
print(f"{len(table)} models from {paper.short(cfg.results_table)}")
findings = Findings(cfg.table_path("findings.md"), "04_correlate")

# %% [markdown]
# ## Correlations with validation loss
#
# Per measure (log10 where the registry says): Pearson r and R² with 95% intervals from a bootstrap over whole design points (n_clusters of them; n_eff is Kish's effective number of equal clusters), Spearman ρ, and the partial r after controlling for log parameters and epochs trained.

# %%
corr = analysis.correlate(table, n_bootstrap=cfg.profile.analysis.n_bootstrap, seed=cfg.profile.analysis.seed)
results.save_table(corr, cfg.table_path("correlations.csv"))
claims.record_correlation_findings(findings, corr)
analysis.correlation_summary(corr)

# %% [markdown]
# ## Figure 1 · NC1, GNC2, UNC3 and NC4 against validation loss
#
# The paper's claim: all four improve with scale and correlate with lower validation loss, NC1 (CDNV), GNC2 and NC4 strongly. Compare the R² in each panel. Loss-plateau models (found as in the claims below) are triangles; the dashed line fits all models, the solid one the rest, and each panel gives both R².

# %%
fig = loss_vs_measures(table, registry.figure_measures("fig1"), corr)
show_and_save(fig, "fig1_loss_vs_nc", cfg)

# %% [markdown]
# ## Figure 2 · Equinormness, equiangularity, hyperspherical uniformity
#
# Claim: equinormness relates negligibly to loss, equiangularity somewhat, GNC2 strongly — class means head toward a uniform spread on the sphere, not a simplex ETF. Equiangularity is shown as the paper measures it: the coefficient of variation of the interference (std / |mean| of the pairwise cosines).

# %%
fig = loss_vs_measures(table, registry.figure_measures("fig2"), corr)
show_and_save(fig, "fig2_loss_vs_nc2", cfg)

# %% [markdown]
# ## Figure 3 · Self-duality (NC3) and uniform duality (UNC3)
#
# Claim: NC3 relates negligibly to loss, UNC3 clearly. Markers and lines as in Figure 1.

# %%
fig = loss_vs_measures(table, registry.figure_measures("fig3"), corr)
show_and_save(fig, "fig3_loss_vs_nc3", cfg)

# %% [markdown]
# ## Companions · the classic NC1, the ETF error and the self-duality error
#
# Not in the paper's figures, but logged by the authors (`etf_error`, `dual_error`; R² 0.738 and 0.666 on their 230 models) or expected by every NC researcher (Papyan's Tr(Σ_W Σ_B⁺)/K): which NC2 and NC3 statistic is read changes how strongly it tracks loss.

# %%
fig = loss_vs_measures(table, registry.figure_measures("companions"), corr)
show_and_save(fig, "fig_companions", cfg)

# %% [markdown]
# ## The CDNV and its units
#
# The paper's CDNV divides by ‖μ_c − μ_c'‖⁴, Galanti's by ‖μ_c − μ_c'‖². Only the second is unchanged when all features are rescaled, so compare how much each moves from the narrowest to the widest models.

# %%
print(claims.CDNV_UNITS_NOTE)
fig = loss_vs_measures(table, ["nc1_cdnv", "nc1_cdnv_galanti"], corr)
show_and_save(fig, "cdnv_units", cfg)
units = claims.cdnv_units_table(table)
claims.record_units_findings(findings, units)
results.round_sig(units, 3)

# %% [markdown]
# ## Scaling
#
# Each measure against model size, then against width (one line per depth) and against epochs trained (one line per width and weight decay): does collapse develop with scale and training? Each figure's title says what it averages over.

# %%
for name, fig in scaling_figures(table, registry.MEASURES).items():
    show_and_save(fig, name, cfg)

# %% [markdown]
# ## Does collapse develop with scale and training? (pre-registered test)
#
# On one model per design point (the final checkpoint of each grid run): a width step joins consecutive widths within one depth and training length, a training step 1 → 3 epochs within one depth and width. A step improves when the measure moves in its collapse direction. Per measure and axis, the share of improving steps and one-sided exact sign tests, Holm-adjusted over the 8 pre-registered tests (CDNV, GNC2, UNC3, NC4 × width, training): the claim holds when Holm p for improvement is below 0.05, fails when Holm p for the opposite is, and is inconclusive otherwise. The other measures follow as exploratory rows (no verdict).

# %%
primary = claims.grid_final_rows(table)
scale_df = scaling.scaling_table(primary, exploratory=registry.MEASURES)
results.save_table(scale_df, cfg.table_path("scaling.csv"))
scaling.record_findings(findings, scale_df)
results.round_sig(scale_df, 3)

# %% [markdown]
# ## Do the paper's claims hold here?
#
# Each claim of Figures 1–3 as the paper states it: direction (more collapse, lower loss), strength as the R² band of the paper's word, and the comparisons (GNC2 against equiangularity and against a simplex ETF, UNC3 against NC3), judged by the pre-registered rule printed above the table. The primary population is one model per design point (the final checkpoint of each grid run; seed replicas are for Table 1 only), the secondary the same without the loss-plateau models. A verdict reads the whole 95 % interval (holds, fails or inconclusive); where a deciding limit lies within 2 Monte-Carlo standard errors of an edge it is reported "at the edge", counted neither as holds nor as fails. Beside each R²: r with its interval (its sign) and whether that sign differs from the authors' r on their models of our training lengths, and ΔR² against those models (equivalence within ±0.10; their 230 models for reference only).

# %%
claims_df = claims.claims_table(table, n_bootstrap=cfg.profile.analysis.n_bootstrap,
                                seed=cfg.profile.analysis.seed)
results.save_table(claims_df, cfg.table_path("claims.csv"))
claims.record_claim_findings(findings, claims_df)
print(claims_df.attrs["rule"])
print(claims_df.attrs["plateau"])
print(claims_df.attrs["authors_side"])
claims_df

# %% [markdown]
# ## Every measure's r, with its sign
#
# On the primary population: r and R² of loss on each measure with 95 % design-point intervals, the direction verdict (r on the collapse side of 0) and the authors' r on their 1- and 3-epoch models; a sign that differs from theirs is flagged. Tr(Σ_W Σ_B⁺)/K depends on Σ_B's weakest directions, so it is read under three relative eigenvalue cut-offs (1e-10, 1e-6, 1e-3, where the table has them) and a direction is stated only if all agree.

# %%
signs = claims.signs_table(table, n_bootstrap=cfg.profile.analysis.n_bootstrap,
                           seed=cfg.profile.analysis.seed)
results.save_table(signs, cfg.table_path("signs.csv"))
claims.record_signs_findings(findings, signs)
print(signs.attrs["pinv"])
results.round_sig(signs, 3)

# %% [markdown]
# ## Rare classes: the measures on classes with at least `min_count` samples
#
# Each measure's R² with loss on all classes beside the same measure recomputed on the classes with at least `analysis.min_count` samples (95 % intervals over design points). If a relation came from the noisy statistics of rare classes it would weaken here.

# %%
robust = robustness.min_count_table(table, n_bootstrap=cfg.profile.analysis.n_bootstrap, seed=cfg.profile.analysis.seed)
results.save_table(robust, cfg.table_path("min_count.csv"))
robustness.record_findings(findings, robust)
findings.save()
print(robust.attrs["note"])
results.round_sig(robust, 3)
