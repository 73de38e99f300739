"""CDS Hooks service for injection billing (CPT 96372 and the drug line).

``create_app`` is exposed lazily so that ``import cds_service.rules`` never loads Flask.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cds_service.app import create_app

        return create_app
    raise AttributeError(f"module 'cds_service' has no attribute {name!r}")
