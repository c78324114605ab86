"""Starting ParaView's programs (pvpython, pvbatch, paraview) for Globscope, from the core.

This module never imports ``paraview`` or ``vtkmodules`` (the core must not): it finds the
executables, builds their environment — ``PYTHONPATH`` with the ParaView 5.11 compatibility hook
(``plugin/compat/usercustomize.py``), the ``python_filters`` package, the core and this
interpreter's site-packages (PyTorch and friends), and ``PV_PLUGIN_PATH`` with the plugin — and
runs them, under ``xvfb-run`` when there is no display (Debian's ParaView renders only through X).

Public functions: :func:`render` (``globscope render``), :func:`open_gui` (``globscope paraview``),
:func:`doctor` (``globscope doctor``); building blocks :func:`environment`, :func:`command`,
:func:`run_script`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from globscope.environment import get as env_get
from globscope.environment import paraview_settings_dir, paraview_side
from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path

log = logging.getLogger(__name__)

XVFB_SERVER_ARGS = "-screen 0 1920x1080x24"
DOCTOR_MARK = "GLOBSCOPE-DOCTOR "


def state_script(name: str = "globscope_state.py") -> Path:
    """A script of Globscope's ParaView side (:func:`globscope.environment.paraview_side`)."""
    return paraview_side().states / name


def find_executable(name: str) -> str:
    """``pvpython``, ``pvbatch`` or ``paraview``: from ``$PARAVIEW_BIN`` (a folder) or PATH."""
    folder = env_get("PARAVIEW_BIN")
    if folder and (Path(folder) / name).is_file():
        return str(Path(folder) / name)
    exe = shutil.which(name)
    if exe is None:
        raise GlobscopeError(f"{name} not found: install ParaView (apt-get install paraview python3-paraview) "
                             "or set PARAVIEW_BIN to the folder holding it")
    return exe


def _python_path() -> list[str]:
    side = paraview_side()
    # the 5.11 hook first (its usercustomize runs at start-up), then python_filters and the core
    paths = [str(side.compat), str(side.filters_root)]
    if side.core_root is not None:
        paths.append(str(side.core_root))
    if sys.prefix != sys.base_prefix:  # a virtual environment: its packages (torch, numba, …)
        paths.append(sysconfig.get_paths()["purelib"])
    return list(dict.fromkeys(paths))


def environment(extra: dict | None = None) -> dict:
    """The environment for a ParaView program that loads Globscope's plugin.

    ``PYTHONPATH`` puts the compatibility hook first; ``PV_PLUGIN_PATH`` makes ParaView load
    the plugin at start-up. ``extra`` entries are added last.
    """
    env = dict(os.environ)
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(_python_path() + old))
    pv = [p for p in env.get("PV_PLUGIN_PATH", "").split(os.pathsep) if p]
    env["PV_PLUGIN_PATH"] = os.pathsep.join(dict.fromkeys([str(paraview_side().plugin)] + pv))
    env.setdefault("OMP_NUM_THREADS", "1" if (os.cpu_count() or 1) <= 2 else env.get("OMP_NUM_THREADS", ""))
    if not env["OMP_NUM_THREADS"]:
        env.pop("OMP_NUM_THREADS")
    # ParaView's OpenMP and PyTorch's own share the process: threads that spin while waiting
    # slowed the Manifold filter's fit 2x in pvpython on 2 cores (67 s against 34 s); passive
    # waiting removes that
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # the Manifold filter fits in a process of its own with this interpreter (globscope.fit_process)
    env.setdefault("GLOBSCOPE_PYTHON", sys.executable)
    env.update(extra or {})
    return env


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def command(program: str, args=(), display: bool | None = None) -> list[str]:
    """``[xvfb-run -a -s …] program args``; ``display``: whether rendering is needed (None: when
    no display is present, wrap in ``xvfb-run``)."""
    cmd = [find_executable(program), *map(str, args)]
    if display is False or has_display():
        return cmd
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        raise GlobscopeError("no display and no xvfb-run: install xvfb (apt-get install xvfb) or set DISPLAY")
    return [xvfb, "-a", "-s", XVFB_SERVER_ARGS, *cmd]


def run_script(program: str, script, args=(), *, display: bool | None = None, timeout: float | None = None,
               env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a Python script with pvpython or pvbatch in :func:`environment`."""
    cmd = command(program, [str(script), *args], display=display)
    log.info("running %s", " ".join(cmd))
    for attempt in (1, 2):
        try:
            r = subprocess.run(cmd, env=environment(env), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GlobscopeError(f"{program} {Path(script).name} did not finish within {timeout:.0f} s") from None
        # Seen here when several `xvfb-run -a` started at once: the program aborts (SIGABRT) while
        # opening its window, and a second start works. xvfb-run then exits 134, or 5 when its own
        # cleanup fails too; the abort's backtrace names the window's creation. A real fault fails twice.
        aborted = r.returncode in (134, -6) or (r.returncode != 0 and "CreateAWindow" in r.stdout + r.stderr)
        if not (aborted and cmd[0].endswith("xvfb-run") and attempt == 1):
            break
        log.warning("%s aborted while opening its X display; retrying once", program)
    if check and r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise GlobscopeError(f"{program} {Path(script).name} failed (exit {r.returncode}):\n{tail}")
    return r


def render(bundle, out_png, size, state=None, timeout: float | None = 900) -> Path:
    """Render a bundle's landscape to a PNG with pvbatch (under ``xvfb-run`` without a display).

    Parameters
    ----------
    bundle : path
        A bundle folder with ``landscape.vti`` (and ``models.vtp``).
    out_png : path
    state : path, optional
        A ``.pvsm`` or Python state (``.py``); default: Globscope's landscape state, built for the
        bundle. A ``.pvsm`` is loaded with its data files remapped into ``bundle``.
    size : (width, height)
        Pixels (the render stage passes ``RenderSettings.size``).
    """
    bundle = Path(bundle).resolve()
    out = Path(out_png).resolve()
    with atomic_path(out) as tmp:  # a failed or killed render leaves no half-written PNG
        args = ["render", "--bundle", bundle, "--out", tmp, "--size", int(size[0]), int(size[1])]
        if state:
            args += ["--state", Path(state).resolve()]
        run_script("pvbatch", state_script(), args, timeout=timeout)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise GlobscopeError(f"pvbatch finished without writing {out}")
    return out


def save_state(bundle, out_pvsm=None, timeout: float | None = 900) -> Path:
    """Write ``globscope.pvsm`` (the landscape state built for ``bundle``) into the bundle."""
    bundle = Path(bundle).resolve()
    out = Path(out_pvsm or bundle / "globscope.pvsm").resolve()
    with atomic_path(out) as tmp:
        run_script("pvbatch", state_script(), ["save", "--bundle", bundle, "--out", tmp], timeout=timeout)
    return out


GUI_READY_MARK = "GLOBSCOPE-GUI-READY"  # gui_start.py prints it once the state is applied


def welcome_dialog_off() -> bool:
    """Whether the user's own ParaView settings switch the modal welcome dialog off (read, never
    written: ``ParaView<version>.ini`` in :func:`globscope.environment.paraview_settings_dir`)."""
    inis = [p for p in paraview_settings_dir().glob("ParaView*.ini") if not p.stem.endswith("-dr")]
    return bool(inis) and all("GeneralSettings.ShowWelcomeDialog=false" in p.read_text(errors="replace")
                              for p in inis)


def gui_command(bundle, state=None, fresh_profile: bool | None = None) -> tuple[list[str], dict]:
    """The command line and environment :func:`open_gui` uses (printed by the demo).

    ``fresh_profile``: start ParaView with default settings (``--dr``: the user's settings are
    neither read nor written). None: only when the user's settings would open the modal welcome
    dialog, behind which the state would wait (a fresh profile, or one that never switched it off).
    """
    bundle = Path(bundle).resolve()
    extra = {"GLOBSCOPE_BUNDLE": str(bundle), "GLOBSCOPE_STATE_DIR": str(paraview_side().states)}
    if state:
        extra["GLOBSCOPE_STATE"] = str(Path(state).resolve())
    if fresh_profile is None:
        fresh_profile = not welcome_dialog_off()
    script = state_script("gui_start.py")
    return command("paraview", [*(["--dr"] if fresh_profile else []), f"--script={script}"]), extra


def open_gui(bundle, state=None, wait: bool = True, env: dict | None = None):
    """Open the ParaView GUI with the plugin loaded and the landscape state applied to ``bundle``.

    Returns the exit code (``wait``) or the ``Popen``.
    """
    cmd, extra = gui_command(bundle, state)
    p = subprocess.Popen(cmd, env=environment({**extra, **(env or {})}))
    return p.wait() if wait else p


def gui_screenshot(bundle, out_png, state=None, size=(1600, 1000), timeout: float = 300, settle: float = 3.0,
                   env: dict | None = None) -> Path:
    """Open the GUI on a private X display with a fresh profile, apply the state, save a picture
    of the whole window once it is ready, and close it (``globscope paraview --screenshot``).

    Parameters
    ----------
    size : (width, height)
        The window's size in pixels (the picture's).
    settle : float
        Seconds between the state's "ready" and the picture, for Qt to paint the panels.

    Returns
    -------
    Path
        ``out_png``, written atomically (nothing when the GUI failed; the error says why).
    """
    import threading
    import time

    from globscope import xscreen

    cmd, extra = gui_command(bundle, state, fresh_profile=True)
    cmd = cmd[cmd.index(find_executable("paraview")):]  # our own display, not xvfb-run's
    cmd[1:1] = ["-geometry", f"{int(size[0])}x{int(size[1])}+0+0"]  # Qt's option: no window manager to size it
    lines: list[str] = []
    ready = threading.Event()
    with xscreen.PrivateDisplay((max(int(size[0]), 640), max(int(size[1]), 480))) as display:
        p = subprocess.Popen(cmd, env=environment({**extra, **(env or {}), "DISPLAY": display}),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def read():  # ParaView's output, watched for the state's "ready"
            for line in p.stdout:
                lines.append(line)
                if line.startswith(GUI_READY_MARK):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            t0 = time.monotonic()
            while not ready.wait(0.5):
                if p.poll() is not None or time.monotonic() - t0 > timeout:
                    why = "exited" if p.poll() is not None else f"was not ready within {timeout:.0f} s"
                    tail = "".join(lines[-25:]).strip()
                    raise GlobscopeError(f"the ParaView GUI {why} before its state was applied:\n{tail}")
            time.sleep(settle)
            return xscreen.write_png(out_png, xscreen.crop_to_content(xscreen.grab(display)))
        finally:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def doctor(timeout: float | None = 300) -> dict:
    """What the ParaView side looks like: versions, plugin, TTK, CUDA, the engine used.

    Returns
    -------
    dict
        ``paraview`` (version or None), ``executables``, ``display`` / ``xvfb``, ``plugin_loads``,
        ``ttk`` (present, version, merge-tree proxy), ``engine`` ("ttk" or "globscope"),
        ``cuda`` (available, device), ``problems`` (list of str).
    """
    report: dict = {"executables": {}, "problems": []}
    for name in ("pvpython", "pvbatch", "paraview"):
        try:
            report["executables"][name] = find_executable(name)
        except GlobscopeError:
            report["executables"][name] = None
            report["problems"].append(f"{name} not found")
    report["display"] = has_display()
    report["xvfb"] = shutil.which("xvfb-run")
    if not report["display"] and not report["xvfb"]:
        report["problems"].append("no display and no xvfb-run: renders will fail")
    try:
        import torch

        report["cuda"] = {"available": bool(torch.cuda.is_available()),
                          "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                          "torch": torch.__version__}
    except Exception as e:  # noqa: BLE001
        report["cuda"] = {"available": False, "error": str(e)}
    report.update({"paraview": None, "plugin_loads": False, "ttk": {"present": False}, "engine": "globscope"})
    if report["executables"].get("pvpython"):
        try:
            r = run_script("pvpython", state_script(), ["doctor"], display=False,
                           timeout=timeout, check=False)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith(DOCTOR_MARK)]
            if lines:
                report.update(json.loads(lines[-1][len(DOCTOR_MARK):]))
            else:
                report["problems"].append("pvpython could not report: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        except (GlobscopeError, subprocess.TimeoutExpired) as e:
            report["problems"].append(str(e))
    if not report["plugin_loads"]:
        report["problems"].append("the Globscope plugin did not load in pvpython")
    return report


__all__ = ["environment", "command", "run_script", "render", "save_state", "open_gui", "gui_command",
           "gui_screenshot", "welcome_dialog_off", "doctor",
           "find_executable", "state_script", "has_display"]
