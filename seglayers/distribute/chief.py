"""Which process of a multi-worker job writes files."""

import json
import os


def is_chief():
    """False on the non-chief workers of a multi-worker tf.distribute job."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        return True
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") in ("worker", None) and task.get("index", 0) == 0
