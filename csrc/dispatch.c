/* dispatch.c - STUB, to be written */
#include "internal.h"
const char *slm_kernel_name(void) { return "generic"; }
int slm_set_kernel(const char *name) { return SLM_E_TYPE; }
