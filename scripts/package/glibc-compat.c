// Linked into the release binary by scripts/package.sh (x86_64) with
// -Wl,--wrap=hypot,--wrap=hypotf,--wrap=arc4random,--wrap=_dl_find_object, so that the binary
// runs on glibc 2.34 (EL 9, Ubuntu 22.04) although it is built against Debian 12's 2.36:
// these four are the only symbols newer than 2.34 that the static archives pull in
// (Foundation: hypot, hypotf @2.35; libstdc++'s random_device: arc4random @2.36; libgcc's
// unwinder: _dl_find_object @2.35). Each wrapper does what the new symbol does with calls
// that glibc 2.34 has. Everything at 2.34 (the pthread_* and dl* symbols that moved into libc)
// stays: that is the floor of a build on glibc >= 2.34.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

// hypot, hypotf (2.35, a new version for an errno fix): computed in a wider type, where the
// squares neither overflow nor underflow (x87 long double has a 15-bit exponent), so the one
// rounding at the end is all the error. (Calling hypot@GLIBC_2.2.5 instead does not work:
// --wrap=hypot redirects that reference too, to the wrapper itself.) Foundation uses them for
// CGFloat only.
double __wrap_hypot(double x, double y) {
    if (__builtin_isinf(x) || __builtin_isinf(y)) return __builtin_inf();
    long double lx = x, ly = y;
    return (double)__builtin_sqrtl(lx * lx + ly * ly);
}
float __wrap_hypotf(float x, float y) {
    if (__builtin_isinf(x) || __builtin_isinf(y)) return __builtin_inff();
    double dx = x, dy = y;
    return (float)__builtin_sqrt(dx * dx + dy * dy);
}

// arc4random (2.36): 32 bits from the kernel's CSPRNG, as glibc's own does.
uint32_t __wrap_arc4random(void) {
    uint32_t value;
    size_t got = 0;
    while (got < sizeof value) {
        ssize_t n = getrandom((char *)&value + got, sizeof value - got, 0);
        if (n > 0) got += (size_t)n;
    }
    return value;
}

// _dl_find_object (2.35): the object whose loaded segments contain pc, with its
// PT_GNU_EH_FRAME, found with dl_iterate_phdr as the unwinder did before 2.35.
struct starling_find { uintptr_t pc; struct dl_find_object *out; int found; };

static int starling_find_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct starling_find *f = data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    void *eh = NULL;
    int hit = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
            if (start < lo) lo = start;
            if (end > hi) hi = end;
            if (f->pc >= start && f->pc < end) hit = 1;
        } else if (ph->p_type == PT_GNU_EH_FRAME) {
            eh = (void *)(info->dlpi_addr + ph->p_vaddr);
        }
    }
    if (!hit) return 0;
    memset(f->out, 0, sizeof *f->out);
    f->out->dlfo_map_start = (void *)lo;
    f->out->dlfo_map_end = (void *)hi;
    f->out->dlfo_eh_frame = eh;
    f->found = 1;
    return 1;
}

int __wrap__dl_find_object(void *pc, struct dl_find_object *out) {
    struct starling_find f = { (uintptr_t)pc, out, 0 };
    dl_iterate_phdr(starling_find_object, &f);
    return f.found ? 0 : -1;
}
