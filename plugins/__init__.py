"""Plugin hooks, discovery and isolation. Third-party code talks to latentgraph through here."""

from latentgraph.plugins.hookspecs import hookimpl, hookspec
from latentgraph.plugins.host import LifecycleHooks, PluginHost, PluginInfo, load_plugins

__all__ = ["hookimpl", "hookspec", "LifecycleHooks", "PluginHost", "PluginInfo", "load_plugins"]
