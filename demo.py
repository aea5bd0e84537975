#!/usr/bin/env python3
"""The demo in one command: set up .venv, install the project, walk ~15 simulated sessions through the
real tick pipeline against the built-in simulated market, then serve the dashboard on 127.0.0.1:5000.

    python3 demo.py            (add --no-serve to stop after the simulation; --port N to change the port)

No API key and no network beyond the package index are needed; the demo uses its own database
(demo/spx-demo.db), never yours.
"""
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin")
PYTHON = os.path.join(BIN, "python.exe" if os.name == "nt" else "python")


def main() -> int:
    if not os.path.exists(PYTHON):
        print("Creating the virtualenv in .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing spx-put-watch into .venv ...", flush=True)
    subprocess.check_call([PYTHON, "-m", "pip", "install", "-q", "-e", ROOT])
    command = [PYTHON, "-m", "spxcli.demo_main"] + sys.argv[1:]
    try:
        return subprocess.call(command, cwd=ROOT)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
