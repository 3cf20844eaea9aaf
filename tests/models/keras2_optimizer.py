"""Writes tests/data/keras2_adam_savedmodel: a Keras-2 model (tf-keras) saved as a SavedModel with its optimizer's
slot variables, as Keras-2-era training code saved them (``model.save(folder, save_format="tf")`` after training
with an OptimizerV2 such as Adam). TensorFlow's object loader revives that optimizer only where tf-keras is installed;
elsewhere ``tf.saved_model.load`` fails with "'_UserObject' object has no attribute 'add_slot'", while the v1
signature loader runs its serving_default.

The folder is committed (about 100 kB) because making it needs tf-keras, and tf-keras in the environment is
exactly what would let the object loader succeed. Regenerate (tf-keras of the installed TensorFlow's version,
outside the environment the tests run in):

    pip install --no-deps --target /tmp/tfk tf-keras==2.21.0
    PYTHONPATH=/tmp/tfk python tests/models/keras2_optimizer.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "data" / "keras2_adam_savedmodel"


def make(folder: Path = FOLDER) -> Path:
    import numpy as np
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="scores")(hidden))
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3), loss="mse")  # Keras 2's OptimizerV2: slot variables
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 6), dtype=np.float32), rng.random((8, 3), dtype=np.float32), epochs=1, verbose=0)
    shutil.rmtree(folder, ignore_errors=True)
    model.save(str(folder), save_format="tf")
    return folder


if __name__ == "__main__":
    print(make())
