"""Typed, validated configuration for the edge daemon and the gateway (TOML files)."""

from shared.config.edge import EdgeConfig
from shared.config.gateway import GatewayConfig
from shared.config.loader import load_config, parse_config, read_toml

__all__ = ["EdgeConfig", "GatewayConfig", "load_config", "parse_config", "read_toml"]
