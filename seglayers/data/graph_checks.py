"""Checks that fail inside a TensorFlow graph (tf.data, tf.function).

TensorFlow lives in `seglayers/data/` only. Python cannot raise inside a
graph, where a tensor has no value yet; `tf.debugging.Assert` fails when the
graph runs, naming the values, so a bad mask mapped through `OneHotMask` in
`tf.data` stops the pipeline instead of becoming silent zero rows.
"""

import tensorflow as tf


def assert_none_bad(values, bad, message, any_bad=None):
    """`values` once checked: fails with `message` and up to 10 distinct bad
    values if any element of the bool tensor `bad` is true.

    `bad` may also be a function that makes that tensor, with `any_bad` the
    scalar that says whether any is true, computed more cheaply: then the
    per-element test runs only when the check fails."""
    if callable(bad):
        make_bad = bad
    else:
        any_bad, make_bad = tf.reduce_any(bad), lambda: bad

    def fail():
        found = tf.unique(tf.reshape(tf.boolean_mask(values, make_bad()), [-1])).y[:10]
        check = tf.debugging.Assert(False, [message, found], summarize=10)
        with tf.control_dependencies([check]):
            return tf.size(found)

    # In a tf.cond, the bad values are gathered only when there are some.
    checked = tf.cond(any_bad, fail, lambda: tf.constant(0))
    with tf.control_dependencies([checked]):
        return tf.identity(values)
