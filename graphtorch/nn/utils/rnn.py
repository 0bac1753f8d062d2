"""torch.nn.utils.rnn: pad_sequence (packed sequences are not supported)."""

from __future__ import annotations

from ...ops.shape import stack
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
