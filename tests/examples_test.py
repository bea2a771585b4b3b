import pytest

from tests.harness import PROJECT_ROOT, run_in_fresh_process

pytest.importorskip("tensorflow")


@pytest.mark.slow
def test_write_shapes_folder(tmp_path):
    script = (
        "import runpy, sys; sys.argv = sys.argv[1:];"
        f"runpy.run_path('{PROJECT_ROOT}/examples/write_shapes_folder.py',"
        " run_name='__main__')"
    )
    out = run_in_fresh_process(
        script,
        [
            "write_shapes_folder.py",
            str(tmp_path / "d"),
            "--num-samples",
            "10",
            "--image-size",
            "32",
            "32",
        ],
    )
    assert "Wrote 10 pairs" in out and "class ids [0, 1, 2, 3]" in out
    assert len(list((tmp_path / "d" / "masks").iterdir())) == 10
