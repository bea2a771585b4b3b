"""Registration of public classes for `.keras` loading."""

import keras


def register(cls):
    """Registers `cls` as `seglayers>ClassName` for `keras.saving`.

    Every public class is decorated with this, so a `.keras` file that holds
    it loads with `keras.saving.load_model` (also under `safe_mode=True`)
    once `seglayers` has been imported. A registered name is permanent: never
    rename a class without keeping an alias registered under the old name.
    """
    return keras.saving.register_keras_serializable(package="seglayers")(cls)


def register_old_name(cls, old_name):
    """Loads files that saved `cls` under the registered name it had before
    a rename, `seglayers>{old_name}`; new files get the new name."""
    keras.saving.get_custom_objects()[f"seglayers>{old_name}"] = cls
