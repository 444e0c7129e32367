"""Local response normalisation with Caffe's (and AlexNet's) semantics, on any Keras backend."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="blockspec")
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel LRN: `b = a / (k + alpha / size * sum(a^2 over size neighbours)) ** beta`.

    Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization` does not and
    takes a radius, so AlexNet's `alpha=1e-4, size=5` means `alpha=2e-5, depth_radius=2` there.

    Args:
        size: channels in the window (odd).
        alpha: scale, Caffe convention.
        beta: exponent.
        k: bias.
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, **kwargs
    ):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number. Received: size={size}")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def call(self, inputs):
        squared = ops.square(inputs)
        half = self.size // 2
        channels = inputs.shape[-1]
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[half, half]])
        window = padded[..., 0:channels]
        for offset in range(1, self.size):
            window = window + padded[..., offset : offset + channels]
        scale = self.k + (self.alpha / self.size) * window
        return inputs / ops.power(scale, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }
