# %% [markdown]
# # 06 · Individual tokens
#
# Per-token variability (mean pairwise CDNV with every other class) and interference (mean cosine of its centred mean with every other), for the largest model of the run; their relation to token frequency; the most and least collapsed tokens; first names against the average token. Rankings and comparisons use only classes with at least `min_count` training samples: a class seen once has zero variance by construction.

# %% tags=["parameters"]
profile = "smoke"  # profiles/<name>.yaml: the single source of every other value
results_table = None  # override: any table with the schema of runs/<profile>/results.csv (needs output_dir)
progress = True  # tqdm bars here; `make paper` sets False
output_dir = None  # override: folder for tables and figures instead of runs/ and figures/<profile>/

# %%
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.figures.save import show_and_save
from linguistic_collapse.figures.tokens import token_explorer, token_frequency_figure
from linguistic_collapse.lm import data
from linguistic_collapse.nc import measure, stats_file
from linguistic_collapse.series import paper
from linguistic_collapse.tables import results
from linguistic_collapse.tables import tokens as tok
from linguistic_collapse.tables.findings import Findings

cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir,
                           progress=progress)

# %%
table = results.load_table(cfg.results_table)
ck = results.largest_model(table)
layout = Layout(cfg.profile.out_path)
stats, _ = stats_file.read_stats(layout.stats(ck))
tokenizer = data.load_tokenizer(layout.tokenizer_dir)
tokens = tok.token_table(measure.measure_stats(stats, per_class=True, progress=progress)[1], tokenizer)
min_count = cfg.profile.analysis.min_count  # classes with fewer samples are left out of rankings
print(f"model {ck}: {len(tokens)} token classes")
print(tok.exclusion_note(tokens, min_count=min_count))

# %% [markdown]
# ## Variability and interference against frequency
#
# First names in red; every class is drawn. The paper reports that names are far more collapsed (lower variability and interference) than the average token, and that the average token's interference is positive.

# %%
fig = token_frequency_figure(tokens)
show_and_save(fig, "tokens_frequency", cfg)

# %% [markdown]
# ## First names against the average token
#
# Both over the classes with at least `min_count` samples.

# %%
names = tok.first_name_table(tokens, min_count=min_count)
results.round_sig(names, 4)

# %% [markdown]
# ## Distinct names
#
# One name can have several tokens: with and without a leading space (at the start of a story or after a quote), and in different cases. Such variants are merged into one name: their counts are summed, and their variability and interference are averaged, weighted by each variant's sample count. The samples are not pooled into one class, because that would change every other class's measures too. Some names on the list are also common nouns (e.g. "kitty", "teddy").

# %%
distinct = tok.distinct_names(tokens, min_count=min_count)
name_tokens = int((names["kind"] == "first name").sum())
print(f"{name_tokens} name tokens are {len(distinct)} distinct names")
results.round_sig(distinct, 4)

# %% [markdown]
# ## Are names more collapsed than words of the same frequency?
#
# Names are frequent, and frequency alone changes both measures, so the comparison is frequency-matched. All classes with at least `min_count` samples are merged into words (case and space variants, as above) and binned by log10 count (four bins per decade). The distinct names are compared with the other words in the bins that hold at least one name, by a two-sided Mann-Whitney U test per measure. `rank_biserial` = 2U/(n₁n₂) − 1 lies in [−1, 1] and is negative when the names are lower. **One model only** (the largest): this is a description of that model, not a population result.

# %%
test = tok.name_test(tokens, min_count=min_count)
results.round_sig(test, 4)

# %% [markdown]
# ## Do only a couple of very frequent names come near the average token? (pre-registered test)
#
# Among first-name tokens with at least `min_count` samples, a name comes near the average when its log10 variability is at least the mean log10 variability of all tokens with at least `min_count` samples. The paper's statement holds when at most 2 names come near and each is in the top quartile of name frequency, fails when 5 or more come near or any near name is below the median name frequency, and is inconclusive otherwise. Interference follows the same rule as an exploratory check. **One model only** (the largest).

# %%
near = tok.names_near_average(tokens, min_count=min_count, measure="variability")
near_interference = tok.names_near_average(tokens, min_count=min_count, measure="interference")
for n in (near, near_interference):
    print(f"{n.attrs['measure']}: {n.attrs['n_near']} of {n.attrs['n_names']} names near the average "
          f"({n.attrs['near'] or 'none'}): {n.attrs['verdict']}")
results.round_sig(near, 4)

# %% [markdown]
# ## Most and least collapsed tokens (by variability)
#
# The `analysis.extreme_tokens` classes with the lowest and the highest variability, among those with at least `min_count` samples.

# %%
results.round_sig(tok.most_and_least_collapsed(tokens, k=cfg.profile.analysis.extreme_tokens, min_count=min_count), 4)

# %% [markdown]
# ## Explorer
#
# In JupyterLab: pick a token to see its count, variability, interference and nearest classes.

# %%
# NBVAL_IGNORE_OUTPUT
token_explorer(tokens, stats)

# %%
findings = Findings(cfg.table_path("findings.md"), "06_tokens")
tok.record_findings(findings, str(ck), tokens, names, distinct, test, min_count)
tok.record_near_findings(findings, near, exploratory=False)
tok.record_near_findings(findings, near_interference, exploratory=True)
print(f"findings -> {paper.short(findings.save())}")
