"""The tensor ops of the user API (creation, elementwise, reduction, shape, indexing, linalg, sorting, einsum);
methods.py binds them as Tensor methods."""
