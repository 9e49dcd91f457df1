"""One HTTP connection pool to the site, with the bearer token and the error mapping."""

from __future__ import annotations

from typing import Any

import requests

from jobcast_client import tracing
from jobcast_client.errors import Unavailable, error_for

USER_AGENT = "jobcast-client-python/0.1"


class Http:
    """Requests to ``base_url`` with ``Authorization: Bearer <token>`` (when given), each
    carrying the current trace context. Not shared between threads: make one per thread."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, timeout: float | None = None,
             trace: tracing.Context = None) -> requests.Response:
        """The answer, whatever its status; :class:`Unavailable` when there is none."""
        sent = dict(headers or {})
        tracing.inject(sent, trace)
        try:
            return self.session.request(method, self.base_url + path, json=json, params=params,
                                        headers=sent, timeout=timeout or self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"no answer from {self.base_url}: {exc}") from exc

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """:meth:`send`, raising the :mod:`jobcast_client.errors` exception for a 4xx/5xx."""
        resp = self.send(method, path, **kwargs)
        if resp.status_code >= 400:
            raise error_for(resp)
        return resp

    def close(self) -> None:
        """Close the pool's connections."""
        self.session.close()
