"""mbrl_sam: model-based RL whose world models train with sharpness-aware objectives."""

__version__ = "0.1.0"
