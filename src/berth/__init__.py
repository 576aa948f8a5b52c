"""berth: a container engine that serves the Docker Engine API.

Layers: imports go downward only, as DESIGN.md's layer table says (the one place it is written;
tests/unit/test_layers.py checks every module against it).
"""

__version__ = "0.1.0"
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
