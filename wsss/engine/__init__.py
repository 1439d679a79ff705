"""Training machinery shared by every trainer: device, distributed, checkpoints, the loop."""
