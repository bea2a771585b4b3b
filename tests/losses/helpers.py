import numpy as np


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_dice_loss(y_true, probs, ignore_class=None, class_weights=None):
    """Batch Dice over classes present in the truth, numpy float64."""
    classes = probs.shape[-1]
    valid = (y_true >= 0) & (y_true < classes)
    if ignore_class is not None:
        valid &= y_true != ignore_class
    target = np.eye(classes)[np.where(valid, y_true, 0)] * valid[..., None]
    p = probs * valid[..., None]
    axes = tuple(range(target.ndim - 1))
    inter = (target * p).sum(axes)
    denom = target.sum(axes) + p.sum(axes)
    dice = 2 * inter / np.maximum(denom, 1e-7)
    weights = (target.sum(axes) > 0).astype(float)
    if class_weights is not None:
        weights *= class_weights
    return ((1 - dice) * weights).sum() / max(weights.sum(), 1e-7)


def numpy_cross_entropy(y_true, probs, ignore_class=None):
    valid = (
        np.ones_like(y_true, bool) if ignore_class is None else y_true != ignore_class
    )
    p_true = np.take_along_axis(probs, np.where(valid, y_true, 0)[..., None], -1)[
        ..., 0
    ]
    return -(np.log(np.clip(p_true, 1e-7, 1)) * valid).sum() / valid.sum()


def random_case(seed, batch=2, size=8, classes=4, ignore_class=None):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, size=(batch, size, size))
    logits = rng.normal(size=(batch, size, size, classes)).astype("float32")
    if ignore_class is not None:
        y_true[:, :2] = ignore_class
    return y_true, logits
