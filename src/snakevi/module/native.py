"""Native kernels: small C files of ``_native/``, compiled on first use and loaded with ctypes.

A kernel is plain C with no torch or Python headers, so the machine's C compiler builds it in
well under a second; the library is kept in a cache folder and reused by every later process
(Snakemake's train jobs, DDP ranks). Its name carries a hash of the source, the compiler, its
flags and the CPU, so a changed file, compiler or machine (a cluster node of another CPU under
a shared home folder) gets a library of its own, and a library built with ``-march=native``
never runs on a CPU that lacks its instructions.

Everything here is optional: without a compiler, with a failed build or ``SNAKEVI_NATIVE=0``,
:func:`load` returns ``None`` and the callers keep their torch code. ``SNAKEVI_NATIVE_CACHE``
names the cache folder (default ``$XDG_CACHE_HOME/snakevi/native``, else
``~/.cache/snakevi/native``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sysconfig
from pathlib import Path

from snakevi._atomic import atomic_path

log = logging.getLogger(__name__)

#: Environment variable that turns the native kernels off when "0".
ENV_SWITCH = "SNAKEVI_NATIVE"
#: Environment variable naming the folder of compiled libraries.
ENV_CACHE = "SNAKEVI_NATIVE_CACHE"
#: Seconds a compile may take before it counts as failed.
COMPILE_TIMEOUT_S = 120
#: The kernels are used while torch runs at most this many intra-op threads. Each runs in one
#: thread; torch's own kernels share their work out among all of torch's threads, so with more
#: of them they catch up (the ZINB zero case: at about 4, by a 2-thread measurement, 2026-12-07).
#: Sharing a kernel's rows out among threads of our own did not pay: torch's OpenMP threads
#: spin-wait on the same cores after each of its operations (0.83 against 0.78 ms with 2
#: threads; 0.56-0.62 only with OMP_WAIT_POLICY=passive, which slows torch's kernels twofold).
MAX_TORCH_THREADS = 2

_SOURCES = Path(__file__).with_name("_native")
_loaded: dict[str, ctypes.CDLL | None] = {}
_checked: dict[str, bool] = {}


def enabled() -> bool:
    """Whether native kernels may be used (``SNAKEVI_NATIVE`` is not "0")."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def cache_dir() -> Path:
    """The folder of compiled libraries."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "snakevi" / "native"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _vector_math() -> bool:
    """x86-64 Linux with glibc: ``libmvec`` has SIMD ``expf``/``logf`` and ``-march=native`` is safe
    to key by the CPU's flags."""
    return (platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")
            and platform.libc_ver()[0] == "glibc")


def _flags() -> tuple[list[str], list[str]]:
    """Compile flags and libraries. No ``-ffast-math``: NaN and infinity keep their IEEE meaning
    (a diverging run must still show a NaN loss); ``-fopenmp-simd`` only honours the kernels'
    ``omp simd`` loops and starts no threads."""
    flags = ["-O3", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
    if _vector_math():
        return [*flags, "-march=native", "-DSNAKEVI_LIBMVEC"], ["-lmvec", "-lm"]
    return flags, ["-lm"]


def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags, as far as the system tells them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(wanted))  # the first core's lines (all cores' are the same)


def _compiler_version(cc: list[str]) -> str:
    try:
        done = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def library_path(name: str) -> Path | None:
    """Where the library of ``_native/<name>.c`` is (or would be) kept; ``None`` without a compiler."""
    cc = _compiler()
    version = _compiler_version(cc)
    if not version:
        return None
    flags, libs = _flags()
    key = hashlib.sha256()
    for part in ((_SOURCES / f"{name}.c").read_bytes(), " ".join([*cc, *flags, *libs]).encode(),
                 version.encode(), _cpu_identity().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"{name}-{key.hexdigest()[:20]}.so"


class _BuildFailed(Exception):
    pass


def _build(name: str, target: Path) -> bool:
    """Compile ``_native/<name>.c`` to ``target``, through a temporary file renamed onto it."""
    flags, libs = _flags()
    try:
        with atomic_path(target) as tmp:
            command = [*_compiler(), *flags, str(_SOURCES / f"{name}.c"), "-o", str(tmp), *libs]
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if done.returncode != 0:
                raise _BuildFailed(f"{shlex.join(command)}: {done.stderr.strip()[-2000:]}")
        return True  # a concurrent build of the same key renames the same bytes onto it
    except (_BuildFailed, OSError, subprocess.SubprocessError) as err:
        log.info("Native kernel %s not built: %s", name, err)
        return False


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library of ``_native/<name>.c``, built first if needed; ``None`` where it
    cannot be had (see the module's docstring). Tried once per process and name."""
    if not enabled():
        return None
    if name in _loaded:
        return _loaded[name]
    library = None
    try:
        path = library_path(name)
        if path is None:
            log.info("Native kernel %s not built: no C compiler (%s) answers --version.", name, shlex.join(_compiler()))
        elif path.exists() or _build(name, path):
            library = ctypes.CDLL(str(path))
    except OSError as err:  # an unwritable cache folder, a library the loader refuses
        log.info("Native kernel %s not loaded: %s", name, err)
        library = None
    _loaded[name] = library
    return library


def available(name: str, agrees) -> bool:
    """Whether the library of ``_native/<name>.c`` may be used: enabled, built, loaded, and
    ``agrees()`` (its caller's comparison with the torch code) was true. The comparison runs once
    per process and name, a disagreement is logged as a warning."""
    if not enabled():
        return False
    if name not in _checked:
        loaded = load(name) is not None
        _checked[name] = loaded and bool(agrees())
        if loaded and not _checked[name]:
            log.warning("The native kernel %s disagrees with the torch code on this machine; the torch code is "
                        "used (set %s=0 to skip the native kernels).", name, ENV_SWITCH)
    return _checked[name]


def fits(*tensors) -> bool:
    """Whether the kernels apply to ``tensors``: float32 on the CPU, torch at most
    :data:`MAX_TORCH_THREADS` threads."""
    import torch  # here: the rest of this module needs no torch

    return torch.get_num_threads() <= MAX_TORCH_THREADS and all(
        t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
