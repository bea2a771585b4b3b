"""Data sets that ship with seglayers (generated, nothing is downloaded)."""

from seglayers.datasets import shapes, volumes

__all__ = ["shapes", "volumes"]
