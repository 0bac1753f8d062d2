"""Compare graphtorch batches with torch's, structure by structure."""

import numpy as np
import torch

import graphtorch


def assert_same_batch(ours, theirs) -> None:
    """Same container types, same keys, tensors with the same dtype name, shape and values."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, graphtorch.Tensor), f"expected a tensor, got {type(ours)}"
        assert ours.dtype.name == str(theirs.dtype).removeprefix("torch."), (ours.dtype, theirs.dtype)
        assert tuple(ours.shape) == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for key in theirs:
            assert_same_batch(ours[key], theirs[key])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs), (type(ours), type(theirs))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same_batch(a, b)
    else:
        assert type(ours) is type(theirs) and ours == theirs, (ours, theirs)


def to_torch(sample):
    """The same sample with graphtorch tensors replaced by torch tensors."""
    if isinstance(sample, graphtorch.Tensor):
        return torch.from_numpy(sample.numpy().copy())
    if isinstance(sample, dict):
        return type(sample)((k, to_torch(v)) for k, v in sample.items())
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*(to_torch(v) for v in sample))
    if isinstance(sample, (list, tuple)):
        return type(sample)(to_torch(v) for v in sample)
    return sample
