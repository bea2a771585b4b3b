"""No abstraction tax: UNet vs the same network in the functional API.

Both are trained with `fit` on the same in-memory batches (128×128, filters
16, depth 4, batch 8, 4 classes); images per second, fits interleaved, the
first (compiling) fit excluded. The functional model is the network a user
would write by hand from the paper, layer for layer, and the benchmark checks
that it has exactly the same number of parameters.
"""

import numpy as np

from benchmarks.harness import row, time_pair

SIZE, FILTERS, DEPTH, BATCH, CLASSES = 128, 16, 4, 8, 4


def functional_unet(num_classes, filters, depth, input_shape):
    """The hand-written U-Net: conv-BN-ReLU ×2, max-pool, transpose up."""
    import keras
    from keras import layers

    def conv_block(x, width):
        for _ in range(2):
            x = layers.Conv2D(
                width, 3, padding="same", use_bias=False, kernel_initializer="he_normal"
            )(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input(input_shape)
    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, filters * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = conv_block(x, filters * 2**depth)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(
            filters * 2**level, 2, strides=2, kernel_initializer="he_normal"
        )(x)
        x = layers.Concatenate()([x, skips[level]])
        x = conv_block(x, filters * 2**level)
    x = layers.Conv2D(num_classes, 1, dtype="float32")(x)
    outputs = layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def run(backend, quick=False):

    import seglayers

    steps = 4 if quick else 16
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(BATCH * steps, SIZE, SIZE, 3)).astype("float32")
    masks = rng.integers(0, CLASSES, size=(BATCH * steps, SIZE, SIZE, 1))

    ours = seglayers.UNet(CLASSES, filters=FILTERS, depth=DEPTH)
    ours.build((None, SIZE, SIZE, 3))
    theirs = functional_unet(CLASSES, FILTERS, DEPTH, (SIZE, SIZE, 3))
    if ours.count_params() != theirs.count_params():
        raise RuntimeError(
            f"not the same network: {ours.count_params()} vs "
            f"{theirs.count_params()} parameters"
        )
    for model in (ours, theirs):
        model.compile("adam", "sparse_categorical_crossentropy")

    def fit(model):
        return lambda: model.fit(images, masks, batch_size=BATCH, epochs=1, verbose=0)

    ours_time, theirs_time = time_pair(
        fit(ours), fit(theirs), repeats=3 if quick else 5, warmup=1
    )
    return [
        row(
            "training throughput (CPU)",
            backend,
            f"UNet fit, {SIZE}x{SIZE}, filters {FILTERS}, depth {DEPTH}, batch "
            f"{BATCH} vs functional",
            ours_time,
            theirs_time,
            "img/s",
            per_call=float(len(images)),
        )
    ]
