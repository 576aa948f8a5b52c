"""berth: a container engine that serves the Docker Engine API.

Layers (import only downward):
  L0  errors, oci, wire          pure values and codecs, stdlib only
  L1  host                       the only code that touches the kernel or runs programs
  L2  content, snapshot, metadata, image, runtime   stores and drivers
  L3  services                   images and containers as the API sees them
  L4  api (daemon), client + cli (user side)
"""

__version__ = "0.1.0"
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
