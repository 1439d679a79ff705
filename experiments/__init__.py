"""Experiment harness behind `make quality` and `make ablation`: the quality suite, its dataset
sets and the Puzzle-CAM loss ablation. Not part of the installed package; wsss never imports
it. Each entry point runs as a script from a checkout: `python experiments/quality.py --help`.
"""
