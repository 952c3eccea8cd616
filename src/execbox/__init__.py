"""execbox: a self-hosted, Anthropic-compatible code execution tool."""

__version__ = "0.1.0"
