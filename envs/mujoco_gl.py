"""Choose a headless OpenGL backend for MuJoCo rendering before dm_control fixes its choice."""

from __future__ import annotations

import ctypes.util
import os
import sys

from mbrl_sam.errors import ConfigError

# dm_control's own spelling of "no renderer" (dm_control/_render/constants.py).
DISABLED = ("off", "disable", "disabled", "false", "0")
# Headless backends in order of preference, with the shared library each one loads.
HEADLESS = (("egl", "EGL"), ("osmesa", "OSMesa"))
INSTALL_HINT = (
    "install EGL (apt-get install -y libegl1, software Mesa is enough) or OSMesa "
    "(apt-get install -y libosmesa6), or set MUJOCO_GL to a backend that works here"
)


def select_gl_backend() -> str | None:
    """Set MUJOCO_GL to a headless backend found here unless the user set it; return the choice."""
    if "dm_control._render" in sys.modules:
        # dm_control read MUJOCO_GL at import; changing it now would only mislead.
        return sys.modules["dm_control._render"].BACKEND
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    # A user's PYOPENGL_PLATFORM makes dm_control refuse any other backend, so honour it.
    platform = os.environ.get("PYOPENGL_PLATFORM", "")
    candidates = [c for c in HEADLESS if c[0] == platform] or list(HEADLESS)
    for backend, library in candidates:
        if ctypes.util.find_library(library):
            return os.environ.setdefault("MUJOCO_GL", backend)
    return None


def require_renderer(task: str, purpose: str = "obs='pixels'") -> None:
    """Raise ConfigError if `task` cannot be rendered on this machine (for `purpose`)."""
    backend = select_gl_backend()
    fallback = ", or use obs='state'" if purpose == "obs='pixels'" else ""
    if backend is None:
        raise ConfigError(
            f"{purpose} for task={task!r} needs an OpenGL backend for MuJoCo, but neither "
            f"EGL nor OSMesa was found; {INSTALL_HINT}{fallback}"
        )
    if backend.lower() in DISABLED:
        raise ConfigError(
            f"{purpose} for task={task!r} needs rendering, but MUJOCO_GL={backend!r} "
            f"turns it off; set MUJOCO_GL to 'egl' or 'osmesa'{fallback}"
        )
