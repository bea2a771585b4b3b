"""Drawing masks with numpy and Pillow: headless, no matplotlib."""

from seglayers.visualization.palette import colorize, default_palette
from seglayers.visualization.render import (
    central_slice,
    display_image,
    overlay,
    render_grid,
    save_png,
)

__all__ = [
    "central_slice",
    "colorize",
    "default_palette",
    "display_image",
    "overlay",
    "render_grid",
    "save_png",
]
