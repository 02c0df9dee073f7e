"""docs/images/lsp_neovim.png: Neovim (headless Debian neovim, under tmux) showing a diagnostic
and a hover from `netdsl lsp` on specs/densenet_bc.net with a depth its `expect` warns about.
The terminal is captured with its colours (tmux capture-pane -e) and drawn with matplotlib.

    python benchmarks/make_lsp_screenshot.py        # needs nvim and tmux
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.text import Text

COLS, ROWS = 160, 30
INIT = """
vim.opt.termguicolors = true
vim.opt.number = true
vim.cmd("highlight NormalFloat guibg=#2d2d40 guifg=#e0e0e0")
vim.cmd("highlight FloatBorder guibg=#2d2d40 guifg=#8080a0")
vim.api.nvim_create_autocmd({"BufReadPost"}, { pattern = "*.net", callback = function(args)
  local id = vim.lsp.start_client({ name = "netdsl", cmd = { "%s", "-m", "netdsl", "lsp" }, root_dir = "%s" })
  vim.lsp.buf_attach_client(args.buf, id)
end })
local done = false
vim.api.nvim_create_autocmd("DiagnosticChanged", { callback = function()
  if done or #vim.diagnostic.get(0) == 0 then return end
  done = true
  vim.defer_fn(function() vim.api.nvim_win_set_cursor(0, {12, 10}); vim.lsp.buf.hover() end, 300)
end })
"""


def capture(folder: Path) -> str:
    spec = folder / "densenet_bc.net"
    (folder / "lib").mkdir()
    shutil.copy(ROOT / "specs" / "lib" / "densenet.net", folder / "lib")
    spec.write_text((ROOT / "specs" / "densenet_bc.net").read_text().replace("(depth=100,", "(depth=102,"))
    (folder / "init.lua").write_text(INIT % (sys.executable, folder))
    session = f"netdsl-shot-{time.monotonic_ns()}"
    command = f"cd {folder} && PYTHONPATH={ROOT} nvim --clean -u init.lua densenet_bc.net"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(COLS), "-y", str(ROWS), command], check=True)
    try:
        time.sleep(8)
        return subprocess.run(
            ["tmux", "capture-pane", "-t", session, "-p", "-e"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def render(ansi: str, out: Path) -> None:
    cw, ch = 0.0605, 0.125  # inches per cell at 10 pt DejaVu Sans Mono
    fig = plt.figure(figsize=(COLS * cw, ROWS * ch), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, COLS)
    ax.set_ylim(ROWS, 0)
    ax.axis("off")
    fig.patch.set_facecolor("#1e1e1e")
    for row, line in enumerate(ansi.split("\n")[:ROWS]):
        text = Text.from_ansi(line)
        plain = text.plain
        styles = [None] * len(plain)
        for span in text.spans:
            for i in range(span.start, min(span.end, len(plain))):
                styles[i] = span.style
        col = 0
        while col < len(plain):
            end = col
            while end < len(plain) and styles[end] == styles[col]:
                end += 1
            style = styles[col]
            fg, bg = "#d4d4d4", None
            if style is not None and not isinstance(style, str):
                if style.color is not None and not style.color.is_default:
                    fg = style.color.get_truecolor().hex
                if style.bgcolor is not None and not style.bgcolor.is_default:
                    bg = style.bgcolor.get_truecolor().hex
            if bg:
                ax.add_patch(plt.Rectangle((col, row), end - col, 1, color=bg, lw=0))
            chunk = plain[col:end]
            if chunk.strip():
                for k, c in enumerate(chunk):  # one cell per character keeps box drawing aligned
                    if c != " ":
                        ax.text(col + k, row + 0.8, c, color=fg, family="DejaVu Sans Mono", fontsize=10)
            col = end
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        ansi = capture(Path(tmp))
    render(ansi, ROOT / "docs" / "images" / "lsp_neovim.png")
    print("wrote docs/images/lsp_neovim.png")
