"""The CUDA driver API through cuda-python: device discovery, modules, one arena, launches in order.

Nothing here knows the graph IR: a `Program` is an image (cubin or PTX), an arena size, and a
list of launches whose arguments are byte offsets into the arena (the status words are appended
to every launch). Without the `cuda` extra, or without a driver or a device, `is_available()` is
False and nothing else is touched: importing this module never needs a GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

STATUS_SLOTS = 4  # [code, bad index, dim, size]: the layout the emitted kernels write


class CudaError(RuntimeError):
    pass


def _driver():
    from cuda.bindings import driver

    return driver


def _ok(result):
    """Unwrap a cuda-python (err, *values) tuple, raising CudaError with the driver's name for err."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, name = _driver().cuGetErrorName(err)
        raise CudaError(f"CUDA driver error {int(err)} ({name.decode() if name else err})")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


@functools.cache
def _init() -> str | None:
    """None when the driver initialized, else why there is no GPU."""
    try:
        driver = _driver()
    except ImportError:
        return "cuda-python is not installed (pip install 'graphtorch[cuda]')"
    try:
        (err,) = driver.cuInit(0)
    except Exception as e:  # no libcuda: cuda-python raises while loading the driver library
        return f"no CUDA driver ({type(e).__name__}: {e})"
    if int(err) != 0:
        return f"cuInit failed ({err})"
    return None


def why_unavailable() -> str | None:
    """None when a CUDA device can be used, else the reason in words."""
    reason = _init()
    if reason is None and device_count() == 0:
        return "the driver reports no CUDA device"
    return reason


def device_count() -> int:
    if _init() is not None:
        return 0
    err, n = _driver().cuDeviceGetCount()
    return n if int(err) == 0 else 0


def is_available() -> bool:
    """True only when the driver initializes and at least one device exists."""
    return device_count() > 0


@functools.cache
def device(ordinal: int = 0) -> Device:
    return Device(ordinal)


class Device:
    """A device, its primary context (made current on this thread) and a stream."""

    def __init__(self, ordinal: int = 0):
        if not is_available():
            raise CudaError(f"no CUDA device: {why_unavailable()}")
        d = _driver()
        self.ordinal = ordinal
        self.handle = _ok(d.cuDeviceGet(ordinal))
        self.context = _ok(d.cuDevicePrimaryCtxRetain(self.handle))
        self.activate()
        self.stream = _ok(d.cuStreamCreate(0))
        attr = d.CUdevice_attribute
        major = _ok(d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.handle))
        minor = _ok(d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.handle))
        self.arch = f"sm_{major}{minor}"

    def activate(self) -> None:
        _ok(_driver().cuCtxSetCurrent(self.context))

    def synchronize(self) -> None:
        _ok(_driver().cuStreamSynchronize(self.stream))


@dataclass(frozen=True)
class KernelLaunch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    offsets: tuple[int, ...]  # one arena byte offset per pointer argument


class DeviceArray:
    """A contiguous array in device memory (a CUDA tensor's data): pointer, shape, dtype.

    It owns its bytes and frees them through the driver that allocated them when collected.
    Every copy checks the byte counts first: the driver would read or write past the end.
    """

    def __init__(self, shape: tuple[int, ...], dtype, dev: Device | None = None):
        self.dev = dev or device()
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        self._driver = _driver()
        self.dev.activate()
        self.ptr = int(_ok(self._driver.cuMemAlloc(max(self.nbytes, 1))))

    @classmethod
    def from_host(cls, array: np.ndarray, dev: Device | None = None) -> DeviceArray:
        array = np.asarray(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
        out = cls(array.shape, array.dtype, dev)
        _ok(out._driver.cuMemcpyHtoDAsync(out.ptr, array.ctypes.data, array.nbytes, out.dev.stream))
        out.dev.synchronize()  # the host array may be freed as soon as this returns
        return out

    def to_host(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        _ok(self._driver.cuMemcpyDtoHAsync(out.ctypes.data, self.ptr, self.nbytes, self.dev.stream))
        self.dev.synchronize()
        return out

    def write(self, offset: int, host: np.ndarray) -> None:
        """Copy a contiguous host array into bytes [offset, offset + host.nbytes)."""
        if offset < 0 or offset + host.nbytes > self.nbytes:
            raise CudaError(f"bytes [{offset}, {offset + host.nbytes}) are outside the array of {self.nbytes}")
        host = np.ascontiguousarray(host)
        _ok(self._driver.cuMemcpyHtoDAsync(self.ptr + offset, host.ctypes.data, host.nbytes, self.dev.stream))
        self.dev.synchronize()

    def copy_from(self, other: DeviceArray) -> None:
        """Overwrite every byte with `other`'s (same byte count, same device)."""
        if other.nbytes != self.nbytes or other.dev is not self.dev:
            raise CudaError(f"cannot copy {other.nbytes} bytes on {other.dev.ordinal} into {self.nbytes} on "
                            f"{self.dev.ordinal}")
        _ok(self._driver.cuMemcpyDtoDAsync(self.ptr, other.ptr, self.nbytes, self.dev.stream))

    def copy(self) -> DeviceArray:
        out = DeviceArray(self.shape, self.dtype, self.dev)
        out.copy_from(self)
        return out

    def __array__(self, dtype=None, copy=None):
        # numpy code reached with device data: torch's own words for the mistake
        raise TypeError(f"can't convert cuda:{self.dev.ordinal} device type tensor to numpy. Use Tensor.cpu() "
                        "to copy the tensor to host memory first.")

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, cuda:{self.dev.ordinal}, ptr={self.ptr:#x})"

    def __del__(self):
        try:
            self._driver.cuMemFree(self.ptr)
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


class Kernels:
    """A loaded module whose kernels are launched on explicit device pointers (the eager ops' path).

    Unlike `Program` it owns no arena: the caller passes each launch's pointers; the status words
    are this object's own and are appended to every launch, as the emitted kernels expect.
    """

    def __init__(self, image: bytes, names: list[str], dev: Device | None = None):
        d = _driver()
        self.dev = dev or device()
        self.dev.activate()
        self._driver = d
        self.module = _ok(d.cuModuleLoadData(image))
        self.functions = {name: _ok(d.cuModuleGetFunction(self.module, name.encode())) for name in names}
        self.status = DeviceArray((STATUS_SLOTS,), np.int64, self.dev)

    def run(self, launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int], list[int]]]) -> np.ndarray:
        """Launch (kernel, grid, block, pointers) in order on the stream, wait, return the status words."""
        d = self._driver
        self.dev.activate()
        stream = self.dev.stream
        _ok(d.cuMemsetD8Async(self.status.ptr, 0, self.status.nbytes, stream))
        keep = []  # the argument arrays must outlive the launches: they are read when the kernel starts
        for name, grid, block, pointers in launches:
            values = np.array([*pointers, self.status.ptr], dtype=np.uint64)
            addresses = np.array([values.ctypes.data + 8 * i for i in range(len(values))], dtype=np.uint64)
            keep.append((values, addresses))
            _ok(d.cuLaunchKernel(self.functions[name], *grid, *block, 0, stream, addresses.ctypes.data, 0))
        return self.status.to_host()  # synchronizes

    def __del__(self):
        try:
            self._driver.cuModuleUnload(self.module)
        except Exception:  # interpreter shutdown, or a module that never loaded
            pass


class Program:
    """A loaded module with its own device arena and status words; `run()` launches everything in order."""

    def __init__(self, image: bytes, launches: list[KernelLaunch], arena_bytes: int, dev: Device | None = None):
        d = _driver()
        self.dev = dev or device()
        self.dev.activate()
        self.module = _ok(d.cuModuleLoadData(image))
        self.arena = _ok(d.cuMemAlloc(max(arena_bytes, 1)))
        self.status = _ok(d.cuMemAlloc(8 * STATUS_SLOTS))
        self.arena_bytes = arena_bytes
        functions = {name: _ok(d.cuModuleGetFunction(self.module, name.encode())) for name in {la.kernel for la in launches}}
        base, status = int(self.arena), int(self.status)
        self._calls = []
        for la in launches:  # the argument arrays are built once: a launch then passes one address
            values = np.array([base + off for off in la.offsets] + [status], dtype=np.uint64)
            addresses = np.array([values.ctypes.data + 8 * i for i in range(len(values))], dtype=np.uint64)
            self._calls.append((functions[la.kernel], la.grid, la.block, values, addresses))

    def upload(self, offset: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._check_range(offset, array.nbytes)
        _ok(_driver().cuMemcpyHtoDAsync(int(self.arena) + offset, array.ctypes.data, array.nbytes, self.dev.stream))
        self.dev.synchronize()  # the host array may be freed as soon as this returns

    def download(self, offset: int, out: np.ndarray) -> np.ndarray:
        self._check_range(offset, out.nbytes)
        _ok(_driver().cuMemcpyDtoHAsync(out.ctypes.data, int(self.arena) + offset, out.nbytes, self.dev.stream))
        self.dev.synchronize()
        return out

    def _check_range(self, offset: int, nbytes: int) -> None:
        if offset < 0 or offset + nbytes > self.arena_bytes:
            raise CudaError(f"bytes [{offset}, {offset + nbytes}) are outside the arena of {self.arena_bytes}")

    def run(self) -> np.ndarray:
        """Launch every kernel in order on the stream, wait, and return the status words."""
        d = _driver()
        self.dev.activate()
        stream = self.dev.stream
        _ok(d.cuMemsetD8Async(self.status, 0, 8 * STATUS_SLOTS, stream))
        for fn, grid, block, _values, addresses in self._calls:
            _ok(d.cuLaunchKernel(fn, *grid, *block, 0, stream, addresses.ctypes.data, 0))
        status = np.zeros(STATUS_SLOTS, np.int64)
        _ok(d.cuMemcpyDtoHAsync(status.ctypes.data, self.status, status.nbytes, stream))
        self.dev.synchronize()
        return status

    def close(self) -> None:
        d = _driver()
        if getattr(self, "module", None) is not None:
            self.dev.activate()
            d.cuMemFree(self.arena)
            d.cuMemFree(self.status)
            d.cuModuleUnload(self.module)
            self.module = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass
