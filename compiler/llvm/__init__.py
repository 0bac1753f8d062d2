"""The LLVM (CPU) backend: `build(graph, groups) -> Executable`.

Importing this package registers every lowering in module.LOWERINGS: the elementwise, reduction
and single-node ones here, and matmul/conv2d from gemm.py and conv.py when they exist.
"""

import importlib.util

from ..fusion import single_groups
from . import attention, collective, elementwise, opaque, reduction, rows  # noqa: F401  (they register their lowerings)
from .executable import Executable, build
from .index import Index, emit_element, emit_epilogue
from .module import LOWERINGS, LoweringContext

for _name in ("gemm", "conv", "conv_pool"):
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["Executable", "build", "single_groups", "Index", "emit_element", "emit_epilogue", "LOWERINGS", "LoweringContext"]
