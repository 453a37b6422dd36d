"""Plugin hooks, discovery and isolation. Third-party code talks to latentgraph through here."""

from latentgraph.plugins.hookspecs import hookimpl, hookspec
from latentgraph.plugins.host import (
    LifecycleHooks,
    PluginHost,
    PluginInfo,
    PluginSelection,
    load_plugins,
    plugin_selection_from_env,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "LifecycleHooks",
    "PluginHost",
    "PluginInfo",
    "PluginSelection",
    "load_plugins",
    "plugin_selection_from_env",
]
