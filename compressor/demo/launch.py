"""Start the Streamlit server on app.py: the folders go to the script in $COMPRESSOR_DEMO_FOLDERS."""

import errno
import importlib.util
import os
import socket
import sys
from pathlib import Path

from compressor.core.errors import UserError
from compressor.demo.folders import FOLDERS_ENV

APP = Path(__file__).with_name("app.py")


def check_folders(folders) -> list[Path]:
    """The folders as given; one that does not exist stops the start (one that is not an output shows in the
    page)."""
    folders = [Path(f) for f in folders]
    for folder in folders:
        if not folder.exists():
            raise UserError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder (expected an output of `compressor apply` or a sweep)")
        if os.pathsep in str(folder):
            raise UserError(f"{folder}: a folder name with {os.pathsep!r} cannot be passed to the app")
    return folders


def free_port(host: str, port: int) -> int:
    """PORT when nothing listens there (any free port for 0); a one-line error when it is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host}; pass another (or 0 for any free one)") from None
            raise UserError(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None
        return probe.getsockname()[1]


def streamlit_command(host: str, port: int) -> list[str]:
    """`python -m streamlit run app.py` for a local tool: no browser opened, no usage statistics, no file
    watcher, and errors in the page without tracebacks."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("`compressor demo` needs streamlit: pip install -e '.[demo]' (or make install)")
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal"]


def demo_environment(folders: list[Path]) -> dict:
    env = dict(os.environ)
    if folders:
        env[FOLDERS_ENV] = os.pathsep.join(str(f.resolve()) for f in folders)
    else:
        env.pop(FOLDERS_ENV, None)
    return env


def run(folders, host: str, port: int) -> None:
    """Replace this process by the Streamlit server (Ctrl-C and signals reach it directly)."""
    folders = check_folders(folders)
    command = streamlit_command(host, free_port(host, port))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, demo_environment(folders))
