"""LayerScale (Touvron et al. 2021): a learned per-channel scale, as in ConvNeXt."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="blockspec")
class LayerScale(keras.layers.Layer):
    """Multiplies the last axis by a learned vector `gamma`, initialised to `init_values`.

    The same computation and weight as keras.applications.convnext.LayerScale.

    Args:
        init_values: the initial value of every scale (ConvNeXt: 1e-6).
        projection_dim: the size of the last axis.
    """

    def __init__(self, init_values: float, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values
        self.projection_dim = projection_dim

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(self.projection_dim,),
            initializer=keras.initializers.Constant(self.init_values),
            trainable=True,
            name="gamma",
        )

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {
            **super().get_config(),
            "init_values": self.init_values,
            "projection_dim": self.projection_dim,
        }
