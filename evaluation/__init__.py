"""Evaluation of adapters against the base model (``evaluate.py``).

:mod:`evaluation.stats` (bootstrap CIs, paired Wilcoxon, Holm), :mod:`evaluation.layout` (prompt ids,
released video naming), :mod:`evaluation.arms` (arms, prompt items), :mod:`evaluation.generation`
(resumable per-arm generation), :mod:`evaluation.scoring` (every metric of a video; the geometry
predictor is built in one place), :mod:`evaluation.scores_csv` (``scores.csv``),
:mod:`evaluation.summary` (``summary.md/json``, plots), :mod:`evaluation.presets`, :mod:`evaluation.run`.
"""
