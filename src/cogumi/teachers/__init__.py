"""Teachers and judges: OpenAI-compatible endpoints."""
