"""zonecat: a self-hostable catalog service with durable install and delete tasks."""

__version__ = "0.1.0"
