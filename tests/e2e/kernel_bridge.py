"""A real ipykernel behind stdin/stdout JSON lines, for the VS Code e2e's test-only controller.

Usage: python tests/e2e/kernel_bridge.py CWD

Starts a ``python3`` kernel from this interpreter (so it sees the project's gradwatch and
torch) with CWD as its working directory, prints ``{"type": "ready"}``, then serves one
request per stdin line, in order:

    {"id": 7, "code": "..."}   -> {"id": 7, "type": "started", "execution_count": 3}
                                  {"id": 7, "type": "output", "output": {...nbformat output...}} *
                                  {"id": 7, "type": "done", "execution_count": 3, "status": "ok"}

Outputs are nbformat-shaped (``stream``, ``display_data``, ``execute_result``, ``error``).
EOF on stdin shuts the kernel down. Test-only: never shipped with the extension.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

# A cell that runs longer than this is a hung test, not a slow machine.
EXECUTE_TIMEOUT_S = 300


class ThisInterpreterKernels(KernelSpecManager):
    """The ``python3`` kernel spec from ipykernel in this interpreter, whatever else is installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == NATIVE_KERNEL_NAME:
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            spec = get_kernel_dict()
            spec["argv"][0] = sys.executable
            return KernelSpec(resource_dir=RESOURCES, **spec)
        return super().get_kernel_spec(kernel_name)


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def to_output(msg_type: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """An iopub message as an nbformat output, or None for messages that are not outputs."""
    if msg_type == "stream":
        return {"output_type": "stream", "name": content["name"], "text": content["text"]}
    if msg_type in ("display_data", "execute_result"):
        return {"output_type": msg_type, "data": content["data"], "metadata": content.get("metadata", {})}
    if msg_type == "error":
        return {"output_type": "error", "ename": content["ename"], "evalue": content["evalue"],
                "traceback": content["traceback"]}
    return None


def execute(client: Any, request_id: Any, code: str) -> None:
    msg_id = client.execute(code, store_history=True, allow_stdin=False)
    while True:
        msg = client.get_iopub_msg(timeout=EXECUTE_TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msg_type, content = msg["msg_type"], msg["content"]
        if msg_type == "status" and content["execution_state"] == "idle":
            break
        if msg_type == "execute_input":
            send({"id": request_id, "type": "started", "execution_count": content["execution_count"]})
            continue
        output = to_output(msg_type, content)
        if output is not None:
            send({"id": request_id, "type": "output", "output": output})
    reply = client.get_shell_msg(timeout=EXECUTE_TIMEOUT_S)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=EXECUTE_TIMEOUT_S)
    send({"id": request_id, "type": "done", "execution_count": reply["content"].get("execution_count"),
          "status": reply["content"]["status"]})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    # Killed with its process group (the e2e stops code-server so): still shut the kernel down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    manager = KernelManager(kernel_name=NATIVE_KERNEL_NAME, kernel_spec_manager=ThisInterpreterKernels())
    # The kernel's own stdout (fd-level writes) goes to stderr: stdout carries only our JSON lines.
    manager.start_kernel(cwd=argv[1], stdout=sys.stderr)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        send({"type": "ready"})
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            execute(client, request["id"], request["code"])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
