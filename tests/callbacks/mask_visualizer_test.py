import os

import keras
import numpy as np
import pytest
from PIL import Image

from seglayers import DiceCrossEntropyLoss, MaskVisualizer, UNet
from seglayers._masks import model_predicted_ids
from seglayers.visualization import default_palette
from seglayers.visualization.palette import NEUTRAL


def _data(n=4, size=16, num_classes=3):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32")
    masks = rng.integers(0, num_classes, size=(n, size, size, 1))
    masks[:, :2] = 255
    return images, masks


def _model(output_activation="auto"):
    model = UNet(
        3, filters=4, depth=2, rescale=1 / 255, output_activation=output_activation
    )
    # seglayers' loss, not Keras's: the callback is under test, and Keras's
    # softmax cross-entropy cannot train on the PyTorch backend
    # (tests/harness.py, TORCH_SOFTMAX_SCCE).
    model.compile(
        keras.optimizers.Adam(0.05),
        DiceCrossEntropyLoss(from_logits=output_activation is None, ignore_class=255),
    )
    return model


def _as_fit_calls(callback, model, images):
    """Calls `callback` as one epoch of `fit` would, without training: the
    callback's own work (predict, draw, write) is what is under test, and a
    traced training step cost these tests 10 to 20 s each."""
    model.build((None, *images.shape[1:]))
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)
    callback.on_train_end()


def _read(path):
    with Image.open(path) as image:
        return np.asarray(image)


def _panel(picture, index, size=16):
    return picture[:size, index * (size + 4) : index * (size + 4) + size]


def test_writes_pictures_that_change_as_the_model_learns(tmp_path):
    images, masks = _data()
    callback = MaskVisualizer(
        (images, masks),
        output_dir=tmp_path / "p",
        class_names=["a", "b", "c"],
        max_samples=3,
        ignore_class=255,
    )
    _model().fit(images, masks, epochs=2, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path / "p")) == [
        "epoch_001.png",
        "epoch_002.png",
        "final.png",
    ]
    first = _read(tmp_path / "p" / "epoch_001.png")
    second = _read(tmp_path / "p" / "epoch_002.png")
    assert first.shape == second.shape
    assert first.shape[1] == 5 * 16 + 4 * 4
    assert first.shape[0] > 3 * 20  # three rows and a legend
    # The prediction panel changes between epochs; the image panel does not.
    np.testing.assert_array_equal(_panel(first, 0), _panel(second, 0))
    assert not np.array_equal(_panel(first, 2), _panel(second, 2))
    # Ignored pixels of the truth are NEUTRAL.
    assert (_panel(first, 1)[:2] == NEUTRAL).all()


def test_logits_and_probabilities_give_the_same_picture(tmp_path):
    images, masks = _data()
    logits, probs = _model(None), _model("softmax")
    logits.build((None, None, None, 3))
    probs.build((None, None, None, 3))
    probs.set_weights(logits.get_weights())
    pictures = []
    for model in (logits, probs):
        callback = MaskVisualizer(
            (images, masks), ignore_class=255, output_dir=tmp_path
        )
        callback.set_model(model)
        callback.on_train_begin()
        pictures.append(callback.render())
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_predicted_ids_use_the_threshold_as_the_metrics_do():
    probs = np.array([[[0.2], [0.7]]])
    np.testing.assert_array_equal(model_predicted_ids(None, probs), [[0, 1]])
    logits = np.array([[[-1.0], [2.0]]])
    np.testing.assert_array_equal(
        model_predicted_ids(None, logits, threshold=0.0), [[0, 1]]
    )
    # Never guessed from the values: logits with a probability threshold raise.
    with pytest.raises(ValueError, match=r"holds logits.*Pass threshold=0"):
        model_predicted_ids(None, logits)
    scores = np.array([[[0.1, 0.9, 0.0]]])
    np.testing.assert_array_equal(model_predicted_ids(None, scores), [[1]])


def test_one_logit_channel_is_cut_at_zero_from_the_model(tmp_path):
    images, masks = _data()
    model = UNet(1, filters=4, depth=2, rescale=1 / 255, output_activation=None)
    pictures = []
    for threshold in (None, 0.0):
        callback = MaskVisualizer(
            (images, masks % 2), output_dir=tmp_path, threshold=threshold
        )
        callback.set_model(model)
        callback.on_train_begin()
        pictures.append(callback.render())
    np.testing.assert_array_equal(pictures[0], pictures[1])
    callback = MaskVisualizer((images, masks % 2), output_dir=tmp_path, threshold=0.5)
    callback.set_model(model)
    callback.on_train_begin()
    logits = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
    if ((logits < 0) | (logits > 1)).any():  # Else a 0.5 threshold is legal.
        with pytest.raises(ValueError, match=r"`threshold`=0.5 is a probability"):
            callback.render()


def test_unwritable_folder_warns_once_and_training_goes_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    images, masks = _data()
    callback = MaskVisualizer(
        (images, masks), ignore_class=255, output_dir=blocker / "previews"
    )
    with pytest.warns(UserWarning, match=r"could not write to .*previews"):
        history = _model().fit(images, masks, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2


def _with_log_dir(tmp_path):
    """`(images, callback)`: a callback writing to `p/` and to `logs/`."""
    images, masks = _data()
    callback = MaskVisualizer(
        (images, masks),
        ignore_class=255,
        output_dir=tmp_path / "p",
        log_dir=tmp_path / "logs",
    )
    return images, callback


def test_a_log_dir_that_is_a_file_warns_and_the_pictures_go_on(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tensorboard")
    # TensorFlow's FailedPreconditionError stopped training, where the
    # docs promise a warning for a folder that cannot be written.
    (tmp_path / "logs").write_text("not a folder")
    images, callback = _with_log_dir(tmp_path)
    with pytest.warns(UserWarning, match=r"could not write to .*logs \(") as caught:
        _as_fit_calls(callback, _model(), images)
    # Once, though it fails at each picture.
    assert sum("could not write" in str(w.message) for w in caught) == 1
    assert sorted(os.listdir(tmp_path / "p")) == ["epoch_001.png", "final.png"]


@pytest.mark.parametrize("name", ["output_dir", "log_dir"])
def test_folders_must_be_paths(name):
    # None gave os.fspath's TypeError, which named no argument.
    with pytest.raises(
        TypeError, match=rf"^`{name}` must be a folder path .*Received: {name}=3"
    ):
        MaskVisualizer(_data(), **{name: 3})


@pytest.mark.parametrize("data", [None, "images", "a function"])
def test_data_must_be_a_batch_or_a_data_set(data):
    # None failed at the first epoch ("'NoneType' object is not iterable");
    # images alone were read row by row ("images of shape (8, 3)").
    hint = ""
    if data == "images":
        data = _data()[0]
    elif data == "a function":
        data, hint = _data, r" Call it to get the generator\."
    with pytest.raises(
        TypeError,
        match=r"^`data` must be a batch `\(images, masks\)` or a data set of "
        rf"such batches .*{hint} Received: data of type {type(data).__name__}$",
    ):
        MaskVisualizer(data)


def test_render_before_training_takes_its_samples_or_asks_for_a_model(tmp_path):
    images, masks = _data()
    callback = MaskVisualizer((images, masks), ignore_class=255, output_dir=tmp_path)
    # Failed on None, the samples taken only when training begins.
    with pytest.raises(ValueError, match=r"call `set_model\(model\)` first"):
        callback.render()
    model = _model()
    model.build((None, *images.shape[1:]))
    callback.set_model(model)
    picture = callback.render()
    assert picture.dtype == np.uint8 and picture.shape[0] > 4 * 16


def test_takes_samples_from_a_dataset_of_dicts(tmp_path):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data dict batches are read on the TensorFlow backend")
    images, masks = _data(n=6)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"images": images, "segmentation_masks": masks}
    ).batch(2)
    callback = MaskVisualizer(dataset, output_dir=tmp_path, max_samples=5)
    callback.on_train_begin()
    assert callback._samples[0].shape == (5, 16, 16, 3)


def test_tensorboard_summary_read_by_tensorboard(tmp_path):
    pytest.importorskip("tensorflow")
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    images, callback = _with_log_dir(tmp_path)
    _as_fit_calls(callback, _model(), images)
    reader = accumulator.EventAccumulator(str(tmp_path / "logs"))
    reader.Reload()
    tags = reader.Tags()
    found = tags.get("images", []) + tags.get("tensors", [])
    assert "mask_previews" in found, tags


def test_only_the_chief_writes(tmp_path, monkeypatch):
    images, masks = _data()
    for index in (1, 0):
        monkeypatch.setenv(
            "TF_CONFIG",
            '{"cluster": {"worker": ["localhost:1", "localhost:2"]},'
            f' "task": {{"type": "worker", "index": {index}}}}}',
        )
        output_dir = tmp_path / f"worker{index}"
        callback = MaskVisualizer(
            (images, masks), ignore_class=255, output_dir=output_dir
        )
        _as_fit_calls(callback, _model(), images)
        # Both predict (a collective step under multi-worker); one writes.
        assert (output_dir / "final.png").exists() == (index == 0)


def test_config_and_bad_arguments():
    callback = MaskVisualizer(
        (np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 1))),
        every_n_epochs=2,
        class_names=["a", "b"],
    )
    assert callback.get_config()["every_n_epochs"] == 2
    assert callback.get_config()["class_names"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"every_n_epochs=0"):
        MaskVisualizer(_data(), every_n_epochs=0)


def test_uint8_images_give_the_float_picture(tmp_path):
    images, masks = _data()
    model = _model()
    model.build((None, None, None, 3))
    pictures = []
    for batch in (images.round().astype("uint8"), images.round()):
        callback = MaskVisualizer((batch, masks), ignore_class=255, output_dir=tmp_path)
        callback.set_model(model)
        callback.on_train_begin()
        pictures.append(callback.render())
    np.testing.assert_array_equal(pictures[0], pictures[1])


@pytest.mark.parametrize(
    "images, masks, match",
    [
        ((4, 16, 16, 3), (3, 16, 16, 1), r"one mask per image"),
        ((4, 16, 16, 3), (4, 8, 8, 1), r"of the image's height and width"),
        ((16, 16, 3), (16, 16, 1), r"needs a batch of images"),
    ],
)
def test_mismatched_data_is_refused_at_construction(images, masks, match):
    with pytest.raises(ValueError, match=match + r".*Received: images of shape"):
        MaskVisualizer((np.zeros(images), np.zeros(masks)))


def test_data_without_one_batch_of_one_size_is_refused(tmp_path):
    images, masks = _data()
    callback = MaskVisualizer(iter([]), output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"got no samples from `data`; pass a batch"):
        callback.on_train_begin()
    batches = iter([(images, masks), _data(size=8)])
    callback = MaskVisualizer(batches, output_dir=tmp_path, max_samples=8)
    with pytest.raises(
        ValueError,
        match=r"batches of different sizes: images \[\(4, 16, 16, 3\), "
        r"\(4, 8, 8, 3\)\].*Give batches of one size",
    ):
        callback.on_train_begin()


def test_log_dir_without_tensorboard_names_the_package(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a),
    )
    with pytest.raises(ValueError, match=r"`pip install tensorboard`.*log_dir="):
        MaskVisualizer(_data(), output_dir=tmp_path, log_dir=tmp_path / "logs")


def test_mismatched_dataset_is_refused_when_training_begins(tmp_path):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data batches are read on the TensorFlow backend")
    images, masks = _data()
    dataset = tf.data.Dataset.from_tensors((images, masks[:, :8]))
    callback = MaskVisualizer(dataset, output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"masks of shape \(4, 8, 16, 1\)"):
        callback.on_train_begin()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"palette": [[0, 0, 0], [9, 9, 9]]},
            r"`palette` has 2 colours for 3 classes; give one `\[r, g, b\]` per "
            r"class.*Received: palette=\[\[0, 0, 0\], \[9, 9, 9\]\]",
        ),
        (
            {"class_names": ["a", "b"]},
            r"`class_names` has 2 names for 3 classes; give one per class.*"
            r"Received: class_names=\['a', 'b'\]",
        ),
    ],
)
def test_palette_and_names_must_cover_the_classes(tmp_path, kwargs, match):
    images, masks = _data()
    # Known at construction with num_classes...
    with pytest.raises(ValueError, match=match):
        MaskVisualizer((images, masks), num_classes=3, **kwargs)
    # ... else when training begins, from the model's output channels.
    callback = MaskVisualizer((images, masks), output_dir=tmp_path, **kwargs)
    callback.set_model(_model())
    with pytest.raises(ValueError, match=match):
        callback.on_train_begin()


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_a_threshold_that_is_no_finite_number_is_refused(threshold):
    # Taken before: every pixel of a sigmoid channel predicted background.
    with pytest.raises(
        ValueError, match=rf"`threshold` must be a finite number.*={threshold}"
    ):
        MaskVisualizer(_data(), threshold=threshold)


@pytest.mark.parametrize(
    "masks, binary, match",
    [
        (
            lambda m: m,
            False,
            r"class ids \[255\] outside \[0, 3\), and no `ignore_class`",
        ),
        (
            lambda m: np.where(m == 255, 0, m) * 255,
            True,
            r"These look like binary masks",
        ),
        (lambda m: np.where(m == 255, 0.5, m), False, r"fractional ids \[0\.5\]"),
    ],
    ids=["no-ignore-class", "0-and-255", "fractional"],
)
def test_masks_of_ids_that_are_no_class_are_refused_when_training_begins(
    tmp_path, masks, binary, match
):
    # Before: drawn as ignored (cream), with no word, as if ignore_class=255.
    images, ids = _data(num_classes=2)
    model = UNet(1, filters=4, depth=2) if binary else _model()
    callback = MaskVisualizer((images, masks(ids)), output_dir=tmp_path)
    callback.set_model(model)
    with pytest.raises(ValueError, match=r"^A mask of `data` holds " + r".*" + match):
        callback.on_train_begin()


def test_a_threshold_for_probabilities_is_checked_when_training_begins(tmp_path):
    images, masks = _data(num_classes=2)
    callback = MaskVisualizer((images, masks), threshold=2, ignore_class=255)
    callback.set_model(UNet(1, filters=4, depth=2))
    with pytest.raises(ValueError, match=r"^`threshold`=2\.0 cannot split"):
        callback.on_train_begin()


@pytest.mark.parametrize(
    "masks, match",
    [
        # The check of the ids met no prediction to compare with: a TypeError.
        (np.zeros((4, 16, 16, 2)), r"^`masks` must be class ids \(4, 16, 16\) or"),
        (np.full((4, 16, 16, 3), 2.0), r"^`masks` has the shape of one-hot masks"),
    ],
)
def test_masks_of_other_channels_are_named_when_training_begins(masks, match):
    # They were named `y_true`, a name `MaskVisualizer` does not use.
    images, _ = _data()
    callback = MaskVisualizer((images, masks), ignore_class=255)
    callback.set_model(_model())
    with pytest.raises(ValueError, match=match + r".*Received: masks"):
        callback.on_train_begin()


@pytest.mark.parametrize("class_names", ["abc", ["a", None, "c"], 3])
def test_class_names_that_are_no_list_of_names_are_refused(class_names):
    # Before: "abc" named three classes a, b, c; None failed in Pillow.
    with pytest.raises(TypeError, match=r"^`class_names` must be a list of names"):
        MaskVisualizer(_data(), class_names=class_names)


def test_classes_that_do_not_fit_the_model_are_refused(tmp_path):
    # Accepted before: class 2 was drawn as ignored, with no word.
    callback = MaskVisualizer(_data(), output_dir=tmp_path, ignore_class=2)
    callback.set_model(_model())
    with pytest.raises(ValueError, match=r"`ignore_class`=2 is also a class id"):
        callback.on_train_begin()
    callback = MaskVisualizer(_data(), output_dir=tmp_path, num_classes=2)
    callback.set_model(_model())
    with pytest.raises(
        ValueError,
        match=r"`num_classes`=2 does not match the model, whose outputs have 3 "
        r"channels.*Pass num_classes=3",
    ):
        callback.on_train_begin()  # before: after the first epoch


def test_a_model_of_ids_and_a_long_palette_are_drawn(tmp_path):
    # A model that outputs ids (N, H, W, 1) has one channel whatever
    # num_classes is; a palette of 256 colours (VOC's) may hold more colours
    # than there are class names.
    images, masks = _data()
    inputs = keras.Input((16, 16, 3))
    scores = keras.layers.Conv2D(3, 1)(inputs)
    ids = keras.layers.Reshape((16, 16, 1))(keras.ops.argmax(scores, axis=-1))
    callback = MaskVisualizer(
        (images, masks),
        output_dir=tmp_path,
        num_classes=3,
        ignore_class=255,
        palette=default_palette(256),
        class_names=["a", "b", "c"],
    )
    callback.set_model(keras.Model(inputs, ids))
    callback.on_train_begin()
    assert callback.render().ndim == 3


@pytest.mark.parametrize("one_batch", [True, False])
def test_a_dict_without_the_keys_is_named(tmp_path, one_batch):
    # A bare KeyError: 'images', or "len() of unsized object" for one dict.
    images, masks = _data()
    batch = {"image": images, "mask": masks}
    data = batch if one_batch else (b for b in [batch])  # a dataset's batches
    callback = MaskVisualizer(data, output_dir=tmp_path)
    callback.set_model(_model())
    with pytest.raises(
        ValueError,
        match=r"keys 'images' and 'segmentation_masks'.*"
        r"Received: a dict with keys \['image', 'mask'\]",
    ):
        callback.on_train_begin()


def test_palette_must_be_colours():
    with pytest.raises(ValueError, match=r"`palette` must be a list of `\[r, g, b\]`"):
        MaskVisualizer(_data(), palette=[[0, 0], [1, 2, 300]])
    # An array, as `colorize` takes (it was refused), kept as JSON lists.
    callback = MaskVisualizer(_data(), palette=np.array([[0, 0, 0], [255, 0, 0]]))
    assert callback.get_config()["palette"] == [[0, 0, 0], [255, 0, 0]]


def test_previews_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        images, masks = _data()
        callback = MaskVisualizer(
            (images, masks), ignore_class=255, output_dir=tmp_path / "p"
        )
        callback.set_model(_model())
        callback.on_train_begin()
        callback.on_epoch_end(0)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "p" / "epoch_001.png").st_mode & 0o777 == 0o640


@pytest.mark.parametrize("slice_axis, panel", [(0, (12, 16)), (2, (8, 12))])
def test_volumes_show_the_central_slice_along_the_chosen_axis(
    tmp_path, slice_axis, panel
):
    rng = np.random.default_rng(0)
    volumes = rng.uniform(0, 255, size=(2, 8, 12, 16, 1)).astype("float32")
    masks = rng.integers(0, 3, size=(2, 8, 12, 16, 1))
    masks[:, 4, :2] = 255  # ignored voxels on the central depth slice
    model = UNet(3, filters=4, depth=2, spatial_dims=3, rescale=1 / 255)
    callback = MaskVisualizer(
        (volumes, masks),
        output_dir=tmp_path,
        ignore_class=255,
        slice_axis=slice_axis,
    )
    _as_fit_calls(callback, model, volumes)
    picture = _read(tmp_path / "epoch_001.png")
    height, width = panel
    assert picture.shape[1] == 5 * width + 4 * 4
    assert picture.shape[0] > 2 * (height + 4)  # two rows and a legend
    # The image panel is the central slice, grey.
    image = picture[:height, :width]
    expected = np.take(volumes[0], volumes.shape[1 + slice_axis] // 2, slice_axis)
    np.testing.assert_array_equal(image, np.repeat(expected.astype("uint8"), 3, -1))
    if slice_axis == 0:
        truth = picture[:height, width + 4 : 2 * width + 4]
        assert (truth[:2] == NEUTRAL).all()  # ignored voxels
    assert callback.get_config()["slice_axis"] == slice_axis


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"slice_axis": 3},
            r"`slice_axis` must be one of 0, 1 or 2. Received: slice_axis=3",
        ),
        (
            {"data": (np.zeros((2, 8, 8, 8, 1)), np.zeros((2, 8, 8, 4, 1)))},
            r"of the image's depth, height and width.*Received: images of shape "
            r"\(2, 8, 8, 8, 1\), masks of shape \(2, 8, 8, 4, 1\)",
        ),
    ],
)
def test_volume_arguments_are_checked(kwargs, match):
    arguments = {"data": (np.zeros((2, 8, 8, 8, 1)), np.zeros((2, 8, 8, 8, 1)))}
    with pytest.raises(ValueError, match=match):
        MaskVisualizer(**{**arguments, **kwargs})
