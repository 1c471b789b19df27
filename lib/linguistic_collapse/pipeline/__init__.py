"""The per-model stages: training, statistics collection, measuring, their jobs and SLURM."""
