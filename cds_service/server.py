"""Production serving: gunicorn running create_app in each worker."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from cds_service.config import Settings


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], config_path: str | None) -> None:
        self.options = options
        self.config_path = config_path
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from cds_service.app import create_app

        return create_app(self.config_path)


def serve(settings: Settings, *, config_path: str | None, host: str, port: int, workers: int) -> int:
    """Serve until SIGTERM/SIGINT; workers finish in-flight requests before exiting."""
    if config_path is not None:
        os.environ["CDS_SERVICE_CONFIG"] = str(config_path)
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": settings.timeout_seconds,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "cds-service",
        "control_socket_disable": True,  # several instances on one host would share one socket path
    }
    GunicornServer(options, config_path).run()
    return 0
