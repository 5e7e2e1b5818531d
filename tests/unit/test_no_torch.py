"""Without PyTorch, %load_ext gradwatch says so in one line instead of a traceback."""

import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["torch"] = None  # makes `import torch` raise ImportError
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "gradwatch")
print("cell magic registered:", ip.find_cell_magic("gradwatch") is not None)
"""


def test_load_ext_without_torch_prints_one_line():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "gradwatch needs PyTorch, which is not installed in this kernel: pip install torch",
        "cell magic registered: False",
    ]
