"""eqbridge: steer the EQ plugins you own with words and knobs."""

__version__ = "0.1.0"
