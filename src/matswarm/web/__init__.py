"""The consortium's web dashboard (``matswarm dashboard``): read-only pages over a home's ledger
and artifact store. Needs the ``web`` extra (FastAPI, Jinja2, uvicorn)."""
