from seglayers.data.directory import segmentation_dataset_from_directory
from seglayers.data.multi_worker import MultiWorkerMirroredStrategy

__all__ = ["MultiWorkerMirroredStrategy", "segmentation_dataset_from_directory"]
