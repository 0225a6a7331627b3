"""``make smoke``: what a newcomer does with a fresh clone, end to end, on free ports.

1. Copy the working tree (tracked and new files, nothing git ignores) into a temporary folder: a fresh clone.
2. Create its ``.venv`` with a plain ``pip install .`` (no test extras).
3. Start the server as ``make run`` does (``.venv/bin/fhir-server serve`` with a mongod of its own, its data,
   the clients file and dev-admin's key in the clone's ``.data/``), on free ports.
4. Run every command of the README's quick-start block (the code block after the ``<!-- quick-start`` marker)
   with the port substituted, in the clone's folder, as one shell session would (a variable a command sets,
   ``TOKEN=$(...)``, is there for the next ones), and open every server link its comments show. A command
   passes when it exits 0 (``curl`` fails on an HTTP error status) and prints what its ``# prints:`` line says;
   ``# exits N and prints:`` expects exit status N instead.
5. Stop the server with Ctrl-C (SIGINT) and check that it and its mongod stopped cleanly.

Standard library only (it runs before any virtualenv exists): ``python3 scripts/smoke.py [--keep]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- quick-start"
README_ADDRESS = "127.0.0.1:8080"  # where the README's commands expect `make run`'s server
EXPECTATION = re.compile(r"#\s*(?:exits (\d+) and )?prints: (.+)")
LINK = re.compile(r"http://127\.0\.0\.1:8080/\S*[\w/]")
# Every curl of the block fails on an HTTP error status (with the body shown) and reports the status it got.
CURL = "curl() { command curl --fail-with-body --show-error --write-out '%{stderr}HTTP %{http_code}\\n' \"$@\"; }"


@dataclass
class Step:
    command: str
    expected_output: str | None = None
    expected_status: int = 0


def quick_start_block(readme: str) -> list[str]:
    """The lines of the fenced code block that follows the quick-start marker."""
    after = readme[readme.index(MARKER):]
    fence = re.search(r"```[a-z]*\n(.*?)\n```", after, re.DOTALL)
    if fence is None:
        raise ValueError("no code block after the quick-start marker")
    return fence.group(1).splitlines()


def steps(block: list[str]) -> list[Step]:
    """The block's commands (continuation lines joined) with the expectations written under them."""
    out: list[Step] = []
    pending = ""
    for line in block:
        expectation = EXPECTATION.fullmatch(line.strip())
        if expectation and out and not pending:
            out[-1].expected_output = expectation.group(2)
            out[-1].expected_status = int(expectation.group(1) or 0)
        elif line.strip() and not line.lstrip().startswith("#"):
            if line.rstrip().endswith("\\"):
                pending += line.strip()[:-1].rstrip() + " "
                continue
            out.append(Step(pending + line.strip()))
            pending = ""
    return out


def links(block: list[str]) -> list[str]:
    """Server links the block's comments show (pages a newcomer opens in a browser)."""
    return [url for line in block if line.lstrip().startswith("#") for url in LINK.findall(line)]


def localised(text: str, port: int) -> str:
    return text.replace(README_ADDRESS, f"127.0.0.1:{port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_clone(into: Path) -> Path:
    """The working tree as a clone of it would be (uncommitted changes included, nothing ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode()
    clone = into / "ifp-fhir"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    return clone


def plain_install(clone: Path) -> None:
    """``python3 -m venv .venv && .venv/bin/pip install .``; pip's output is shown only when it fails."""
    print("$ python3 -m venv .venv && .venv/bin/pip install .", flush=True)
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=clone, check=True)
    done = subprocess.run([".venv/bin/pip", "install", "--disable-pip-version-check", "."], cwd=clone,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install . failed:\n{done.stdout}{done.stderr}")


def clean_environment() -> dict[str, str]:
    """The environment without a developer's FHIR_ settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}


@contextmanager
def served(clone: Path, data_dir: Path) -> Iterator[int]:
    """``fhir-server serve`` as ``make run`` starts it; yields its port; stops it with Ctrl-C and checks it and
    its mongod stopped cleanly."""
    port = free_port()
    env = clean_environment()
    env.update(FHIR_PORT=str(port), FHIR_MONGOD_PORT=str(free_port()), FHIR_DATA_DIR=str(data_dir))
    log_path = data_dir.parent / "server.log"
    print(f"$ .venv/bin/fhir-server serve   (port {port}, FHIR_DATA_DIR={data_dir}, log {log_path})", flush=True)
    with log_path.open("wb") as log:
        server = subprocess.Popen([".venv/bin/fhir-server", "serve"], cwd=clone, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(port, server, log_path)
        yield port
    finally:
        problem = stop(server, data_dir)
        print(problem or "server and mongod stopped cleanly", flush=True)
    if problem:
        raise SystemExit(f"{problem}\n{log_path.read_text()}")


def wait_until_serving(port: int, server: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer within {timeout} s:\n{log_path.read_text()}")


def stop(server: subprocess.Popen[bytes], data_dir: Path) -> str | None:
    """Ctrl-C; the server must exit 0 having stopped its mongod (which then leaves an empty mongod.lock).
    What went wrong, if anything."""
    server.send_signal(signal.SIGINT)
    try:
        status = server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        status = server.wait()
    lock = data_dir / "db" / "mongod.lock"
    mongod_pid = lock.read_text().strip() if lock.exists() else ""
    if mongod_pid:  # still running (or killed uncleanly): stop the mongod this server started
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(mongod_pid), signal.SIGTERM)
    if status != 0 or mongod_pid or not lock.exists():
        return f"unclean stop: server exit status {status}, mongod.lock {mongod_pid or 'missing or empty'}"
    return None


def run(step: Step, clone: Path, port: int, env: dict[str, str]) -> bool:
    """Run ``step`` in ``env``, which then holds what the step set (``set -a``: every variable assigned is
    exported, and the environment is saved after the command)."""
    command = localised(step.command, port)
    print(f"\n$ {command}", flush=True)
    saved = clone.parent / "smoke-env"
    script = f"{CURL}\nset -a\n{command}\nstatus=$?\nenv -0 > {saved}\nexit $status"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=300)
    if saved.exists():
        env.clear()
        env.update({key: value for key, sep, value in (item.partition("=") for item in saved.read_text().split("\0"))
                    if sep})
    for text in (done.stdout.rstrip(), done.stderr.rstrip()):  # curl's status is on stderr: shown after any body
        if text:
            print(text if len(text) < 1500 else text[:1500] + " ...", flush=True)
    ok = done.returncode == step.expected_status and (step.expected_output or "") in done.stdout + done.stderr
    print(f"-> exit status {done.returncode}: {'ok' if ok else 'FAILED'}"
          f"{'' if ok else f' (expected {step.expected_status}, printing {step.expected_output!r})'}", flush=True)
    return ok


def opens(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = response.status
    except OSError as exc:
        status = getattr(exc, "code", None) or str(exc)
    print(f"\n$ open {url}\n-> {status}: {'ok' if status == 200 else 'FAILED'}", flush=True)
    return status == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (it is kept on failure)")
    args = parser.parse_args()
    block = quick_start_block((ROOT / "README.md").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="ifp-smoke-"))
    ok = False
    try:
        clone = fresh_clone(tmp)
        plain_install(clone)
        with served(clone, clone / ".data") as port:
            env = clean_environment()
            results = [run(step, clone, port, env) for step in steps(block)]
            results += [opens(localised(url, port)) for url in links(block)]
        ok = all(results)
        print(f"\nsmoke: {sum(results)} of {len(results)} quick-start steps passed", flush=True)
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
