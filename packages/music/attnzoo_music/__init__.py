"""attnzoo-music: Music Transformer (relative attention with the skewing trick), trained on Bach chorales.

Importing this package stays torch-free; the model lives in ``attnzoo_music.music_transformer``.
"""

from __future__ import annotations

__version__ = "0.1.0"
