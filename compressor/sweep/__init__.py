"""Sweeps: many recipes tried from one base, each trial applied and judged in its own process, locally or on
Ray, resumable, ranked by Score with the Pareto front of Perf against time per token."""
