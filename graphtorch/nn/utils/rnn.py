"""torch.nn.utils.rnn: pad_sequence, and packed sequences (pack_padded_sequence, pad_packed_sequence,
pack_sequence) in torch's layout, so an RNN can take variable-length batches.

A PackedSequence's data holds the valid time steps time-major, longest sequences first within each
step (batch_sizes[t] rows at step t). Packing and unpacking are constant-index gathers, so gradients
flow through them and they trace like any other op.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ... import dtypes as dt
from ...ops.creation import full, tensor
from ...ops.indexing import index_select
from ...ops.shape import cat, stack
from ...tensor import Tensor
from .._conv import pad


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack tensors of shapes (L_i, *) into (L_max, B, *) (or (B, L_max, *)), padding the short ones."""
    if padding_side not in ("left", "right"):
        raise RuntimeError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    longest = max(s.shape[0] for s in sequences)
    padded = [_pad_front_dim(s, longest - s.shape[0], padding_side, padding_value) for s in sequences]
    return stack(padded, 0 if batch_first else 1)


def _pad_front_dim(seq: Tensor, missing: int, side: str, value: float) -> Tensor:
    if missing == 0:
        return seq
    amounts = (0, missing) if side == "right" else (missing, 0)
    return pad(seq, (0, 0) * (seq.ndim - 1) + amounts, value=value)


class PackedSequence(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def lengths(self) -> np.ndarray:
        """Each sequence's length, in the caller's (unsorted) batch order."""
        sizes = self.batch_sizes.numpy()
        by_rank = np.array([(sizes > rank).sum() for rank in range(int(sizes[0]))])
        return by_rank if self.unsorted_indices is None else by_rank[self.unsorted_indices.numpy()]


def _lengths(lengths) -> np.ndarray:
    values = lengths.numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
    values = values.astype(np.int64).reshape(-1)
    if values.size and values.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' that "
                           "is <= 0")
    return values


def _order(lengths: np.ndarray, enforce_sorted: bool) -> np.ndarray | None:
    """The batch order longest-first, or None when the caller promises it already is."""
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
                               "sidestep this requirement if you do not need ONNX exportability.")
        return None
    return np.argsort(-lengths, kind="stable")


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    lengths = _lengths(lengths)
    x = input.transpose(0, 1) if batch_first else input
    steps, batch = x.shape[:2]
    if len(lengths) != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {len(lengths)} (batch_size="
                           f"{batch})")
    if lengths.max() > steps:
        raise RuntimeError(f"lengths must be at most the padded length {steps}, but got {int(lengths.max())}")
    order = _order(lengths, enforce_sorted)
    ranked = np.arange(batch) if order is None else order
    batch_sizes = np.array([(lengths > t).sum() for t in range(int(lengths.max()))], dtype=np.int64)
    rows = np.concatenate([t * batch + ranked[:n] for t, n in enumerate(batch_sizes)])
    data = index_select(x.reshape(steps * batch, *x.shape[2:]), 0, tensor(rows))
    if order is None:
        return PackedSequence(data, tensor(batch_sizes))
    return PackedSequence(data, tensor(batch_sizes), tensor(order), tensor(np.argsort(order)))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    data, sizes = sequence.data, sequence.batch_sizes.numpy()
    steps = len(sizes)
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"Expected total_length to be at least the length of the longest sequence in input, but "
                             f"got total_length={total_length} and max sequence length being {steps}")
        steps = total_length
    batch = int(sizes[0])
    rank = np.arange(batch) if sequence.unsorted_indices is None else sequence.unsorted_indices.numpy()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    # position (t, b) reads packed row offsets[t] + rank[b], or the padding row past the end
    index = np.full((steps, batch), len(data), dtype=np.int64)
    for t, n in enumerate(sizes):
        valid = rank < n
        index[t, valid] = offsets[t] + rank[valid]
    extended = cat([data, full((1, *data.shape[1:]), padding_value, dtype=data.dtype)])
    padded = index_select(extended, 0, tensor(index.reshape(-1))).reshape(steps, batch, *data.shape[1:])
    lengths = tensor(sequence.lengths(), dtype=dt.int64)
    return (padded.transpose(0, 1) if batch_first else padded), lengths


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)
