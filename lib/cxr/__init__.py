"""cxr: chest X-ray detection carried through a lake, a warehouse and a mart."""

__version__ = "0.1.0"
