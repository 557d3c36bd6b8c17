"""selfteach: improve a language model with its own signals, and measure whether it worked."""

__version__ = "0.1.0"
