from seglayers.data.directory import segmentation_dataset_from_directory

__all__ = ["segmentation_dataset_from_directory"]
