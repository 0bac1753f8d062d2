"""The runtime: loads and runs compiled code. It knows IR text, objects, pointers and threads,
never the graph IR or the user API."""

from .cache import ObjectCache, cache_dir, default_cache, source_fingerprint
from .jit import JITError, LazyPart, NativeModule, Part, compile_ir, host_target_machine
from .threads import ThreadPool, get_num_threads, pool, set_num_threads

__all__ = ["ObjectCache", "cache_dir", "default_cache", "source_fingerprint", "JITError", "LazyPart", "NativeModule", "Part", "compile_ir",
           "host_target_machine", "ThreadPool", "get_num_threads", "pool", "set_num_threads"]
