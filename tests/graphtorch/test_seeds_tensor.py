"""The seed notes' tensor programs run unchanged with graphtorch as `torch` and print what torch prints.

Each program is the code block from /work/shared/seeds (copied here verbatim, so the test does not
depend on that folder). It runs once with `torch` bound to graphtorch and once to real torch; the
captured stdout must match, except lines showing values of torch.rand, which differ by design
(those are compared by their shape of text: same line count and same non-numeric skeleton)."""

import contextlib
import io
import re
import sys
import types
import warnings

import numpy as np
import pytest

import graphtorch

# the notes were written for numpy < 1.24, where np.float still existed
OLD_NUMPY = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")}, float=float)

SEED_001_CREATION = '''
import torch
import numpy as np

t = torch.tensor([10, 20, 30, 40, 50], dtype=torch.float)
print("tensor={} \\ntensor.dtype={} \\ntensor.type={} \\ntype={}".format(t, t.dtype, t.type(), type(t)))
print("-"*50)

a = np.array([10, 20, 30, 40, 50], dtype=np.float)
print("array={} \\narray.dtype={} \\narray.type={}".format(a, a.dtype, type(a)))
print("-"*50)

t = torch.rand(5, 3, dtype=torch.double)
print("tensor={} \\ntensor.dtype={} \\ntensor.type={} \\ntype={}".format(t, t.dtype, t.type(), type(t)))
print("-"*50)
'''

SEED_001_CUDA = '''
import numpy as np
import torch

x = torch.tensor([10, 20, 30], dtype=torch.double)
if torch.cuda.is_available():
    device = torch.device("cuda")
    y = torch.ones_like(x, device=device)
    x = x.to(device)
    z = torch.rand(3).cuda()
    s = x + y + z
    print(s)
    print(s.to("cpu", torch.double))
print(x)
'''

SEED_001_TENSOR_VS_tensor = '''
import torch

t1 = torch.Tensor([1, 2])
print("tensor={} \\ntensor.dtype={} \\ntensor.type={} \\ntype={}".format(t1, t1.dtype, t1.type(), type(t1)))
print("-"*50)

t2 = torch.tensor([1, 2])
print("tensor={} \\ntensor.dtype={} \\ntensor.type={} \\ntype={}".format(t2, t2.dtype, t2.type(), type(t2)))
print("-"*50)

t2 = torch.tensor([1., 2.])
print("tensor={} \\ntensor.dtype={} \\ntensor.type={} \\ntype={}".format(t2, t2.dtype, t2.type(), type(t2)))
print("-"*50)
'''

SEED_001_NUMPY_BRIDGE = '''
import torch
import numpy as np

numpy_x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
tensor_x = torch.from_numpy(numpy_x)
print("numpy_x = {}".format(numpy_x))
print("tensor_x = {}".format(tensor_x))

numpy_x_from_tensor = tensor_x.numpy()
print("numpy_x_from_tensor = {}".format(numpy_x_from_tensor))

numpy_x_from_tensor[1] = 98
print("-"*50)
print("after change the value of one element.")
print("numpy_x = {}".format(numpy_x))
print("tensor_x = {}".format(tensor_x))
print("numpy_x_from_tensor = {}".format(numpy_x_from_tensor))
'''

SEED_001_AUTOGRAD = '''
import torch

def compute():
    x = torch.tensor([[1, 2],[3, 4]], dtype=torch.double, requires_grad=True)
    y = 2 * x + 1
    z = y * y + 1
    out = z.mean()
    return {'x':x, 'y':y, 'z':z, 'out':out}

def print_tensor(key, tensor):
    print("{}={}".format(key, tensor))
    print("  grad_fn={} \\n  grad={} \\n  requires_grad={}\\n  is_leaf={} \\n  dtype={}".format(
        tensor.grad_fn, tensor.grad,
        tensor.requires_grad, tensor.is_leaf, tensor.dtype))
    print("-"*50)

def print_tensors(tensors):
    for key, tensor in tensors.items():
        print_tensor(key, tensor)

tensors = compute()
tensors['out'].backward()
print_tensors(tensors)

tensors = compute()
for _, tensor in tensors.items():
    tensor.retain_grad()
tensors['out'].backward()
print_tensors(tensors)

tensors = compute()
gradients = torch.tensor([[0.5, 1], [2, 4]], dtype=torch.float)
tensors['z'].backward(gradients)
print_tensors(tensors)
'''

SEED_003_INITIALIZE = '''
data = [[1, 2], [3, 4]]
x_data = torch.tensor(data)
np_array = np.array(data)
x_np = torch.from_numpy(np_array)
x_ones = torch.ones_like(x_data)
print(f"Ones Tensor: \\n {x_ones} \\n")

x_rand = torch.rand_like(x_data, dtype=torch.float)
print(f"Random Tensor: \\n {x_rand} \\n")
'''

SEED_003_ATTRIBUTES = '''
tensor = torch.rand(3, 4)

print(f"Shape of tensor: {tensor.shape}")
print(f"Datatype of tensor: {tensor.dtype}")
print(f"Device tensor is stored on: {tensor.device}")
'''

SEED_004_BCE = '''
import torch

x = torch.tensor([-4.5, 0.7, 3.3])
y = torch.tensor([1., 0., 1.])
torch_loss = -(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x))).mean()
print('Logistic Regression Cross Entropy Loss use torch: loss = {}'.format(torch_loss.item()))
'''

SEED_004_NDARRAY = '''
import torch
import numpy as np

array_list = [[11, 12, 13], [21, 22, 23], [31, 32, 33]]
pytorch_tensor = torch.tensor(array_list)
numpy_ndarray = np.array(array_list)
print("Create PyTorch Tensor is: {}".format(pytorch_tensor))
print("Create NumPy Ndarray is: {}".format(numpy_ndarray))
print("Convert PyTorch Tensor to NumPy Ndarray is same: {}".format(pytorch_tensor.numpy()==numpy_ndarray))
print("Convert NumPy Ndarray to PyTorch Tensor is same: {}".format(pytorch_tensor==torch.from_numpy(numpy_ndarray)))
print("The data type in PyTorch Tensor is: {}".format(pytorch_tensor.dtype))
print("The data type in NumPy Ndarray is: {}".format(numpy_ndarray.dtype))
'''

PROGRAMS = {
    "001_creation": (SEED_001_CREATION, True), "001_cuda": (SEED_001_CUDA, False),
    "001_Tensor_vs_tensor": (SEED_001_TENSOR_VS_tensor, False), "001_numpy_bridge": (SEED_001_NUMPY_BRIDGE, False),
    "001_autograd": (SEED_001_AUTOGRAD, False), "003_initialize": (SEED_003_INITIALIZE, True),
    "003_attributes": (SEED_003_ATTRIBUTES, False), "004_bce": (SEED_004_BCE, False),
    "004_ndarray": (SEED_004_NDARRAY, False),
}


def run(code: str, module) -> str:
    """Run `code` with `import torch` giving `module` (and the old numpy the notes assume)."""
    saved = {name: sys.modules.get(name) for name in ("torch", "numpy")}
    sys.modules["torch"], sys.modules["numpy"] = module, OLD_NUMPY
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both warn when the notes read a non-leaf .grad
            exec(compile(code, "<seed>", "exec"), {"torch": module, "np": OLD_NUMPY, "__name__": "__seed__"})
    finally:
        for name, mod in saved.items():
            sys.modules[name] = mod
    return out.getvalue()


def skeleton(text: str) -> str:
    """The text with every number replaced by 0: what random values leave comparable."""
    return re.sub(r"-?\d+\.\d*(e[+-]\d+)?", "0", text)


@pytest.mark.parametrize("name", PROGRAMS)
def test_seed_program_prints_what_torch_prints(torch, name):
    code, random_values = PROGRAMS[name]
    got, want = (normalized(run(code, graphtorch))), normalized(run(code, torch))
    assert (got if not random_values else skeleton(got)) == (want if not random_values else skeleton(want))


def normalized(text: str) -> str:
    """Object addresses (`<AddBackward0 object at 0x...>`) differ between any two runs."""
    return re.sub(r"0x[0-9a-f]+", "0x", text.replace("graphtorch", "torch"))


def test_expected_values_from_the_notes(torch):
    out = run(SEED_001_AUTOGRAD, graphtorch)
    assert "grad=tensor([[3., 5.],\n        [7., 9.]], dtype=torch.float64)" in out
    assert "grad=tensor([[  6.,  20.],\n        [ 56., 144.]], dtype=torch.float64)" in out
    assert "loss = 1.8834843635559082" in run(SEED_004_BCE, graphtorch)
    bridge = run(SEED_001_NUMPY_BRIDGE, graphtorch)
    assert bridge.count("98.") == 3  # the write through numpy shows in all three views
