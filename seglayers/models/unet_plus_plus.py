from keras import ops

from seglayers._api import register
from seglayers._validation import check_bool, check_positive_int, check_rate
from seglayers.layers._normalization import resolve_normalization
from seglayers.layers.decoder_block import DecoderBlock
from seglayers.models._checks import config_filters, level_filters
from seglayers.models._contracting_path import (
    make_encoder_side,
    run_contracting_path,
)
from seglayers.models.segmentation_model import SegmentationModel


@register
class UNetPlusPlus(SegmentationModel):
    """UNet++ (Zhou et al., 2018): a U-Net whose skips are nested, densely
    connected pathways.

    The encoder gives the nodes `X^{i,0}` (level `i`, stride `2**i`). Every
    other node is one `DecoderBlock`:
    `X^{i,j} = ConvBlock(concat(up(X^{i+1,j-1}), X^{i,0}, ..., X^{i,j-1}))`,
    for `j >= 1` and `i + j <= depth`; the decoder's output is `X^{0,depth}`.
    The last node of each row (`i + j = depth`) is the plain U-Net's decoder
    block, so `filters` sets its channels as in `UNet`; the inner nodes of a
    row keep the channels of the row's encoder features (both agree over
    the own encoder), which is how segmentation_models' `UnetPlusPlus`
    counts them: with `upsampling="nearest"` the decoder has exactly its
    parameters (its head is a 3×3 convolution, this one a 1×1).

    With a pluggable encoder the grid starts at `"P1"` (stride 2), as in
    segmentation_models: the stride-1 row is the last node alone, which
    upsamples without a skip. A level the encoder lacks (stride 2 in
    ConvNeXt) gets no nested nodes either, only its row's last node, as
    `UNet` gives it no skip.

    Sizes not divisible by `2**depth` work: each node matches its
    upsampled input to its row's size (zero-padded at the far edge).

    Args:
        num_classes: int, the number of classes (channels of the output).
        filters: int, the channels of the top level, doubled at every level
            below; or `depth + 1` ints, top to bottom (with an `encoder`,
            whose deepest features are the bottom, the last is not used).
            Defaults to 32 (the
            paper's), or 16 with an `encoder` (decoder channels 256, 128,
            64, 32 and 16, as in segmentation_models).
        depth: int, the number of poolings. Defaults to 4, or 5 with an
            `encoder` (its stride-32 features at the bottom).
        num_convs: int, convolutions per node. Defaults to 2.
        normalization: `"auto"`, `"batch"`, `"group"`, `"instance"`,
            `"layer"` or `None`, as in `UNet`. Defaults to `"auto"`:
            `"batch"` for images, `"group"` for volumes.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout at the end of the contracting
            path, as in `UNet`. Defaults to 0.
        upsampling: `"transpose"`, `"bilinear"` or `"nearest"` (as in
            `DecoderBlock`). Defaults to `"transpose"`.
        residual: bool, whether every block has a residual shortcut.
            Defaults to `False`.
        deep_supervision: bool. `False` (the default): the output is the
            head of `X^{0,depth}`. `True`: the output is the average of the
            heads of the full-resolution nodes `X^{0,1}` ... `X^{0,depth}`,
            so every nested sub-network gets its own short gradient path
            from the loss, as in the paper, while the model keeps one output
            tensor (for `fit`, metrics, `MaskVisualizer`, `predict_tiled`
            and the command line). `decode` returns the mean of those
            nodes' features and the one head projects it: the head is a
            1×1 convolution, linear, so this is exactly the mean of one
            shared head applied to each node (in logits, before the output
            activation), at the cost of one head. One loss on the average,
            not one loss per head; the nodes share the head's weights
            (the paper gives each its own). Needs `encoder=None`: over a
            pluggable encoder the grid has a single full-resolution node.
        output_activation: `"auto"`, `"softmax"`, `"sigmoid"` or `None`
            (logits). Defaults to `"auto"`.
        encoder: `None` for the U-Net's own encoder, or an encoder as for
            `UNet`: a name from `seglayers.models.encoders.ENCODERS`, a
            functional `keras.Model` or a keras-hub backbone.
        encoder_weights: `None`, `"imagenet"` or the path of a weights
            file, for an encoder by name.
        encoder_trainable: bool, `False` freezes the encoder.
            Defaults to `True`.
        encoder_preprocessing: `"auto"`, `"caffe"`, `"tf"`, `"torch"` or
            `None`, as for `UNet`. Defaults to `"auto"`.
        rescale: float or `None`, a factor applied to the inputs first, e.g.
            `1 / 255`. Defaults to `None`.
        spatial_dims: 2 for images, 3 for volumes
            `(batch, depth, height, width, channels)` (with `encoder=None`).
            Defaults to 2.
        **kwargs: `keras.Model` keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor (a depth axis
            after the batch one with `spatial_dims=3`).
        training: bool, whether normalization and dropout run in training mode.

    Input shape:
        `(batch, *spatial, channels)`, every spatial size at least
        `2**depth`.

    Output shape:
        `(batch, *spatial, num_classes)`.

    Example:

    >>> model = UNetPlusPlus(num_classes=3, filters=4, depth=2)
    >>> model.build((None, None, None, 3))
    >>> len(model.nodes)  # X^{0,1}, X^{1,1}, X^{0,2}
    3
    >>> model.count_params()
    8459
    >>> tuple(model(keras.ops.ones((1, 32, 32, 3))).shape)
    (1, 32, 32, 3)
    """

    def __init__(
        self,
        num_classes,
        filters=None,
        depth=None,
        num_convs=2,
        normalization="auto",
        activation="relu",
        dropout=0.0,
        upsampling="transpose",
        residual=False,
        deep_supervision=False,
        output_activation="auto",
        encoder=None,
        encoder_weights=None,
        encoder_trainable=True,
        encoder_preprocessing="auto",
        rescale=None,
        spatial_dims=2,
        **kwargs,
    ):
        kwargs.setdefault("name", "unet_plus_plus")
        own_encoder = encoder is None
        resolved_depth = depth if depth is not None else (4 if own_encoder else 5)
        deep_supervision = check_bool("deep_supervision", deep_supervision)
        if deep_supervision and not own_encoder:
            raise ValueError(
                "`deep_supervision` averages the full-resolution nodes "
                "X^{0,1..depth}, which only the model's own encoder gives: a "
                "pluggable encoder has no stride-1 features, so its grid has a "
                "single full-resolution node. Pass encoder=None or "
                "deep_supervision=False. Received: deep_supervision=True, "
                f"encoder={getattr(encoder, 'name', encoder)!r}"
            )
        super().__init__(
            num_classes,
            depth=resolved_depth,
            output_activation=output_activation,
            encoder=encoder,
            encoder_weights=encoder_weights,
            encoder_trainable=encoder_trainable,
            encoder_preprocessing=encoder_preprocessing,
            rescale=rescale,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        widths = level_filters(
            filters if filters is not None else (32 if own_encoder else 16),
            resolved_depth,
        )

        # === Layers ===
        block_args = dict(
            num_convs=num_convs,
            normalization=resolve_normalization(normalization, spatial_dims),
            activation=activation,
            residual=residual,
            spatial_dims=spatial_dims,
            dtype=self.dtype_policy,
        )
        dropout = check_rate("dropout", dropout)
        make_encoder_side(self, widths, dropout, block_args)
        if own_encoder:
            encoder_widths = dict(enumerate(widths))
        else:
            encoder_widths = {
                int(level[1:]): output.shape[-1]
                for level, output in zip(self.encoder_levels, self.encoder.outputs)
            }
        self.node_keys = _nested_nodes(resolved_depth, encoder_widths)
        self.nodes = [
            DecoderBlock(
                # The row's last node is the U-Net's decoder block; inner
                # nodes keep the encoder's channels (segmentation_models').
                widths[i] if i + j == resolved_depth else encoder_widths[i],
                upsampling=upsampling,
                name=f"node_{i}_{j}",
                **block_args,
            )
            for i, j in self.node_keys
        ]
        self.make_head()

        # === Config ===
        self.filters = config_filters(filters, widths)
        self.num_convs = check_positive_int("num_convs", num_convs)
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.upsampling = upsampling
        self.residual = bool(residual)
        self.deep_supervision = deep_supervision

    def encode(self, x, training=None):
        if self.encoder is not None:
            return super().encode(x, training=training)
        return run_contracting_path(
            self.encoder_blocks, self.bottleneck, x, training=training
        )

    def nested_features(self, pyramid, training=None):
        """Every node of the grid: a dict `{(i, j): features}` with the
        encoder's features at `(i, 0)`, from `pyramid` (as `encode` gives
        it). For reading the nested outputs, e.g. `X^{0,j}` of a shallower
        sub-network."""
        grid = {(int(level[1:]), 0): x for level, x in pyramid.items()}
        if self.bottom_dropout is not None:
            bottom = (self.depth, 0)
            grid[bottom] = self.bottom_dropout(grid[bottom], training=training)
        for (i, j), node in zip(self.node_keys, self.nodes):
            below = grid[(i + 1, j - 1)]
            row = [grid[(i, k)] for k in range(j) if (i, k) in grid]
            inputs = [below, ops.concatenate(row, axis=-1)] if row else below
            grid[(i, j)] = node(inputs, training=training)
        return grid

    def decode(self, pyramid, training=None):
        grid = self.nested_features(pyramid, training=training)
        if not self.deep_supervision:
            return grid[(0, self.depth)]
        # The shared head is linear: its output for the mean is the mean of
        # its outputs for each node.
        top = [grid[(0, j)] for j in range(1, self.depth + 1)]
        return ops.mean(ops.stack(top, axis=0), axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "num_convs": self.num_convs,
                "normalization": self.normalization,
                "activation": self.activation,
                "dropout": self.dropout,
                "upsampling": self.upsampling,
                "residual": self.residual,
                "deep_supervision": self.deep_supervision,
            }
        )
        return config


def _nested_nodes(depth, encoder_widths):
    """The `(i, j)` of every decoder node, in an order where each node's
    inputs come first (column by column).

    `X^{i,j}` needs `X^{i+1,j-1}`. A row's last node (`i + j = depth`)
    always exists; an inner node only where the row has encoder features
    (`X^{i,0}`) and the node below-left exists, so a level the encoder lacks
    has its last node alone.
    """
    found = {(i, 0) for i in encoder_widths}
    for j in range(1, depth + 1):
        for i in range(depth - j + 1):
            if i + j == depth or ((i, 0) in found and (i + 1, j - 1) in found):
                found.add((i, j))
    return tuple(key for key in sorted(found, key=lambda k: (k[1], k[0])) if key[1])
