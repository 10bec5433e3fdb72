"""attnzoo-kernels: the attention primitives shared by attnzoo's model packages.

Each op lives in ``attnzoo_kernels.ops.<name>`` with its float64 reference
(``naive.py``), its fast PyTorch path and, where the op is hot, a Triton kernel.
Importing this package stays torch-free; ``attnzoo_kernels.ops`` loads the ops.
"""

from __future__ import annotations

__version__ = "0.1.0"
