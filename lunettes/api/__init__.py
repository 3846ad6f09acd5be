"""The HTTP side of lunettes: /metrics, /healthz, /readyz (and, later, the API and page).

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client).
"""
