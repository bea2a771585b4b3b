"""How `seglayers train` fits a model: its compile arguments, the learning
rate's schedule, and the `tf.data` pipeline `fit` reads."""

from seglayers.cli._volumes import DEFAULTS, WARMUP_SHARE


def compile_model(model, args, class_names, steps_per_epoch=None):
    """Compiles `model` as the command trains it (also what
    `benchmarks.architectures` times); `steps_per_epoch` sets the learning
    rate's schedule (`learning_rate`)."""
    import keras

    import seglayers

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(args, steps_per_epoch)),
        loss=seglayers.DiceCrossEntropyLoss(ignore_class=args.ignore_class),
        metrics=[
            seglayers.MeanIoU(
                args.num_classes,
                ignore_class=args.ignore_class,
                class_names=class_names,
            ),
            seglayers.PixelAccuracy(args.num_classes, ignore_class=args.ignore_class),
        ],
    )


def learning_rate(args, steps_per_epoch=None):
    """Adam's learning rate for --spatial-dims: the rate alone, or where the
    defaults `decay` it and `steps_per_epoch` is known, a schedule over the
    training steps: up linearly from a hundredth of the rate in the first
    `WARMUP_SHARE` of them, then down along a cosine to a hundredth."""
    import keras

    defaults = DEFAULTS[args.spatial_dims]
    rate = defaults["learning_rate"]
    if not (defaults["decay"] and steps_per_epoch):
        return rate
    steps = args.epochs * steps_per_epoch
    warmup = round(WARMUP_SHARE * steps)
    return keras.optimizers.schedules.CosineDecay(
        rate / 100,
        decay_steps=steps - warmup,
        alpha=0.01,
        warmup_target=rate,
        warmup_steps=warmup,
    )


def fit_dataset(data, batch_size, shuffle_seed=None):
    """The `tf.data.Dataset` that `fit` reads `data` from (arrays as
    `(images, masks)`, or a dataset from a folder loader), with tf.data's
    autotuning off (`seglayers.data.directory.without_autotuning`: with it,
    some epochs began 10 to 30 s late). Arrays are batched here on every
    backend: on TensorFlow, `fit` would put them in an autotuned pipeline of
    its own.
    Batches are taken by shuffled indices from the arrays themselves, in
    numpy: no copy of them is made (`Dataset.from_tensors` made two, 1 GB
    more at the peak for the 5,000 built-in volumes of 24³).
    """
    import tensorflow as tf

    from seglayers.data.directory import without_autotuning

    if isinstance(data, tuple):
        arrays = data
        indices = tf.data.Dataset.range(len(arrays[0]))
        if shuffle_seed is not None:
            indices = indices.shuffle(len(arrays[0]), seed=shuffle_seed)

        def gather(batch):
            taken = tf.numpy_function(
                lambda rows: tuple(array[rows] for array in arrays),
                [batch],
                [array.dtype for array in arrays],
                stateful=False,
            )
            return tuple(
                tf.ensure_shape(part, (None, *array.shape[1:]))
                for part, array in zip(taken, arrays)
            )

        data = indices.batch(batch_size).map(gather).prefetch(2)
    return without_autotuning(data)
