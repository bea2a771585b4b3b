import keras
import numpy as np
import pytest

from seglayers import DiceCrossEntropyLoss, MeanIoU, UNet
from tests.harness import _check_config, load_in_fresh_process
from tests.losses.helpers import (
    numpy_cross_entropy,
    numpy_dice_loss,
    random_case,
    softmax,
)


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_weighted_sum_of_dice_and_cross_entropy(ignore_class):
    y_true, logits = random_case(0, ignore_class=ignore_class)
    probs = softmax(logits)
    dice = numpy_dice_loss(y_true, probs, ignore_class)
    ce = numpy_cross_entropy(y_true, probs, ignore_class)
    loss = DiceCrossEntropyLoss(
        from_logits=True,
        ignore_class=ignore_class,
        dice_weight=0.5,
        cross_entropy_weight=2.0,
    )
    assert float(loss(y_true, logits)) == pytest.approx(0.5 * dice + 2.0 * ce, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dice_weight": -1}, r"`dice_weight` must be a finite number >= 0"),
        # inf made the loss inf (or NaN where a term was 0).
        ({"cross_entropy_weight": float("inf")}, r"cross_entropy_weight=inf"),
    ],
)
def test_bad_weight(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiceCrossEntropyLoss(**kwargs)


def test_config():
    _check_config(
        DiceCrossEntropyLoss,
        {
            "from_logits": True,
            "ignore_class": 255,
            "dice_weight": 0.3,
            "cross_entropy_weight": 0.7,
            "class_weights": [1.0, 1.0, 3.0],
        },
    )


@pytest.mark.slow
def test_a_model_compiled_with_seglayers_losses_and_metrics_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, size=(4, 32, 32, 1))
    masks[:, :4] = 255
    model = UNet(num_classes=3, filters=4, depth=2, output_activation=None)
    model.compile(
        "adam",
        loss=DiceCrossEntropyLoss(from_logits=True, ignore_class=255),
        metrics=[MeanIoU(3, ignore_class=255, class_names=["a", "b", "c"])],
    )
    model.fit(images, masks, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    outputs, report = load_in_fresh_process(path, images, tmp_path)
    np.testing.assert_allclose(outputs, model.predict(images, verbose=0), atol=1e-6)
    loss_config = report["compile_config"]["loss"]
    assert loss_config["registered_name"] == "seglayers>DiceCrossEntropyLoss"
    metric_config = report["compile_config"]["metrics"][0]
    assert metric_config["registered_name"] == "seglayers>MeanIoU"
    assert metric_config["config"]["class_names"] == ["a", "b", "c"]
    loaded = keras.saving.load_model(path, safe_mode=True)
    ours = model.evaluate(images, masks, return_dict=True, verbose=0)
    theirs = loaded.evaluate(images, masks, return_dict=True, verbose=0)
    assert theirs == pytest.approx(ours, rel=1e-5)
