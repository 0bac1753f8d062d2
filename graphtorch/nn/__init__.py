"""graphtorch.nn: Module, Parameter, layers, losses; `functional` and `init` as submodules."""

from . import functional, init, parallel, utils
from .modules import *  # noqa: F403
from .modules import __all__ as _modules_all
from .parameter import Parameter

__all__ = ["Parameter", "functional", "init", "parallel", "utils", *_modules_all]
