"""The `seglayers` console command, before anything imports Keras.

Keras picks its backend while it is first imported, and an unknown
`KERAS_BACKEND` (or one whose package is missing) fails right there, so
inside `import seglayers`, before `seglayers.cli.main` could turn it into
the command's one-line error. This module is outside the package so that
it can import Keras first and report that failure the way the command
reports every other bad input: one line on stderr, exit status 2.
"""

import sys

BACKENDS = "tensorflow, jax or torch"


def main(argv=None):
    try:
        import keras  # noqa: F401
    except ValueError as error:  # Keras: "Unable to import backend : foo"
        return _fail(f"{error}. Set KERAS_BACKEND to {BACKENDS}.")
    except ImportError as error:  # the backend's own package is missing
        return _fail(
            f"the Keras backend could not be imported ({error}). Install its "
            f"package, or set KERAS_BACKEND to {BACKENDS}."
        )
    from seglayers.cli import main as run

    return run(argv)


def _fail(message):
    print(f"seglayers: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
