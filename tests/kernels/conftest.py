"""Kernels tests run Triton kernels on CPU tensors through the interpreter.

``TRITON_INTERPRET=1`` must be set before anything imports triton or the ops (fp32/fp16 only
there: the interpreter's bf16 ``tl.dot`` is wrong). Shared helpers live in ``kernel_checks``.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
