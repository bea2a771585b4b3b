"""Keras's 3-D convolution layers, computed from 2-D convolutions and
matrix products where XLA's own 3-D ones are slow: JAX on a CPU.

XLA's CPU backend (JAX 0.10.2) has no fast 3-D convolution. A 3×3×3
convolution of 2×24³×32 channels to 16 took 276 ms forward and backward
in a jitted `keras.ops.conv`, and the 2×2×2 stride-2 transposed convolution
of a U-Net's decoder 105 ms for 2×12³×32 → 16; TensorFlow's (oneDNN) take
19 ms and 3 ms. `XLA_FLAGS` (`--xla_cpu_use_onednn`, xnnpack) change
nothing. The same arithmetic in other shapes is fast on XLA's CPU:

- A 3-D convolution is a sum over its depth taps of 2-D convolutions:
  output slice `d` adds, for each tap `i`, the 2-D convolution of input
  slice `d + i` (dilated: `d + i * rate`) with the kernel's slice `i`.
  Folding depth into the batch, that is one 2-D convolution per tap
  (3 for a 3×3×3 kernel): 44 ms for the convolution above.
- A transposed convolution whose kernel equals its stride (the U-Net's
  2×2×2, stride 2) writes each input voxel's product with the kernel into
  its own output block, with no overlap: one matrix product and a reshape,
  2 ms for the one above.

Both give Keras's results up to float rounding (`tests/layers/
volume_conv_test.py`, forward and gradients). Elsewhere (TensorFlow,
PyTorch, JAX on a GPU or TPU) and for what the rewrites do not cover
(strides in `Conv3D`, `groups`, channels-first, a transposed kernel
other than its stride, `output_padding`, sizes not known when traced, as
in an export for volumes of any size) the layers are Keras's own.
`python -m benchmarks.volume_conv` measures both in one run and shows when
the rewrite is no longer worth it.

The classes keep Keras's names: Keras saves the layers of a list under
their class names (`convs/conv3d_1`), so files saved with Keras's classes
load into these, and these into Keras's.
"""

import functools

import keras
from keras import ops

# False: always Keras's own computation (for `benchmarks.volume_conv`).
ENABLED = True


@functools.cache
def _xla_cpu():
    """Whether the layers run on JAX on a CPU (XLA's CPU backend)."""
    if keras.backend.backend() != "jax":
        return False
    return keras.distribution.list_devices()[0].startswith("cpu")


def _rewritable(layer, inputs):
    """Whether `layer` may compute `inputs` another way: channels-last, on
    JAX on a CPU, sizes known. JAX's shape-polymorphic export traces
    symbolic sizes, which its reshape cannot prove non-negative ("Symbolic
    dimension comparison ... is inconclusive"); an export keeps Keras's
    computation."""
    return (
        ENABLED
        and layer.data_format == "channels_last"
        and _xla_cpu()
        and all(isinstance(size, int) for size in inputs.shape)
    )


def conv3d_from_2d(inputs, kernel, padding, dilation_rate):
    """`keras.ops.conv` of channels-last volumes with strides 1, as one 2-D
    convolution per depth tap of `kernel` over the depth-shifted input,
    its depth folded into the batch."""
    taps, rate = kernel.shape[0], dilation_rate[0]
    reach = rate * (taps - 1)  # how far a tap looks beyond the first
    if padding == "same":
        before = reach // 2
        inputs = ops.pad(
            inputs, [[0, 0], [before, reach - before], [0, 0], [0, 0], [0, 0]]
        )
    batch, depth, height, width, channels = ops.shape(inputs)
    depth = depth - reach
    outputs = None
    for i in range(taps):
        shifted = inputs[:, i * rate : i * rate + depth]
        shifted = ops.reshape(shifted, (batch * depth, height, width, channels))
        tap = ops.conv(
            shifted, kernel[i], padding=padding, dilation_rate=dilation_rate[1:]
        )
        outputs = tap if outputs is None else outputs + tap
    _, height, width, filters = ops.shape(outputs)
    return ops.reshape(outputs, (batch, depth, height, width, filters))


def conv3d_transpose_as_product(inputs, kernel):
    """`keras.ops.conv_transpose` of channels-last volumes where the kernel
    (`(kd, kh, kw, filters, channels)`, Keras's layout) equals the strides:
    each voxel times the kernel fills its own output block."""
    batch, depth, height, width, _ = ops.shape(inputs)
    kd, kh, kw, filters, _ = kernel.shape
    blocks = ops.einsum("bdhwc,xyzfc->bdxhywzf", inputs, kernel)
    return ops.reshape(blocks, (batch, depth * kd, height * kh, width * kw, filters))


@keras.saving.register_keras_serializable(package="seglayers")
class Conv3D(keras.layers.Conv3D):
    """`keras.layers.Conv3D`; on JAX on a CPU, with strides 1 and
    `groups=1`, computed from 2-D convolutions (see the module)."""

    def convolution_op(self, inputs, kernel):
        # A "valid" kernel deeper than the input: Keras's error ("resulted in
        # an empty output"), where the slices would give an empty volume.
        reach = self.dilation_rate[0] * (self.kernel_size[0] - 1)
        if (
            self.strides == (1, 1, 1)
            and self.groups == 1
            and _rewritable(self, inputs)
            and (self.padding == "same" or inputs.shape[1] > reach)
        ):
            return conv3d_from_2d(inputs, kernel, self.padding, self.dilation_rate)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="seglayers")
class Conv3DTranspose(keras.layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose`; on JAX on a CPU, where the kernel
    equals the strides, computed as a matrix product (see the module)."""

    def call(self, inputs):
        if not (
            self.kernel_size == self.strides
            and self.output_padding is None
            and self.dilation_rate == (1, 1, 1)
            and _rewritable(self, inputs)
        ):
            return super().call(inputs)
        outputs = conv3d_transpose_as_product(inputs, self.kernel)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
