"""The API's routers, one per noun; each module exposes ``router``."""
