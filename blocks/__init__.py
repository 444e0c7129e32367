"""Built-in step types. Importing this package registers them (without importing TensorFlow)."""

from blockspec.blocks import combinators, conv, heads, inception, layers, residual  # noqa: F401
