"""Generate the cffi (API mode) C glue for slmkit's kernels.

Called by CMake at build time:  python gen_cffi.py csrc/slmkit.h OUT.c
The cdef is the block of slmkit.h between SLMKIT_CDEF_BEGIN and SLMKIT_CDEF_END, so the header
stays the only place where the C API is written down.
"""
import re
import sys

import cffi


def cdef_from_header(text: str) -> str:
    match = re.search(r"/\* SLMKIT_CDEF_BEGIN \*/(.*)/\* SLMKIT_CDEF_END \*/", text, re.S)
    if not match:
        raise SystemExit("slmkit.h: SLMKIT_CDEF_BEGIN/END markers not found")
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)  # cffi wants no comments
    return body


def main() -> None:
    header_path, out_path = sys.argv[1], sys.argv[2]
    with open(header_path, encoding="utf-8") as f:
        cdef = cdef_from_header(f.read())
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source("slmkit._slmkit_cffi", '#include "slmkit.h"')
    ffi.emit_c_code(out_path)


if __name__ == "__main__":
    main()
