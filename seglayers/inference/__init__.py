"""Prediction and evaluation beyond `model.predict`: what the `seglayers`
command runs, as functions."""

from seglayers.inference.evaluation import evaluate_segmentation, format_evaluation
from seglayers.inference.predict_tiled import predict_tiled
from seglayers.inference.prediction import predict_mask

__all__ = [
    "evaluate_segmentation",
    "format_evaluation",
    "predict_mask",
    "predict_tiled",
]
