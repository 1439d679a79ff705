"""Datasets: the VOC layout, class lists, label PNGs, SBD conversion and the demo generator."""
