"""Build hooks that pyproject.toml cannot express: the C extension of the EXI codec."""

from setuptools import setup

try:  # the codec ships its own description of its extension module
    import importlib.util
    import pathlib

    _spec = importlib.util.spec_from_file_location(
        "exi_build", pathlib.Path(__file__).parent / "services/exi-codec/build_ext.py"
    )
    assert _spec and _spec.loader
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    ext_modules = _mod.extensions()
except FileNotFoundError:
    ext_modules = []

setup(ext_modules=ext_modules)
