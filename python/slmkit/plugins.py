"""The plugin manager: built-in default plugins, then third-party ones from the `slmkit`
entry-point group. Registries are built from the hooks on first use."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "slmkit"
DEFAULT_PLUGINS = (
    "slmkit.default_plugins.backends",
    "slmkit.default_plugins.formats",
    "slmkit.default_plugins.tokenizers",
    "slmkit.default_plugins.techniques",
)


@dataclass
class Registry:
    backends: dict[str, Callable] = field(default_factory=dict)
    techniques: dict[str, Any] = field(default_factory=dict)
    tokenizers: dict[str, tuple[Callable, Callable]] = field(default_factory=dict)
    formats: dict[str, tuple[Callable, Callable]] = field(default_factory=dict)
    provided_by: dict[str, dict[str, list[str]]] = field(default_factory=dict)


_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("slmkit")
        pm.add_hookspecs(hookspecs)
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
        _load_entry_points(pm)
        _pm = pm
    return _pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Third-party plugins from the `slmkit` entry-point group. One that fails to import or
    to register is skipped with a warning naming it, so a broken plugin cannot break slmkit."""
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:  # noqa: BLE001  (whatever the plugin's import raises)
            dist = getattr(getattr(ep, "dist", None), "name", None)
            warnings.warn(f"slmkit plugin {ep.name!r} ({ep.value}"
                          f"{f', from the package {dist}' if dist else ''}) was not loaded: "
                          f"{type(e).__name__}: {e}", stacklevel=3)


def register_plugin(plugin, name: str | None = None) -> None:
    """Register a plugin object or module at run time (tests, notebooks)."""
    get_plugin_manager().register(plugin, name=name)
    reset_registry()


def unregister_plugin(name: str) -> None:
    get_plugin_manager().unregister(name=name)
    reset_registry()


def reset_registry() -> None:
    global _registry
    _registry = None


def _collect(reg: Registry, kind: str, plugin_name: str, key: str) -> None:
    reg.provided_by.setdefault(plugin_name, {}).setdefault(kind, []).append(key)


def get_registry() -> Registry:
    global _registry
    if _registry is not None:
        return _registry
    pm = get_plugin_manager()
    reg = Registry()
    # Call each plugin's hooks one by one so we know which plugin registered what. Later
    # registrations (third-party plugins) override built-ins of the same name.
    for plugin_name, plugin in pm.list_name_plugin():
        def call(hook_name, add, _p=plugin_name):
            impl = getattr(plugin, hook_name, None)
            if impl is None:
                return
            try:
                impl(register=add)
            except Exception as e:  # noqa: BLE001
                if _p in DEFAULT_PLUGINS:
                    raise
                import warnings
                warnings.warn(f"slmkit plugin {_p!r} failed in {hook_name}: "
                              f"{type(e).__name__}: {e}", stacklevel=3)

        def backend(name, factory, _p=plugin_name):
            reg.backends[name] = factory
            _collect(reg, "backends", _p, name)

        def technique(tech, _p=plugin_name):
            reg.techniques[tech.name] = tech
            _collect(reg, "techniques", _p, tech.name)

        def tokenizer(name, can_load, load, _p=plugin_name):
            reg.tokenizers[name] = (can_load, load)
            _collect(reg, "tokenizers", _p, name)

        def fmt(name, can_read, read, _p=plugin_name):
            reg.formats[name] = (can_read, read)
            _collect(reg, "formats", _p, name)

        call("slmkit_register_backends", backend)
        call("slmkit_register_techniques", technique)
        call("slmkit_register_tokenizers", tokenizer)
        call("slmkit_register_formats", fmt)
    _registry = reg
    return reg


def list_plugins() -> list[dict]:
    """[{name, builtin, registers: {kind: [names]}}] for `slmkit plugins`."""
    reg = get_registry()
    out = []
    for name, _plugin in get_plugin_manager().list_name_plugin():
        out.append({"name": name, "builtin": name in DEFAULT_PLUGINS,
                    "registers": reg.provided_by.get(name, {})})
    return out


def get_backend(name: str, threads: int | None = None):
    backends = get_registry().backends
    if name not in backends:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(backends))}")
    return backends[name](threads=threads)


def get_technique(name: str):
    techniques = get_registry().techniques
    if name not in techniques:
        raise ValueError(f"unknown compression technique {name!r}; available: "
                         f"{', '.join(sorted(techniques))}")
    return techniques[name]
