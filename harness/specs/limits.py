"""Bounds on the numbers a spec or the command line may set.

Wide enough for any real setting, narrow enough that a typo or a hostile value (a LoRA rank of
1e29, a seed list of one million) fails at validation with one line, not hours into a build.
Shared by the spec models and the argument parser, so both refuse the same values.
"""

MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_SEEDS = 100  # seeds in one run or suite
MAX_BATCH = 1024  # images per batch
MAX_LIMIT = 10_000_000  # images evaluated or trained on
MAX_NEW_TOKENS = 4096  # tokens generated per image
MAX_RESAMPLES = 100_000  # bootstrap resamples
MAX_SAMPLES_SHOWN = 100_000  # samples per seed on a variant page
