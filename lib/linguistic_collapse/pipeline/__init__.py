"""The per-model steps: training, statistics collection, measuring, their jobs and SLURM."""
