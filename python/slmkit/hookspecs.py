"""Plugin hooks (pluggy). A plugin implements any of these with @slmkit.hookimpl; each receives a
`register` callback and calls it once per thing it provides. The built-ins register the same way.

    @slmkit.hookimpl
    def slmkit_register_techniques(register):
        register(MyTechnique())
"""
import pluggy

hookspec = pluggy.HookspecMarker("slmkit")
hookimpl = pluggy.HookimplMarker("slmkit")


@hookspec
def slmkit_register_backends(register):
    """register(name, factory): factory(threads=None) returns a slmkit.backends.Backend."""


@hookspec
def slmkit_register_techniques(register):
    """register(technique): a slmkit.compress.Technique (has .name, .apply(checkpoint, ...))."""


@hookspec
def slmkit_register_tokenizers(register):
    """register(name, can_load, load): can_load(path) -> bool, load(path) -> Tokenizer."""


@hookspec
def slmkit_register_formats(register):
    """register(name, can_read, read): can_read(path) -> bool, read(path) -> Checkpoint."""
