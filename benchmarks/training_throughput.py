"""No abstraction tax: UNet vs the same network in the functional API.

Both are trained with `fit` on the same in-memory batches; images per
second, fits interleaved, a first (compiling) fit excluded. The functional
model is the network a user would write by hand from the paper, layer for
layer, and the benchmark checks that it has exactly the same number of
parameters.

No runner module of its own: `scaling` measures this row on the two models
it has built (sizes and steps are set there), which saves a process that
imported, built and compiled everything again.
"""

from benchmarks.harness import row, time_pair


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


def check_same_network(ours, theirs):
    if ours.count_params() != theirs.count_params():
        raise RuntimeError(
            f"not the same network: {ours.count_params()} vs "
            f"{theirs.count_params()} parameters"
        )


def fit_row(backend, network, ours, theirs, images, masks, batch_size, quick):
    """`fit` images per second, one epoch over `images`, ours vs theirs."""
    check_same_network(ours, theirs)

    def fit(model):
        return lambda: model.fit(
            images, masks, batch_size=batch_size, epochs=1, verbose=0
        )

    ours_time, theirs_time = time_pair(
        fit(ours), fit(theirs), repeats=2 if quick else 3, warmup=1
    )
    size = images.shape[1]
    steps = len(images) // batch_size
    return row(
        "training throughput (CPU)",
        backend,
        f"UNet fit, {size}², {network}, batch {batch_size}, {steps} steps "
        "vs functional",
        ours_time,
        theirs_time,
        "img/s",
        per_call=float(len(images)),
    )
