from seglayers.callbacks.mask_visualizer import MaskVisualizer

__all__ = ["MaskVisualizer"]
