/* matmul_avx2.c - STUB */
#include "internal.h"
