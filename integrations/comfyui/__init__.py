# SPDX-License-Identifier: GPL-3.0-or-later
"""vmatte for ComfyUI: video matting nodes on vmatte's streaming API.

Copy (or link) this folder into ComfyUI/custom_nodes/ and ``pip install``
the vmatte wheel into ComfyUI's Python."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
