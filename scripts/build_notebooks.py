"""Write the six source notebooks of notebooks/ from the cell texts below (run once after editing).

The notebooks are the sources users open; this script only keeps their structure consistent
(title, tagged parameters cell, thin calls into lib). Outputs are left empty.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lib.paths import NOTEBOOKS_DIR

IGNORE = "# NBVAL_IGNORE_OUTPUT\n"

def setup(modules: str) -> str:
    """The first code cell after the parameters: imports of ``lib`` modules, profile, style."""
    return (f"from lib import {modules}\nfrom lib.profiles import load_profile\n\n"
            "cfg = load_profile(profile)\nplots.apply_style()")


def params(text: str):
    cell = new_code_cell(text)
    cell.metadata["tags"] = ["parameters"]
    return cell


def md(text: str):
    return new_markdown_cell(text)


def code(text: str, ignore_output: bool = False):
    return new_code_cell((IGNORE if ignore_output else "") + text)


NOTEBOOKS = {
    "01_train": [
        md("# 01 · Train the population\n\n"
           "Reads the profile `profiles/<profile>.yaml` and trains every run of its grid — widths × "
           "depths × variants (epochs, weight decay) plus the seed-only replicas — into "
           "`<out_dir>/models/<run>/checkpoint-<epoch>/`. Finished runs are skipped, interrupted "
           "ones resume from their last epoch. Writes nothing else; `02_extract` reads the "
           "checkpoints."),
        params('profile = "smoke"  # profiles/<name>.yaml\n'
               "progress = True  # tqdm progress bars (papermill runs turn them off)"),
        code(setup("analysis, dispatch, plots, train")),
        md("## The grid\n\nOne row per training run, with its estimated cost (FLOPs from "
           "6·N·tokens plus attention; GPU-hours at the profile's assumed utilisation)."),
        code("jobs = dispatch.dry_run(cfg)\njobs"),
        md("## Train\n\nThe corpus is tokenized once and cached; each run trains with AdamW and "
           "linear decay, one checkpoint per epoch. This is the long step."),
        code("corpus = train.prepare_profile_corpus(cfg, progress=progress)\n"
             "dispatch.train_all(cfg, corpus=corpus, progress=progress)", ignore_output=True),
        code("print(f\"corpus: {corpus.n_train_blocks} train blocks, {corpus.n_val_blocks} validation \"\n"
             "      f\"blocks of {corpus.context_len} tokens; vocabulary {corpus.vocab_size}\")"),
        md("## Training curves\n\nValidation loss (nats per token) and top-1 accuracy after each "
           "epoch, one line per run, coloured by parameter count. Larger models should reach "
           "lower loss, and longer training should keep lowering it."),
        code("runs = analysis.load_run_results(cfg.out_path)\n"
             "fig = plots.training_curves(runs)\n"
             "plots.show_and_save(fig, \"training_curves\", profile)"),
        md("## Validation loss over width × depth\n\nFinal validation loss of each architecture "
           "for every variant (epochs, weight decay): the spread the correlations of `04_correlate` "
           "rely on."),
        code("train_table = analysis.training_table(cfg.out_path, cfg.runs())\n"
             "for (epochs, wd), _ in train_table.groupby([\"epochs\", \"weight_decay\"]):\n"
             "    fig = plots.loss_grid_heatmap(train_table, epochs=epochs, weight_decay=wd)\n"
             "    plots.show_and_save(fig, f\"loss_grid_e{epochs}_wd{wd:g}\", profile)"),
        md("## Summary"),
        code("analysis.training_summary(train_table)"),
    ],
    "02_extract": [
        md("# 02 · Extract the statistics\n\n"
           "For every measured checkpoint, three passes over the data (paper §4): pass 1 sums "
           "features per next-token class on the training blocks, pass 2 sums squared distances "
           "to those class means, pass 3 compares the LM head's decision with the nearest class "
           "centre on the validation blocks. Results go to "
           "`<out_dir>/stats/<run>-ck<epoch>/stats.safetensors`; finished files are skipped, "
           "interrupted passes resume."),
        params('profile = "smoke"  # profiles/<name>.yaml\n'
               "progress = True  # tqdm progress bars"),
        code(setup("collect, dispatch, plots")),
        code("dispatch.collect_all(cfg, progress=progress)", ignore_output=True),
        md("## What was collected\n\nOne row per checkpoint: number of classes (tokens seen as a "
           "next-token target), tokens in each pass, and the hash tying passes 2 and 3 to the "
           "pass-1 means."),
        code("overview = collect.stats_overview(cfg.out_path / \"stats\")\noverview"),
    ],
    "03_measure": [
        md("# 03 · Measure neural collapse\n\n"
           "Computes every measure of paper §5 (NC1, NC2, GNC2, NC3, UNC3, NC4) from each "
           "checkpoint's statistics into `<out_dir>/metrics/`, then writes the results table "
           "`runs/<profile>/results.csv`: one row per model with its run specification, size, "
           "validation loss and accuracy, and every measure."),
        params('profile = "smoke"  # profiles/<name>.yaml\n'
               'results_table = "runs/smoke/results.csv"  # where the table is written\n'
               "progress = True  # tqdm progress bars"),
        code(setup("analysis, dispatch, plots")),
        code("dispatch.measure_all(cfg, progress=progress)", ignore_output=True),
        code("table = analysis.build_results_table(cfg.out_path, cfg.checkpoints())\n"
             "analysis.save_table(table, results_table)\n"
             "print(f\"{len(table)} models -> {results_table}\")"),
        md("## The results table\n\nThe measures at a glance, to 4 significant figures (full precision in the CSV)."),
        code("analysis.round_sig(table, 4)"),
        md("## Summary\n\nRange of each quantity over the population (4 significant figures)."),
        code("analysis.summary_numbers(table)"),
    ],
    "04_correlate": [
        md("# 04 · Collapse and generalization\n\n"
           "Reads a results table (any table with the schema of `03_measure`) and reproduces "
           "Figures 1–3 of the paper: validation loss against each measure, one point per model "
           "coloured by parameter count, with the R² of a least-squares line. Beyond the paper: "
           "each measure's partial correlation with validation loss after controlling for log "
           "parameter count and epochs, and bootstrap confidence intervals for R². Writes "
           "`correlations.csv` beside the table."),
        params('profile = "smoke"  # figures go to figures/<profile>/\n'
               'results_table = "runs/smoke/results.csv"  # input table\n'
               "analysis_n_bootstrap = 200  # bootstrap resamples for the R² intervals\n"
               "analysis_seed = 0  # seed of the bootstrap"),
        code("from pathlib import Path\n\nfrom lib import analysis, plots\n\n"
             "plots.apply_style()\ntable = analysis.load_table(results_table)\n"
             "print(f\"{len(table)} models from {results_table}\")"),
        code("corr = analysis.correlate(table, n_bootstrap=analysis_n_bootstrap, seed=analysis_seed)\n"
             "analysis.save_table(corr, Path(results_table).with_name(\"correlations.csv\"))\n"
             "analysis.round_sig(corr, 3)"),
        md("## Figure 1 · NC1, GNC2, UNC3 and NC4 against validation loss\n\n"
           "The paper's claim: all four improve with scale and correlate with lower validation "
           "loss, NC1 (CDNV), GNC2 and NC4 strongly. Compare the R² in each panel."),
        code("fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES[\"fig1_loss_vs_nc\"], corr)\n"
             "plots.show_and_save(fig, \"fig1_loss_vs_nc\", profile)"),
        md("## Figure 2 · Equinormness, equiangularity, hyperspherical uniformity\n\n"
           "Claim: equinormness relates negligibly to loss, equiangularity somewhat, GNC2 "
           "strongly — class means head toward a uniform spread on the sphere, not a simplex ETF."),
        code("fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES[\"fig2_loss_vs_nc2\"], corr)\n"
             "plots.show_and_save(fig, \"fig2_loss_vs_nc2\", profile)"),
        md("## Figure 3 · Self-duality (NC3) and uniform duality (UNC3)\n\n"
           "Claim: NC3 relates negligibly to loss, UNC3 clearly."),
        code("fig = plots.loss_vs_measures(table, plots.PAPER_FIGURES[\"fig3_loss_vs_nc3\"], corr)\n"
             "plots.show_and_save(fig, \"fig3_loss_vs_nc3\", profile)"),
        md("## Scaling\n\nEach measure against width, depth, epochs and weight decay: does "
           "collapse develop with scale and training?"),
        code("fig = plots.scaling_grid(table, analysis.MEASURES)\n"
             "plots.show_and_save(fig, \"scaling\", profile)"),
        md("## Summary\n\nR² and partial correlation per measure, to 3 significant figures."),
        code("analysis.correlation_summary(corr)"),
        md("## Does the paper's claim hold here?\n\nFor each measure of Figures 1–3, the strength "
           "of its relation to validation loss that the paper reports, and whether this population "
           "agrees (strong: R² ≥ 0.5; clear: ≥ 0.2; some: ≥ 0.1; negligible: < 0.1)."),
        code("analysis.paper_claims(corr)"),
    ],
    "05_permutation": [
        md("# 05 · Permutation test over seed-only replicas (Table 1)\n\n"
           "Among models that differ only in their data-shuffling seed, does a measure still "
           "track validation loss? For each measure: R², Pearson r and the p-value from random "
           "permutations of the losses (fraction of permuted |r| at least the observed |r|). "
           "Writes `permutation.csv` beside the results table."),
        params('profile = "smoke"  # the profile names the replica group (grid.replicas)\n'
               'results_table = "runs/smoke/results.csv"  # input table\n'
               "analysis_n_permutations = 1000  # random permutations of the losses\n"
               "analysis_seed = 0  # seed of the permutations"),
        code("from pathlib import Path\n\nfrom lib import analysis, plots\nfrom lib.profiles import load_profile\n\n"
             "plots.apply_style()\ntable = analysis.load_table(results_table)\n"
             "grid = load_profile(profile).grid\n"
             "replicas = analysis.replica_rows(table, grid.replicas, main_seed=grid.seed)\n"
             "print(f\"{len(replicas)} seed-only replicas of {replicas['run'].iloc[0] if len(replicas) else 'none'}\")"),
        code("perm = analysis.table1(replicas, n_permutations=analysis_n_permutations, seed=analysis_seed)\n"
             "analysis.save_table(perm, Path(results_table).with_name(\"permutation.csv\"))\n"
             "analysis.round_sig(perm, 3)"),
        md("## Table 1 as a figure\n\n|r| per measure; red bars are significant at p < 0.05. The "
           "paper finds NC1, GNC2 and UNC3 (among others) significant across 21 seeds of one "
           "architecture."),
        code("fig = plots.permutation_figure(perm)\nplots.show_and_save(fig, \"table1_permutation\", profile)"),
    ],
    "06_tokens": [
        md("# 06 · Individual tokens\n\n"
           "Per-token variability (mean pairwise CDNV with every other class) and interference "
           "(mean cosine of its centred mean with every other), for the largest model of the run; "
           "their relation to token frequency; the most and least collapsed tokens; first names "
           "against the average token."),
        params('profile = "smoke"  # profiles/<name>.yaml\n'
               'results_table = "runs/smoke/results.csv"  # picks the largest model\n'
               "progress = True  # tqdm progress bars"),
        code(setup("analysis, collect, data, dispatch, measure, plots")),
        code("table = analysis.load_table(results_table)\n"
             "ck = analysis.largest_model(table)\n"
             "stats = collect.load_stats(dispatch.stats_path(cfg.out_path, ck))\n"
             "tokenizer = data.load_tokenizer(cfg.out_path / \"corpus\" / \"tokenizer\")\n"
             "tokens = analysis.token_table(measure.per_class_measures(stats, progress=progress), tokenizer)\n"
             "print(f\"model {ck}: {len(tokens)} token classes\")"),
        md("## Variability and interference against frequency\n\nFirst names in red. The paper "
           "reports that names are far more collapsed (lower variability and interference) than "
           "the average token, and that the average token's interference is positive."),
        code("fig = plots.token_frequency_figure(tokens)\nplots.show_and_save(fig, \"tokens_frequency\", profile)"),
        md("## First names against the average token"),
        code("names = analysis.first_name_table(tokens)\nanalysis.round_sig(names, 4)"),
        md("## Most and least collapsed tokens (by variability)"),
        code("analysis.round_sig(analysis.most_and_least_collapsed(tokens, k=10), 4)"),
        md("## Explorer\n\nIn JupyterLab: pick a token to see its count, variability, "
           "interference and nearest classes."),
        code("from lib.explorer import token_explorer\n\ntoken_explorer(tokens, stats)", ignore_output=True),
    ],
}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(NOTEBOOKS_DIR), help="folder to write the notebooks to")
    out = Path(parser.parse_args().out)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        for i, cell in enumerate(nb.cells):  # stable ids: rebuilding unchanged cells changes nothing
            cell.id = f"{name}-{i:02d}"
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, out / f"{name}.ipynb")
        print("wrote", out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
