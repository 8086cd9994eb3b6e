"""Sphinx configuration: ``nox -s docs`` builds the site with warnings as errors."""

from __future__ import annotations

import importlib
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

import trio_sio

project = "trio_sio"
author = "trio_sio developers"
copyright = "trio_sio developers"
release = trio_sio.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "_static"]
default_role = "py:obj"  # `Server` links to the API reference
nitpicky = False  # trio and hypercorn have no inventory here (the build runs offline)

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True}
autodoc_mock_imports = ["anyio", "coredis", "msgpack"]  # the redis extra is not needed to build
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" sections as fields, not duplicate attribute entries

html_theme = "furo"
html_title = f"trio_sio {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
pygments_style = "friendly"
pygments_dark_style = "monokai"

#: Every public name of these modules must appear in the API reference (api.rst).
PUBLIC_MODULES = [
    "trio_sio",
    "trio_sio.testing",
    "trio_sio.engineio",
    "trio_sio.parsers",
    "trio_sio.adapters",
    "trio_sio.adapters.redis",
    "trio_sio.admin",
]

logger = logging.getLogger(__name__)


def check_api_reference(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under -W) about public names the API reference does not document."""
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if f"{module_name}.{name}" not in documented:
                logger.warning("%s.%s is public but not in api.rst", module_name, name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-check-consistency", check_api_reference)
    return {"parallel_read_safe": True}
