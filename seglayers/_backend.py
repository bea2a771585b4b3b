"""Whether Keras could load its backend, found out before anything else.

Keras picks its backend while it is first imported, and an unknown
`KERAS_BACKEND` (or one whose package is missing) fails right there. Both
ways of running the `seglayers` command import the package first (the
console script imports `seglayers.cli`, `python -m seglayers` runs
`seglayers/__main__.py`), so `seglayers/__init__.py` asks here instead of
failing: the package stays importable, the command reports `KERAS_ERROR`
as one line and exit status 2, and every public name raises it as an
`ImportError`.
"""

BACKENDS = "tensorflow, jax or torch"


def _import_keras():
    """`None` if Keras imports, else what went wrong and how to fix it."""
    try:
        import keras  # noqa: F401
    except ValueError as error:  # Keras: "Unable to import backend : foo"
        return f"{error}. Set KERAS_BACKEND to {BACKENDS}."
    except ImportError as error:  # the backend's own package is missing
        return (
            f"Keras could not import its backend ({error}). Install the "
            f"backend's package, or set KERAS_BACKEND to {BACKENDS}."
        )
    return None


KERAS_ERROR = _import_keras()
