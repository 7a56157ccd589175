"""The dashboard: a web app on the chain and IPFS only, so any member or auditor can run it (``flchain dashboard``).

``data`` reads what the pages show (tasks, rounds, participants, the sites' evaluations, audits,
global models) from the coordinator's views and events and from storage; ``app`` is the FastAPI
application (HTML pages, local static assets, the JSON API under ``/api``); ``server`` opens the
chain and a loopback-only IPFS peer and runs it (:mod:`fl_chain.webserver`). FastAPI and uvicorn come
with the ``serve`` extra and are imported only when a dashboard is built.
"""

from __future__ import annotations
