"""TensorBoard image summaries (TensorFlow lives in `seglayers/data/` only)."""

import tensorflow as tf


def write_image_summary(log_dir, name, image, step):
    """Appends the uint8 `(H, W, 3)` `image` to the event file in `log_dir`.

    A folder that cannot be written raises an `OSError`, as a file written
    with `open` does: TensorFlow raises its own errors (a `log_dir` that is
    a file: `FailedPreconditionError`), which callers catching `OSError`
    for a full disk or a read-only folder would not catch."""
    writer = None
    try:
        writer = tf.summary.create_file_writer(log_dir)
        with writer.as_default():
            tf.summary.image(name, image[None], step=step)
        writer.flush()
    except tf.errors.OpError as error:
        raise OSError(f"{type(error).__name__}: {error.message}") from error
    finally:
        if writer is not None:
            try:
                writer.close()
            except tf.errors.OpError:
                pass  # The error above says what failed.
