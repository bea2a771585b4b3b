from seglayers.data.directory import segmentation_dataset_from_directory
from seglayers.data.volumes import volume_dataset_from_directory


def __getattr__(name):
    if name == "MultiWorkerMirroredStrategy":
        import warnings

        from seglayers.distribute.multi_worker import MultiWorkerMirroredStrategy

        warnings.warn(
            "`seglayers.data.MultiWorkerMirroredStrategy` moved to "
            "`seglayers.distribute.MultiWorkerMirroredStrategy`; the old name "
            "will be removed in a later release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return MultiWorkerMirroredStrategy
    raise AttributeError(f"module 'seglayers.data' has no attribute {name!r}")


__all__ = ["segmentation_dataset_from_directory", "volume_dataset_from_directory"]
