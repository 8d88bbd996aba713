"""Metrics: cheap per-worker instruments, snapshots, the supervisor's aggregator, history and exposition."""
