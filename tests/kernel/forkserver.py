"""Start ipykernels fast: fork them from a process that has already imported torch and ipykernel.

Every test kernel is still a fresh process with a fresh IPython shell, history and namespace,
talking to nbclient over ZMQ like any kernel; it only skips the ~2 s of imports that dominate
the corpus run on a small machine. ``GRADWATCH_TEST_FORKSERVER=0`` turns this off (plain
``python -m ipykernel_launcher``). gradwatch itself is *not* preloaded, so each kernel imports
the current source.

    python forkserver.py serve SOCKET            # the server: imports, then forks on request
    python forkserver.py connect SOCKET -f CONN  # the kernelspec's argv: a tiny proxy process

The proxy is what jupyter_client starts and watches: it asks the server for a kernel, forwards
signals (interrupts) to it, and exits with the kernel's exit status. When the proxy dies (e.g.
killed on shutdown) the server kills its kernel.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys


def _serve(path: str) -> None:
    import IPython  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import torch  # noqa: F401
    import torch.nn  # noqa: F401
    import torch.optim  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    print("ready", flush=True)
    # Nobody reads our stdout after "ready": kernels must not fill that pipe and block.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    clients: dict[socket.socket, dict] = {}  # connection -> {"buf": bytes, "pid": int | None}
    stdin = sys.stdin.fileno()  # the harness holds the other end: EOF means it is gone
    while True:
        readable, _, _ = select.select([server, stdin, *clients], [], [], 0.05)
        for sock in readable:
            if sock == stdin:
                if not os.read(stdin, 1024):
                    for state in clients.values():
                        if state["pid"] is not None:
                            _kill(state["pid"])
                    return
                continue
            if sock is server:
                conn, _ = server.accept()
                clients[conn] = {"buf": b"", "pid": None}
                continue
            state = clients[sock]
            data = sock.recv(65536)
            if not data:  # the proxy is gone: its kernel goes too
                if state["pid"] is not None:
                    _kill(state["pid"])
                del clients[sock]
                sock.close()
                continue
            state["buf"] += data
            if state["pid"] is None and b"\n" in state["buf"]:
                request = json.loads(state["buf"].split(b"\n", 1)[0])
                pid = os.fork()
                if pid == 0:
                    server.close()
                    for other in clients:
                        other.close()
                    _child(request)  # never returns
                state["pid"] = pid
                sock.sendall(f"{pid}\n".encode())
        for sock, state in list(clients.items()):
            pid = state["pid"]
            if pid is None:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                code = os.waitstatus_to_exitcode(status)
                try:
                    sock.sendall(f"exit {code}\n".encode())
                except OSError:
                    pass
                state["pid"] = None
                del clients[sock]
                sock.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _child(request: dict) -> None:
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # not the harness's lifeline pipe
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [sys.executable, "-m", "ipykernel_launcher", *request["argv"]]
        if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
            sys.path.pop(0)  # as for `python -m ipykernel_launcher`: not this directory
        sys.path.insert(0, "")
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=request["argv"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _connect(path: str, argv: list[str]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}
    sock.sendall(json.dumps(request).encode() + b"\n")
    stream = sock.makefile("rb")
    pid = int(stream.readline())

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            line = stream.readline()
        except InterruptedError:
            continue
        if not line:
            return 1
        if line.startswith(b"exit "):
            return int(line.split()[1]) & 0xFF


def main() -> int:
    mode, path, *rest = sys.argv[1:]
    if mode == "serve":
        _serve(path)
        return 0
    return _connect(path, rest)


if __name__ == "__main__":
    sys.exit(main())
