import pytest

from seglayers.distribute import is_chief

_TWO_WORKERS = '"cluster": {"worker": ["h0:1", "h1:1"]}'
_WITH_CHIEF = '"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}'


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, True),  # not a multi-worker job
        ("{}", True),
        ("not json", True),
        ("null", True),  # raised AttributeError
        ("[1, 2]", True),
        ('{"cluster": null, "task": {"type": "worker", "index": 1}}', False),
        (f'{{{_TWO_WORKERS}, "task": {{"type": "worker", "index": 0}}}}', True),
        (f'{{{_TWO_WORKERS}, "task": {{"type": "worker", "index": 1}}}}', False),
        # TensorFlow's resolver takes int(index): no worker was the chief.
        (f'{{{_TWO_WORKERS}, "task": {{"type": "worker", "index": "0"}}}}', True),
        (f'{{{_TWO_WORKERS}, "task": {{"type": "worker", "index": "1"}}}}', False),
        (f'{{{_WITH_CHIEF}, "task": {{"type": "chief", "index": 0}}}}', True),
        (f'{{{_WITH_CHIEF}, "task": {{"type": "worker", "index": 0}}}}', False),
        # TensorFlow: "the evaluator job is also a chief job on its own".
        (f'{{{_TWO_WORKERS}, "task": {{"type": "evaluator", "index": 0}}}}', True),
        (f'{{{_TWO_WORKERS}, "task": {{"type": "ps", "index": 0}}}}', False),
    ],
)
def test_is_chief_follows_tensorflows_rule(monkeypatch, tf_config, expected):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert is_chief() is expected
