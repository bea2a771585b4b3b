"""Files written atomically, with the permissions the user's umask gives.

Atomic writes stage through `tempfile.mkstemp` / `mkdtemp`, which create
0600 files and 0700 folders (private by design); renamed into place as they
are, every preview, mask and report would be unreadable to the user's group
or a web server, unlike a file written with `open`. `follow_umask` gives a
staged path the mode a plain `open` or `os.mkdir` would have given it.
"""

import contextlib
import os
import tempfile


def _umask():
    # Linux shows the umask in /proc; elsewhere reading it means setting it,
    # so it is put back at once.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path):
    """Sets `path` to 0o666 (files) or 0o777 (folders) less the umask."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~_umask())


def make_staging_dir(parent, prefix):
    """A new folder in `parent`, with the umask's permissions."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
    follow_umask(folder)
    return folder


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Opens a temporary file beside `path`; renames it to `path` on success.

    A reader never sees a half-written file, and a failed write leaves none.
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=".", suffix=os.path.splitext(path)[1] + ".tmp"
    )
    try:
        with os.fdopen(handle, mode) as f:
            yield f
        follow_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
