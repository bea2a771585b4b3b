from seglayers.preprocessing.one_hot_mask import OneHotMask

__all__ = ["OneHotMask"]
