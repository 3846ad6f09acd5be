"""lunettes: Pod delivery traces, SLOs and diagnoses from kube-apiserver audit logs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
