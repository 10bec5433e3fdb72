"""attnzoo-vision: vision backbones for attnzoo (BiFormer, MoH), usable from the zoo and from timm.

Importing this package is torch-free (the zoo imports ``attnzoo_vision.plugin`` to list
models). ``import attnzoo_vision.biformer`` builds the models and registers them with timm;
``attnzoo_vision.moh`` holds the MoH attentions.
"""

from __future__ import annotations

__version__ = "0.1.0"
