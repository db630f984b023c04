"""One router per concern: prediction, health and metrics, the web page."""
