"""prestop-agent: take a pod's instance out of its service registry, drain, then stop the app."""

__version__ = "0.1.0"
__all__ = ["__version__"]
