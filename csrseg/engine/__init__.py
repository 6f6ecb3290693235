"""Training engine: the loop, checkpoints, schedule, DDP plumbing, plots."""
