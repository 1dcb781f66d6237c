"""Tracking runs over time: `compare` (did a candidate regress beyond noise against a baseline?), `reproduce` (is a
run's number the leaderboard's own, within noise?) and `history` (a model's scores over its runs, as a table
and a plot).

Reads results files (evalsuite.results) and the suite; never the run pipelines, the engine, torch or lm-eval.
"""
