import warnings

import numpy as np


def numpy_confusion(y_true, y_pred_ids, num_classes, ignore_class=None):
    """Reference confusion matrix, counted with a plain numpy loop."""
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred_ids).reshape(-1)
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_class is not None:
        keep &= t != ignore_class
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for a, b in zip(t[keep], p[keep]):
        matrix[a, b] += 1
    return matrix


def numpy_scores(matrix):
    tp = np.diag(matrix).astype(float)
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice


def random_segmentation(
    seed, batch=3, size=16, num_classes=5, ignore_class=None, absent=None
):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, size=(batch, size, size))
    logits = rng.normal(size=(batch, size, size, num_classes)).astype("float32")
    if absent is not None:
        y_true[y_true == absent] = (absent + 1) % num_classes
        logits[..., absent] = -10.0
    if ignore_class is not None:
        y_true[:, : size // 4] = ignore_class
    return y_true, logits


def traced_update(metric, y_true, y_pred):
    """`metric.update_state` on each batch inside `evaluate`'s compiled step
    (as in `fit`), where values are unknown and bad ids cannot raise."""
    import keras

    y_pred = np.asarray(y_pred)
    model = keras.Sequential(
        [
            keras.Input(y_pred.shape[1:], dtype=str(y_pred.dtype)),
            keras.layers.Identity(),
        ]
    )
    # Keras needs a loss to evaluate; this one adds nothing.
    model.compile(loss=lambda t, p: keras.ops.zeros((1,)), metrics=[metric])
    with warnings.catch_warnings():
        # `evaluate` reads the result, which warns of uncounted pixels; the
        # caller checks the warning.
        warnings.simplefilter("ignore", UserWarning)
        model.evaluate(y_pred, np.asarray(y_true), batch_size=1, verbose=0)
