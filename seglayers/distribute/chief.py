"""Which process of a multi-worker job writes files."""

import json
import os


def is_chief():
    """Whether this process writes files in a multi-worker tf.distribute job.

    TensorFlow's rule (`multi_worker_util.is_chief`), read from `TF_CONFIG`:
    the `chief` task, or worker 0 of a cluster without one, or the
    `evaluator` (a job of its own); True outside a multi-worker job (no
    task, or a `TF_CONFIG` that is not a JSON object). The task's index may
    be a string, as TensorFlow's resolver takes it (`int(index)`).
    """
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        return True
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(task, dict) or not task:
        return True
    task_type = task.get("type")
    if task_type in ("chief", "evaluator"):
        return True
    cluster = config.get("cluster")
    if isinstance(cluster, dict) and "chief" in cluster:
        return False
    try:
        index = int(task.get("index", 0))
    except (TypeError, ValueError):
        return False
    return task_type in ("worker", None) and index == 0
