"""The cockpit API: FastAPI app, auth and tenancy, live feed, CAP 1.2 and the web cockpit."""
