"""Data sets that ship with seglayers (generated, nothing is downloaded)."""

from seglayers.datasets import shapes

__all__ = ["shapes"]
