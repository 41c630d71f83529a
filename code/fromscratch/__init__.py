"""fromscratch: deep-learning foundations and Stable Diffusion, built piece by piece.

Each module holds one concept that a post builds step by step and later posts import.
"""

__version__ = "0.1.0"
