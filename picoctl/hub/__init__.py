"""The hub: one Starlette app on uvicorn serving the device API, the operator API and the event stream."""
