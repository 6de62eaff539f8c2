"""PyInstaller runtime hook: the Python process dies with the one-file bootloader that started it.

A one-file binary runs as two processes: the bootloader (the pid users and supervisors see), which
unpacks the bundle, forwards signals and removes the unpacked folder at exit, and its child, the
Python program. SIGKILL to the bootloader cannot be forwarded, so without this the program would
keep running as an orphan, still holding the port, the control socket and its children. Ask the
kernel to SIGKILL it when its parent dies, which is what `kill -9 slum` means without the bootloader
(slum's own children die with it, and the next start reaps what is left). Linux only.
"""


def _die_with_parent() -> None:
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    # If the bootloader died before prctl, we were already re-parented (to init or a subreaper),
    # and the kernel will not signal us: the parent must still run the same executable as we do.
    try:
        same = os.readlink(f"/proc/{parent}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return
    if not same or os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


_die_with_parent()
del _die_with_parent
