"""The C extension of the EXI codec, for the top-level setup.py (paths relative to the repo)."""

from __future__ import annotations

from setuptools import Extension

BASE = "services/exi-codec"
SOURCES = [
    "src/exi_decode.c",
    "src/exi_encode.c",
    "src/exi_json.c",
    "generated/exi_tab_apphand.c",
    "generated/exi_tab_din.c",
    "generated/exi_tab_iso2.c",
]


def extensions() -> list[Extension]:
    return [
        Extension(
            "ccsbus_exi._exi",
            sources=[f"{BASE}/{s}" for s in [*SOURCES, "src/exi_python.c"]],
            include_dirs=[f"{BASE}/include", f"{BASE}/generated", f"{BASE}/src"],
            extra_compile_args=["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
                                "-Wno-missing-field-initializers"],
        )
    ]
