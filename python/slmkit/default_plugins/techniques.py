"""Built-in compression techniques."""
from ..hookspecs import hookimpl


@hookimpl
def slmkit_register_techniques(register):
    from ..compress.rtn import RoundToNearest
    from ..compress.calibrated import AWQ, GPTQ
    register(RoundToNearest())
    register(GPTQ())
    register(AWQ())
