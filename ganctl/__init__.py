"""ganctl: a config-driven command-line tool for training GANs with PyTorch."""

__version__ = "0.1.0"
