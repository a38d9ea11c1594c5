"""The server-rendered web UI: health, SLA and incident pages (Jinja2, no JavaScript)."""
