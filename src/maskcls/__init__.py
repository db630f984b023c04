"""maskcls: mask / gender / age classification of photos of people, end to end.

``maskcls.load``, ``maskcls.train`` and ``maskcls.solve`` are the Python API (``maskcls.api``); importing the
package loads no torch: the layers that need it are imported by the calls that use them.
"""

from .api import load, solve, train
from .core.version import __version__

__all__ = ["__version__", "load", "solve", "train"]
