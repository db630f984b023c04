"""The HTTP service: ``maskcls serve`` (FastAPI + uvicorn), a thin shell over an exported or a trained model."""
