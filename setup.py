"""Build script: compiles the per-request modules with mypyc when a C toolchain is present.

The data path's hot modules are plain, fully typed Python (mypy --strict). Compiled with mypyc they
run the same code about 1.6x faster (docs/benchmarks.md); everything else stays interpreted. Set
PULSEGATE_PURE_PYTHON=1, or lack a C compiler or Python.h, to install pure Python instead.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

# Modules on the per-request path. Others (config, CLI, demo, origin) gain nothing from compiling.
HOT_MODULES = [
    "src/pulsegate/http/head.py",
    "src/pulsegate/http/request.py",
    "src/pulsegate/http/response.py",
    "src/pulsegate/http/writer.py",
    "src/pulsegate/proxy/exchange.py",
    "src/pulsegate/proxy/outbox.py",
    "src/pulsegate/proxy/pool.py",
    "src/pulsegate/proxy/client.py",
    "src/pulsegate/proxy/relay.py",
    "src/pulsegate/proxy/dispatch.py",
    "src/pulsegate/proxy/ending.py",
    "src/pulsegate/proxy/recovery.py",
    "src/pulsegate/proxy/tunnel.py",
    "src/pulsegate/proxy/upstream.py",
    "src/pulsegate/proxy/runtime.py",
    "src/pulsegate/proxy/server.py",
    "src/pulsegate/health/budget.py",
    "src/pulsegate/balancing/target.py",
    "src/pulsegate/balancing/round_robin.py",
    "src/pulsegate/metrics/histogram.py",
    "src/pulsegate/metrics/stats.py",
    "src/pulsegate/accesslog.py",
]


def _can_compile() -> bool:
    if os.environ.get("PULSEGATE_PURE_PYTHON"):
        return False
    has_cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    has_headers = (Path(sysconfig.get_paths()["include"]) / "Python.h").exists()
    if not (has_cc and has_headers):
        print("pulsegate: no C compiler or Python.h: installing pure Python (slower hot path)")
        return False
    return True


ext_modules = []
if _can_compile():
    from mypyc.build import mypycify

    ext_modules = mypycify(HOT_MODULES, opt_level="3")
    # Hand-written C for the one job mypyc cannot make cheap: scanning a response head byte by
    # byte (src/pulsegate/http/_wire.c; without it llhttp parses every response).
    ext_modules.append(
        Extension("pulsegate.http._wire", ["src/pulsegate/http/_wire.c"], extra_compile_args=["-O2", "-Wall", "-Wextra"])
    )

setup(ext_modules=ext_modules)
