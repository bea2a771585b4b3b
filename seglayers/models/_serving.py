"""What every seglayers model adds to `keras.Model` for saving and serving."""

import keras

from seglayers.inference.export import export_arguments


class ServingModel(keras.Model):
    """`keras.Model` with seglayers' export defaults (any input size, built-in
    TFLite ops) and a refusal of the HDF5 format, which cannot load a
    subclassed model back."""

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=None,
        input_signature=None,
        **kwargs,
    ):
        """Exports the model for serving, as `keras.Model.export` does, but by
        default for inputs of any batch size, height and width
        (`(None, None, None, channels)`), not only the size it was trained on;
        and with `format="litert"`, with built-in TFLite ops only. Pass
        `input_signature` (or, for TFLite, `target_spec`) to choose otherwise.
        """
        input_signature, kwargs = export_arguments(
            self, format, input_signature, kwargs
        )
        return super().export(
            filepath,
            format=format,
            verbose=verbose,
            input_signature=input_signature,
            **kwargs,
        )

    def save(self, filepath, *args, **kwargs):
        # Keras 3.15's legacy HDF5 format writes a subclassed model to a file
        # that it cannot load back ("Unknown layer: 'UNet'", then "Layer count
        # mismatch"), so refuse before writing it. (`ModelCheckpoint` calls
        # this too; `keras.saving.save_model(model, "m.h5")` does not.)
        if str(filepath).endswith((".h5", ".hdf5")):
            raise ValueError(
                f"`{type(self).__name__}` cannot be saved as HDF5: Keras's legacy "
                ".h5 format writes the file but cannot load it back. Save as .keras "
                "(`model.save('model.keras')`), or the weights alone "
                "(`model.save_weights('model.weights.h5')`). "
                f"Received: filepath={str(filepath)!r}"
            )
        return super().save(filepath, *args, **kwargs)
