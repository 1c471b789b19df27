# %% [markdown]
# # 05 · Permutation test over seed-only replicas (Table 1)
#
# Among models that differ only in their data-shuffling seed, does a measure still track validation loss? For each measure: Pearson r, R², Spearman ρ and the p-value from m random permutations of the losses, p = (b + 1)/(m + 1) with b the permuted |r| at least the observed |r| (so never 0), and the Holm-adjusted p. Beside each r: its Fisher 95 % interval, the authors' r on their own 21 seed replicas with the p of the difference (Fisher z), and the authors' permutation and Holm p (from their published files, `lib/linguistic_collapse/tables/authors_facts.py`). Writes `permutation.csv` beside the results table and this notebook's section of `findings.md`.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
results_table = None  # override: any table with the schema of runs/<profile>/results.csv (needs output_dir)
output_dir = None  # override: folder for tables and figures instead of runs/ and figures/<profile>/

# %%
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.figures.table1 import table1_figure
from linguistic_collapse.series import paper
from linguistic_collapse.tables import analysis, results
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.replicas import pc1_note, record_findings, reviewed_table1

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir)
table = results.load_table(cfg.results_table)
replicas = results.replica_rows(table, cfg.profile.grid.replicas, main_seed=cfg.profile.grid.seed)
print(f"{len(replicas)} seed-only replicas of {replicas['run'].iloc[0] if len(replicas) else 'none'}")

# %% [markdown]
# ## Table 1
#
# p is shown as "≤ 1.0e-4" (for m = 10⁴) where no permutation reached the observed |r|: 1/(m + 1) is the smallest p the test can give, so it says only that p is at most that floor. The interval on r is Fisher's (z = atanh r, standard error 1/√(n − 3)); "difference p" tests our r against the authors' replica r as two independent samples. The last columns are the authors' own Table 1, recomputed from their files with the same test (same m and seed).

# %%
settings = cfg.profile.analysis
perm = analysis.table1(replicas, n_permutations=settings.n_permutations, seed=settings.seed,
                       alpha=settings.permutation_alpha)
perm = reviewed_table1(perm, replicas)
results.save_table(perm, cfg.table_path("permutation.csv"))
print(analysis.MULTIPLICITY_NOTE.format(k=len(perm)))
print(pc1_note(perm))
analysis.table1_display(perm)

# %% [markdown]
# ## Table 1 as a figure
#
# |r| per measure, significant ones (Holm p below `analysis.permutation_alpha`, 0.05 in the shipped profiles) marked. The paper finds NC1, GNC2 and UNC3 (among others) significant across 21 seeds of one architecture.

# %%
fig = table1_figure(perm, alpha=settings.permutation_alpha)
show_and_save(fig, "table1_permutation", cfg)

# %% [markdown]
# ## Findings
#
# The numbers the README quotes from this notebook, each with its column of `permutation.csv`.

# %%
findings = Findings(cfg.table_path("findings.md"), "05_permutation")
record_findings(findings, perm, alpha=settings.permutation_alpha)
findings.save()
print(findings.markdown())
