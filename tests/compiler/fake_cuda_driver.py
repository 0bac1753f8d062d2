"""A test double for `cuda.bindings.driver`: CUDA tensors and eager CUDA ops in CI, without a GPU.

Only the functions graphtorch.runtime.cuda calls exist, and they answer as cuda-python does: a
tuple (err, *values) with err 0 on success. "Device memory" is host memory (numpy buffers), so a
device pointer is a host address; every copy, memset and kernel argument is checked to lie inside
one live allocation, the way a real GPU would fault. Images are not cubins: `image_for` (installed
over graphtorch.cuda_tensor.image_for) hands over the CUDA C source, and cuModuleLoadData compiles
it with g++ through compiler/cuda/hostcheck, whose emulator runs every kernel with its launch
geometry: the threads of a block as fibers with real barriers, shared memory, warp shuffles and
atomics (tiled GEMM/conv, block reductions included). A race or a divergent barrier the emulator
finds raises hostcheck.EmulationError from cuLaunchKernel, so a kernel bug fails the test loudly.

    install(monkeypatch) -> FakeDriver    # graphtorch.cuda.is_available() is True until the test ends
"""

from __future__ import annotations

import ctypes
import enum

import numpy as np

MAGIC = b"GT-FAKE-CUDA-SOURCE\0"
_LIBRARIES: dict[str, object] = {}  # source -> HostLibrary: g++ once per distinct module in a session


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_INVALID_IMAGE = 200
    CUDA_ERROR_INVALID_HANDLE = 400
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_ILLEGAL_ADDRESS = 700


class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


OK = (CUresult.CUDA_SUCCESS,)


def image_for(module, arch: str) -> bytes:
    """The fake's image of an emitted module: its CUDA C source (no GPU compiler involved)."""
    return MAGIC + module.source.encode()


class FakeDriver:
    """One device (compute capability 9.0) whose memory and kernels live on the host."""

    CUresult = CUresult
    CUdevice_attribute = CUdevice_attribute

    def __init__(self, devices: int = 1):
        self.devices = devices
        self.allocations: dict[int, tuple[np.ndarray, int]] = {}  # address -> (buffer, bytes asked for)
        self.modules: dict[int, object] = {}  # handle -> hostcheck.HostLibrary
        self.launches: list[str] = []  # kernel names, in launch order
        self.cooperative: list[str] = []  # those whose threads ran as fibers (barriers, shuffles, shared memory)
        self._handles = 0

    def _handle(self) -> int:
        self._handles += 1
        return self._handles

    # ---- devices, contexts, streams
    def cuInit(self, flags):
        return OK

    def cuGetErrorName(self, err):
        return CUresult.CUDA_SUCCESS, CUresult(int(err)).name.encode()

    def cuDeviceGetCount(self):
        return CUresult.CUDA_SUCCESS, self.devices

    def cuDeviceGet(self, ordinal):
        if not 0 <= ordinal < self.devices:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        return CUresult.CUDA_SUCCESS, ordinal

    def cuDevicePrimaryCtxRetain(self, dev):
        return CUresult.CUDA_SUCCESS, ("context", dev)

    def cuCtxSetCurrent(self, ctx):
        return OK

    def cuStreamCreate(self, flags):
        return CUresult.CUDA_SUCCESS, self._handle()

    def cuStreamSynchronize(self, stream):
        return OK  # every call below completes before it returns

    def cuDeviceGetAttribute(self, attr, dev):
        major = attr == CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        return CUresult.CUDA_SUCCESS, 9 if major else 0

    # ---- memory
    def cuMemAlloc(self, nbytes):
        if nbytes <= 0:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        buf = np.zeros(nbytes + 256, np.uint8)
        address = buf.ctypes.data + (-buf.ctypes.data % 256)  # cudaMalloc's alignment
        self.allocations[address] = (buf, nbytes)
        return CUresult.CUDA_SUCCESS, address

    def cuMemFree(self, ptr):
        return OK if self.allocations.pop(int(ptr), None) is not None else (CUresult.CUDA_ERROR_INVALID_VALUE,)

    def inside(self, ptr: int, nbytes: int) -> bool:
        """True when bytes [ptr, ptr + nbytes) lie in one live allocation."""
        return self.extent(ptr) >= nbytes

    def extent(self, ptr: int) -> int:
        """Bytes from ptr to the end of the live allocation holding it (0 outside every one)."""
        return max((base + size - ptr for base, (_, size) in self.allocations.items() if base <= ptr < base + size),
                   default=0)

    def _copy(self, dst, src, nbytes, device_ends):
        dst, src = int(dst), int(src)
        if ("dst" in device_ends and not self.inside(dst, nbytes)) or ("src" in device_ends and not self.inside(src, nbytes)):
            return (CUresult.CUDA_ERROR_ILLEGAL_ADDRESS,)
        ctypes.memmove(dst, src, nbytes)
        return OK

    def cuMemcpyHtoDAsync(self, dst, src, nbytes, stream):
        return self._copy(dst, src, nbytes, ("dst",))

    def cuMemcpyDtoHAsync(self, dst, src, nbytes, stream):
        return self._copy(dst, src, nbytes, ("src",))

    def cuMemcpyDtoDAsync(self, dst, src, nbytes, stream):
        return self._copy(dst, src, nbytes, ("dst", "src"))

    def cuMemsetD8Async(self, ptr, value, nbytes, stream):
        if not self.inside(int(ptr), nbytes):
            return (CUresult.CUDA_ERROR_ILLEGAL_ADDRESS,)
        ctypes.memset(int(ptr), value, nbytes)
        return OK

    # ---- modules and kernels
    def cuModuleLoadData(self, image):
        from graphtorch.compiler.cuda.hostcheck import HostLibrary

        if not image.startswith(MAGIC):
            return (CUresult.CUDA_ERROR_INVALID_IMAGE, None)
        source = image[len(MAGIC):].decode()
        if source not in _LIBRARIES:
            _LIBRARIES[source] = HostLibrary(source)
        handle = self._handle()
        self.modules[handle] = _LIBRARIES[source]
        return CUresult.CUDA_SUCCESS, handle

    def cuModuleUnload(self, module):
        return OK if self.modules.pop(module, None) is not None else (CUresult.CUDA_ERROR_INVALID_HANDLE,)

    def cuModuleGetFunction(self, module, name):
        library = self.modules[module]
        name = name.decode()
        if name not in library.kernels:
            return (CUresult.CUDA_ERROR_NOT_FOUND, None)
        return CUresult.CUDA_SUCCESS, (library, name)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        library, name = fn
        count = len(library.kernels[name].pointers)
        addresses = (ctypes.c_uint64 * count).from_address(int(params))
        pointers = [ctypes.c_uint64.from_address(a).value for a in addresses]
        extents = [self.extent(p) for p in pointers]  # the kernel's accesses are checked against these
        if not all(extents):  # every argument is a buffer: it must be ours
            return (CUresult.CUDA_ERROR_ILLEGAL_ADDRESS,)
        self.launches.append(name)
        if library.kernels[name].cooperative:
            self.cooperative.append(name)
        library.launch(name, (gx, gy, gz), (bx, by, bz), pointers, extents)
        return OK


def install(monkeypatch) -> FakeDriver:
    """Make graphtorch's CUDA runtime use a new FakeDriver for the rest of the test."""
    from graphtorch import cuda_tensor
    from graphtorch.runtime import cuda as rt

    fake = FakeDriver()
    monkeypatch.setattr(rt, "_driver", lambda: fake)
    monkeypatch.setattr(cuda_tensor, "image_for", image_for)
    reset()
    return fake


def reset() -> None:
    """Forget the driver's answers and the loaded kernels (before installing, and after the test)."""
    from graphtorch import cuda_tensor
    from graphtorch.runtime import cuda as rt

    rt._init.cache_clear()
    rt.device.cache_clear()
    cuda_tensor.cache_clear()
