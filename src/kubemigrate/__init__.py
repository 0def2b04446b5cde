"""kubemigrate: the database side of a Kubernetes release as a handful of invoke tasks."""

__version__ = "0.1.0"
