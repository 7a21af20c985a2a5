/* bcryptprimitives.dll for wine 8 (Debian 12), which lacks it: Rust's
 * standard library imports ProcessPrng from it, and every Rust program then
 * fails to start under wine (status c0000135). Test harness only: Windows 10
 * and later have the real DLL. Built by .ci/wine/setup, never committed. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    return BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, (ULONG)len,
                                          BCRYPT_USE_SYSTEM_PREFERRED_RNG));
}
