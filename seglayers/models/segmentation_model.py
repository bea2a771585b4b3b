"""`SegmentationModel`: the base every seglayers architecture builds on."""

from seglayers._api import register
from seglayers.models._serving import ServingModel


@register
class SegmentationModel(ServingModel):
    """Base class of the seglayers segmentation models (work in progress)."""
