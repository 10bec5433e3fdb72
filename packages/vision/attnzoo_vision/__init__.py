"""attnzoo-vision: vision backbones for attnzoo (BiFormer), usable from the zoo and from timm.

Importing this package is torch-free (the zoo imports ``attnzoo_vision.plugin`` to list
models). ``import attnzoo_vision.biformer`` builds the models and registers them with timm.
"""

from __future__ import annotations

__version__ = "0.1.0"
