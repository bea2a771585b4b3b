import importlib.util
import os
import warnings

import keras
import numpy as np

from seglayers._masks import (
    model_predicted_ids,
    model_threshold,
    num_ids,
    raise_on_bad_ids,
)
from seglayers._targets import target_ids
from seglayers._validation import (
    check_choice,
    check_class_names,
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
    check_threshold,
)
from seglayers.callbacks._samples import check_data, check_samples, from_dict
from seglayers.distribute.chief import is_chief
from seglayers.inference._checks import check_one_output
from seglayers.visualization.palette import check_drawing_palette, default_palette
from seglayers.visualization.render import SLICE_AXES, render_grid, save_png


def _folder(name, value):
    """`value` as a str path, or a `TypeError` naming the argument."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(
            f"`{name}` must be a folder path (str or `pathlib.Path`), e.g. "
            f"'mask_previews'. Received: {name}={value!r}"
        )
    return os.fspath(value)


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


# Not registered for `.keras` loading: a callback holds data and paths, is
# never saved with a model, and has no config to rebuild it from.
class MaskVisualizer(keras.callbacks.Callback):
    """Writes pictures of the predicted masks while a model trains.

    Every `every_n_epochs` epochs, and once more when training ends, it
    predicts on a few fixed samples and writes `epoch_NNN.png` (and
    `final.png`) to `output_dir`: one row per sample, image | ground truth |
    prediction | overlay | error map (red where the prediction is wrong,
    cream, VOC's void colour, where the truth is ignored), with a legend of
    class colours. With `log_dir` the same picture goes to TensorBoard as an
    image summary. Volumes `(batch, D, H, W, channels)` are drawn by the
    central slice of each panel along `slice_axis`; images with one channel
    (as scans have) are drawn grey.

    Predictions are read as seglayers' metrics read them: logits or
    probabilities over several classes (arg-max), one sigmoid channel cut at
    `threshold`, or ids. Masks may be ids or one-hot (all-zero rows are
    ignored pixels). Images are drawn as
    `seglayers.visualization.display_image` does: [0, 255] as they are,
    floats in [0, 1] scaled, other ranges (scans, z-scores) stretched. Files
    are written atomically; if a folder cannot be written (read-only, a
    file, a full disk) the callback warns once for it and training goes on.
    Under a multi-worker strategy only the chief writes.

    Args:
        data: a batch `(images, masks)` of arrays, or a `tf.data.Dataset` of
            `(images, masks)` or `{"images", "segmentation_masks"}` batches,
            from which the first `max_samples` samples are taken once, when
            training starts.
        output_dir: str, the folder for the PNG files. Defaults to
            `"mask_previews"`.
        every_n_epochs: int, how often to draw. Defaults to 1.
        class_names: optional list of names for the legend.
        palette: optional list (or array) of `[r, g, b]` class colours;
            defaults to `seglayers.visualization.default_palette`.
        log_dir: optional TensorBoard log folder (needs the `tensorboard`
            package).
        max_samples: int, how many samples to draw. Defaults to 8.
        ignore_class: int or `None`, the id of unlabelled pixels (drawn
            cream, the colour of VOC's void label).
        num_classes: int or `None`; defaults to the model's output channels
            (2 for one sigmoid channel).
        threshold: float or `None`, where one sigmoid channel turns into
            class 1, as in the metrics' `threshold`. `None` (the default)
            takes 0 for a model that says it outputs logits
            (`output_activation=None`, as seglayers models can) and 0.5
            (probabilities) otherwise; the value range is never guessed from.
            One channel outside [0, 1] read with a threshold in (0, 1) raises
            a `ValueError`: pass `threshold=0` for logits.
        slice_axis: 0, 1 or 2, for volumes: the spatial axis (depth, height,
            width) across which the central slice is drawn. Defaults to 0.

    Example:

    ```python
    model.fit(train, validation_data=val, epochs=20,
              callbacks=[MaskVisualizer(val.take(1), output_dir="previews",
                                        class_names=["background", "road"])])
    ```
    """

    def __init__(
        self,
        data,
        output_dir="mask_previews",
        every_n_epochs=1,
        class_names=None,
        palette=None,
        log_dir=None,
        max_samples=8,
        ignore_class=None,
        num_classes=None,
        threshold=None,
        slice_axis=0,
    ):
        super().__init__()
        check_data(data)
        slice_axis = check_choice("slice_axis", slice_axis, SLICE_AXES)
        every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        max_samples = check_positive_int("max_samples", max_samples)
        ignore_class = check_ignore_class(ignore_class)
        output_dir = _folder("output_dir", output_dir)
        if log_dir is not None:
            log_dir = _folder("log_dir", log_dir)
        if log_dir is not None and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "`log_dir` writes TensorBoard image summaries, which need the "
                "`tensorboard` package: `pip install tensorboard`. "
                f"Received: log_dir={log_dir!r}"
            )
        if num_classes is not None:
            num_classes = check_positive_int("num_classes", num_classes)
        threshold = check_threshold(threshold, allow_none=True)
        if palette is not None:  # A list or array, as `colorize` takes it.
            palette = check_drawing_palette(palette)
        self.data = data
        self.output_dir = output_dir
        self.every_n_epochs = every_n_epochs
        if class_names is not None:
            class_names = check_class_names(class_names)
        self.class_names = class_names
        self.palette = palette
        self.log_dir = log_dir
        self.max_samples = max_samples
        self.ignore_class = ignore_class
        self.num_classes = num_classes
        self.threshold = threshold
        self.slice_axis = slice_axis
        self._samples = None
        self._warned = set()  # Folders that could not be written.
        if isinstance(data, (tuple, list)) and len(data) == 2:
            check_samples(np.shape(data[0]), np.shape(data[1]))
        if num_classes is not None:
            self._check_classes(num_ids(num_classes))

    def _take_samples(self):
        images, masks = [], []
        one_batch = isinstance(self.data, (tuple, list, dict))
        for batch in [self.data] if one_batch else self.data:
            if isinstance(batch, dict):
                batch = from_dict(batch)
            images.append(np.asarray(batch[0]))
            masks.append(np.asarray(batch[1]))
            if sum(len(i) for i in images) >= self.max_samples:
                break
        if not images:
            raise ValueError(
                "`MaskVisualizer` got no samples from `data`; pass a batch "
                "`(images, masks)` or a dataset that yields at least one batch."
            )
        try:
            images = np.concatenate(images)[: self.max_samples]
            masks = np.concatenate(masks)[: self.max_samples]
        except ValueError:
            raise ValueError(
                "`MaskVisualizer`'s `data` gave batches of different sizes: "
                f"images {[i.shape for i in images]}, masks "
                f"{[m.shape for m in masks]}. Give batches of one size."
            ) from None
        check_samples(images.shape, masks.shape)
        return images, masks

    def on_train_begin(self, logs=None):
        if self._samples is None:
            self._samples = self._take_samples()
        channels = self._output_channels()
        if channels not in (None, 1):  # 1: ids or a sigmoid; `render` tells
            self._check_num_classes(channels)
        num_classes = self._num_classes(channels)
        self._check_classes(num_classes)
        # Before the first epoch, not after it: what `render` would refuse.
        model_threshold(self.model, self.threshold)
        if num_classes is not None:
            self._truth(num_classes)

    def _truth(self, num_classes, y_pred_shape=None):
        """The samples' class ids, -1 where ignored; ids that are no class
        (255 in 0/255 binary masks) are refused, as the metrics do, not
        drawn as ignored."""
        masks = self._samples[1]
        pixels = self._samples[0].shape[:-1]
        truth, valid, bad = target_ids(
            masks, pixels, num_classes, self.ignore_class, y_pred_shape, "masks"
        )
        raise_on_bad_ids(masks, bad, num_classes, self.ignore_class, "A mask of `data`")
        return np.where(_numpy(valid), _numpy(truth), -1)

    def _output_channels(self):
        """The model's output channels, if its output shape says (no predict)."""
        if self.model is None:
            return None
        try:
            shape = self.model.compute_output_shape(
                (None,) + self._samples[0].shape[1:]
            )
        except Exception:  # Some models cannot say; render() checks then.
            return None
        if isinstance(shape, dict) or any(isinstance(s, (list, tuple)) for s in shape):
            # Output shapes in a dict or list: several, or one (`[out]`).
            shape = check_one_output(shape, "MaskVisualizer")
        if not isinstance(shape, tuple) or len(shape) != self._samples[0].ndim:
            return None  # ids without a channel axis: the last axis is W
        return shape[-1]

    def _num_classes(self, channels):
        if self.num_classes is not None:
            return num_ids(self.num_classes)
        return num_ids(channels) if channels else None

    def _check_scores(self, outputs, images):
        """Scores (floats, a channel axis) of as many classes as given: else
        the classes beyond the palette looked ignored. Ids are not checked."""
        channels = outputs.shape[-1]
        scores = np.ndim(outputs) == np.ndim(images) and np.issubdtype(
            np.asarray(outputs).dtype, np.floating
        )
        if scores:
            self._check_num_classes(channels)

    def _check_num_classes(self, channels):
        if self.num_classes is not None and num_ids(channels) != num_ids(
            self.num_classes
        ):
            raise ValueError(
                f"`num_classes`={self.num_classes} does not match the model, "
                f"whose outputs have {channels} channels (one per class, or "
                "one sigmoid channel for num_classes=1). Pass "
                f"num_classes={channels}, or leave it None to take the model's. "
                f"Received: num_classes={self.num_classes}"
            )

    def _check_classes(self, num_classes):
        """Every class needs a colour, and a name if names are given."""
        if num_classes is None:
            return
        check_ignore_not_a_class(self.ignore_class, num_classes)
        if self.palette is not None and len(self.palette) < num_classes:
            raise ValueError(
                f"`palette` has {len(self.palette)} colours for {num_classes} "
                "classes; give one `[r, g, b]` per class (index = class id), or "
                f"leave it None for the default palette. Received: "
                f"palette={self.palette}"
            )
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise ValueError(
                f"`class_names` has {len(self.class_names)} names for "
                f"{num_classes} classes; give one per class, in class-id order "
                f"(two for one sigmoid channel). Received: "
                f"class_names={self.class_names}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            self._draw(f"epoch_{epoch + 1:03d}.png", epoch + 1)

    def on_train_end(self, logs=None):
        self._draw("final.png", None)

    def render(self):
        """The current picture, a uint8 `(height, width, 3)` array."""
        if self.model is None:
            raise ValueError(
                "`MaskVisualizer.render()` draws the predictions of its model, "
                "which it has none of yet: pass it to `model.fit(callbacks=...)`, "
                "or call `set_model(model)` first."
            )
        if self._samples is None:  # Before training began.
            self._samples = self._take_samples()
        images = self._samples[0]
        outputs = check_one_output(
            self.model.predict(images, verbose=0), "MaskVisualizer"
        )
        self._check_scores(outputs, images)
        num_classes = self._num_classes(outputs.shape[-1])
        self._check_classes(num_classes)
        ids = model_predicted_ids(self.model, outputs, self.threshold)
        truth = self._truth(num_classes, outputs.shape)  # -1: ignored
        palette = self.palette or default_palette(num_classes)
        return render_grid(
            images, truth, ids, palette, self.class_names, slice_axis=self.slice_axis
        )

    def _draw(self, filename, step):
        if self._samples is None:
            return
        # Every worker predicts: under MultiWorkerMirroredStrategy `predict`
        # is a collective operation that hangs or fails unless all take part.
        # Only the chief writes.
        picture = self.render()
        if not is_chief():
            return
        self._write(
            self.output_dir, save_png, picture, os.path.join(self.output_dir, filename)
        )
        if self.log_dir is not None:
            from seglayers.data.summary import write_image_summary

            self._write(
                self.log_dir,
                write_image_summary,
                self.log_dir,
                "mask_previews",
                picture,
                step or 0,
            )

    def _write(self, folder, write, *args):
        """`write(*args)`; if `folder` cannot be written, warns once for it."""
        try:
            write(*args)
        except OSError as error:
            if folder not in self._warned:
                warnings.warn(
                    f"MaskVisualizer could not write to {folder} ({error}); "
                    "training goes on without previews there.",
                    stacklevel=3,
                )
                self._warned.add(folder)

    def get_config(self):
        # Every argument but `data` (batches, not JSON): a callback is
        # never saved with the model.
        return {
            "output_dir": self.output_dir,
            "every_n_epochs": self.every_n_epochs,
            "class_names": self.class_names,
            "palette": self.palette,
            "log_dir": self.log_dir,
            "max_samples": self.max_samples,
            "ignore_class": self.ignore_class,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "slice_axis": self.slice_axis,
        }
