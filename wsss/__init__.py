"""wsss: weakly-supervised semantic segmentation with Puzzle-CAM."""

__version__ = "0.1.0"
