"""Every stage's options, one dataclass per stage, declared once (`wsss.option`).

Kept apart from the stages and free of torch, so that the CLI builds every command's flags
from them without loading the network code; each stage module re-exports its config.
"""
