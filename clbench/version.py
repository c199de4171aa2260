"""clbench version (bumped when results could change)."""
__version__ = "0.1.0"
