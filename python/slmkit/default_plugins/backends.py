"""Built-in backends: cpu (C kernels) and numpy (float64 reference)."""
from ..hookspecs import hookimpl


def _cpu(threads=None):
    from ..backends.cpu import CpuBackend
    return CpuBackend(threads)


def _numpy(threads=None):
    from ..backends.numpy_ref import NumpyBackend
    return NumpyBackend(threads)


@hookimpl
def slmkit_register_backends(register):
    register("cpu", _cpu)
    register("numpy", _numpy)
