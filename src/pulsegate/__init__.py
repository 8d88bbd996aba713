"""pulsegate: a high-performance HTTP/1.1 reverse proxy and API gateway."""

__version__ = "0.1.0"
