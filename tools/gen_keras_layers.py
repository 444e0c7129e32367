"""Writes builder/keras_layers.json: every keras.layers class and its constructor arguments.

`blockspec validate` checks layer arguments without importing TensorFlow; this table is how.
tests/test_registry.py checks it against the installed Keras, so it cannot drift unnoticed.

    python tools/gen_keras_layers.py
"""

import inspect
import json
from pathlib import Path

import keras


def keras_layer_table() -> dict[str, list[str]]:
    base = [
        p
        for p in inspect.signature(keras.layers.Layer.__init__).parameters
        if p not in ("self", "kwargs")
    ]
    base += ["name", "dtype", "trainable", "autocast", "input_shape", "input_dim", "batch_size"]
    table = {}
    for name in sorted(dir(keras.layers)):
        cls = getattr(keras.layers, name)
        if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)) or name.startswith(
            "_"
        ):
            continue
        params = [
            p
            for p in inspect.signature(cls.__init__).parameters
            if p not in ("self", "args", "kwargs")
        ]
        table[name] = sorted(set(params) | set(base))
    return table


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "builder" / "keras_layers.json"
    out.write_text(
        json.dumps({"keras": keras.__version__, "layers": keras_layer_table()}, indent=0) + "\n"
    )
    print(f"wrote {out} ({len(keras_layer_table())} layers)")
