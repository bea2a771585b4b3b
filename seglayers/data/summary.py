"""TensorBoard image summaries (TensorFlow lives in `seglayers/data/` only)."""

import tensorflow as tf


def write_image_summary(log_dir, name, image, step):
    """Appends the uint8 `(H, W, 3)` `image` to the event file in `log_dir`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        tf.summary.image(name, image[None], step=step)
    writer.flush()
    writer.close()
