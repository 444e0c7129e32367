"""Built-in step types. Importing this package registers them (without importing TensorFlow)."""

import blockspec.blocks.convnext  # noqa: F401
import blockspec.blocks.efficientnet_v2  # noqa: F401
import blockspec.blocks.mobile  # noqa: F401
import blockspec.blocks.nasnet  # noqa: F401
import blockspec.blocks.stacks  # noqa: F401
from blockspec.blocks import combinators, conv, heads, inception, layers, residual  # noqa: F401
