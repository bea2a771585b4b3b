"""Prediction helpers beyond `model.predict`."""

from seglayers.inference.predict_tiled import predict_tiled

__all__ = ["predict_tiled"]
