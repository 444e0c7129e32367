"""Hand-made specs and models that obey the builder's contract, for the training tests.

The contract: outputs are a dict keyed by output name, each from a float32 layer of that name;
the output activation is inside the model; a single input is named `input`.
"""

from __future__ import annotations

import copy
from typing import Any

from blockspec.builder.spec import InputSpec, OutputSpec, ResolvedSpec

MAIN = OutputSpec(
    "main",
    source="main",
    activation="softmax",
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
)
AUX = OutputSpec(
    "aux1",
    source="aux1",
    activation="softmax",
    loss="sparse_categorical_crossentropy",
    loss_weight=0.3,
    train_only=True,
)


def tiny_spec(
    train: dict[str, Any] | None = None,
    *,
    input_shape=(8, 8, 1),
    aux: bool = True,
    name: str = "tiny",
    classes: int = 10,
) -> ResolvedSpec:
    """A `ResolvedSpec` for `tiny_model`: a small conv net, a `main` head, an `aux1` head."""
    outputs = [MAIN, AUX] if aux else [MAIN]
    document = {
        "spec": 1,
        "name": name,
        "input": list(input_shape),
        "vars": {"classes": classes},
        "network": [{"conv": {"filters": 8, "kernel": 3}}],
        "outputs": {o.name: {"activation": o.activation} for o in outputs},
        "train": copy.deepcopy(train or {}),
    }
    return ResolvedSpec(
        name=name,
        description="test fixture",
        inputs=[InputSpec("input", tuple(input_shape))],
        network=[],
        outputs=outputs,
        train=copy.deepcopy(train or {}),
        document=document,
        file="<fixture>",
    )


def tiny_model(resolved: ResolvedSpec):
    """conv -> pool -> dense `main` softmax; an `aux1` softmax head from the conv features."""
    import keras
    from keras import layers

    classes = resolved.document["vars"]["classes"]
    inp = keras.Input(resolved.inputs[0].shape, name="input")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    features = layers.Flatten(name="flat")(layers.MaxPooling2D(2, name="pool2")(x))
    main = layers.Dense(classes, name="main_dense")(features)
    outputs = {"main": layers.Activation("softmax", dtype="float32", name="main")(main)}
    if any(o.name == "aux1" for o in resolved.outputs):
        aux = layers.Dense(classes, name="aux1_dense")(layers.Flatten(name="aux1_flat")(x))
        outputs["aux1"] = layers.Activation("softmax", dtype="float32", name="aux1")(aux)
    return keras.Model(inp, outputs, name=resolved.name)


class SlowBatches:
    """A Keras callback that sleeps after each batch, so a test can kill a run mid-epoch."""

    def __new__(cls, seconds: float):
        import time

        import keras

        class _Slow(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                time.sleep(seconds)

        return _Slow()


def main(argv: list[str] | None = None) -> int:
    """Run `training.trainer.train` on the tiny fixture in a fresh process.

    `python tests/training_fixtures.py OUT TRAIN_JSON [--logical-cpus N] [--resume] [--slow S]`
    """
    import argparse
    import json
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("train")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--input", default="8,8,1")
    args = parser.parse_args(argv)
    if args.logical_cpus:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.logical_cpus)]
        )
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from blockspec.training.trainer import train

    spec = tiny_spec(
        json.loads(args.train), input_shape=tuple(int(v) for v in args.input.split(","))
    )
    extra = [SlowBatches(args.slow)] if args.slow else []
    result = train(spec, args.out, resume=args.resume, build=tiny_model, callbacks=extra, verbose=2)
    print(
        json.dumps(
            {"epochs": result.epochs, "replicas": result.replicas, "stopped": result.stopped}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
