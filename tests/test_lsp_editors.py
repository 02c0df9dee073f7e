"""The editor side of `netdsl lsp`: the generated TextMate grammar (fast: the committed file is the
generator's output; slow: vscode-textmate tokenizes every bundled spec with no gap, and the
extension packages into a .vsix), semantic tokens against the Pygments lexer, and a headless
Neovim that shows the server's diagnostic (slow).

The npm and Neovim tests need `npm ci` in editors/vscode and Debian's neovim, which `.ci/run`
installs; where they are missing they skip on a developer's machine and fail under CI (CI set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from lsp_helpers import ROOT, SERVER_ENV
from pygments.token import Keyword, Name

from netdsl.highlight import NetdslLexer
from netdsl.lsp.textmate import render
from netdsl.lsp.tokens import TOKEN_MODIFIERS, TOKEN_TYPES, semantic_tokens

VSCODE = ROOT / "editors" / "vscode"


def need(available: bool, what: str) -> None:
    """Skip without a tool on a developer's machine; fail in CI, where .ci/run installs it."""
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; .ci/run installs it")
        pytest.skip(f"{what} is not installed")


def test_the_committed_textmate_grammar_is_the_generated_one():
    committed = (VSCODE / "syntaxes" / "netdsl.tmLanguage.json").read_text()
    assert committed == render(), (
        "regenerate: python -m netdsl.lsp.textmate > editors/vscode/syntaxes/netdsl.tmLanguage.json"
    )
    words = json.dumps(json.loads(committed))
    for word in ("conv", "bottleneck_not_an_op"):
        assert (word in words) == (word == "conv")  # op names come from the registry, nothing else


def test_semantic_tokens_follow_the_pygments_lexer():
    text = (ROOT / "specs" / "densenet_bc.net").read_text()
    data = semantic_tokens(text)
    lines = text.split("\n")
    decoded = {}
    line = col = 0
    for i in range(0, len(data), 5):
        line, col = (line + data[i], data[i + 1]) if data[i] else (line, col + data[i + 1])
        word = lines[line][col : col + data[i + 2]]
        mods = [m for bit, m in enumerate(TOKEN_MODIFIERS) if data[i + 4] >> bit & 1]
        decoded.setdefault(word, (TOKEN_TYPES[data[i + 3]], mods))
    lexed = {v: t for t, v in NetdslLexer().get_tokens(text)}
    assert lexed["conv"] in Name.Builtin and decoded["conv"] == ("function", ["defaultLibrary"])
    assert lexed["network"] in Keyword and decoded["network"] == ("keyword", [])
    assert lexed["densenet_bc"] in Name.Class and decoded["densenet_bc"] == ("class", ["declaration"])
    assert lexed["stem"] in Name.Label and decoded["stem"] == ("label", ["declaration"])


@pytest.mark.slow
def test_vscode_textmate_tokenizes_every_bundled_spec_without_a_gap():
    need(
        shutil.which("node") is not None and (VSCODE / "node_modules" / "vscode-textmate").is_dir(),
        "npm ci in editors/vscode",
    )
    proc = subprocess.run(
        ["node", "test/tokenize-specs.js", str(ROOT / "specs"), str(ROOT / "examples")],
        cwd=VSCODE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = len(list((ROOT / "specs").rglob("*.net"))) + len(list((ROOT / "examples").rglob("*.net")))
    assert proc.stdout.strip().endswith(f"{files} files tokenized, 0 untokenized spans")


@pytest.mark.slow
def test_the_extension_packages_into_a_vsix(tmp_path):
    need((VSCODE / "node_modules" / "@vscode" / "vsce").is_dir(), "npm ci in editors/vscode")
    out = tmp_path / "netdsl.vsix"
    proc = subprocess.run(
        ["npx", "vsce", "package", "--allow-missing-repository", "--skip-license", "-o", str(out)],
        cwd=VSCODE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.stat().st_size > 1000


# Neovim 0.7 (Debian bookworm) has no vim.lsp.start: start the client and attach it by hand.
NVIM_CONFIG = """
vim.api.nvim_create_autocmd({{"BufReadPost", "BufNewFile"}}, {{
  pattern = "*.net",
  callback = function(args)
    local id = vim.lsp.start_client({{ name = "netdsl", cmd = {cmd}, root_dir = "{root}" }})
    vim.lsp.buf_attach_client(args.buf, id)
  end,
}})
vim.api.nvim_create_autocmd("DiagnosticChanged", {{
  callback = function()
    local ds = vim.diagnostic.get(0)
    if #ds > 0 then
      local d = ds[1]
      local f = io.open("{out}", "w")
      f:write(vim.fn.json_encode({{
        lnum = d.lnum, col = d.col, end_lnum = d.end_lnum, end_col = d.end_col, message = d.message
      }}))
      f:close()
      vim.cmd("qall!")
    end
  end,
}})
vim.defer_fn(function() vim.cmd("cquit! 3") end, 60000)
"""


@pytest.mark.slow
def test_headless_neovim_shows_the_diagnostic_at_its_line_and_column(tmp_path):
    need(shutil.which("nvim") is not None, "neovim")
    spec = tmp_path / "typo.net"
    spec.write_text("network t(k=4) {\n    input(3, 8, 8)\n    conv(k, 3)\n    rleu\n}\n")
    out = tmp_path / "diagnostic.json"
    cmd = "{" + ", ".join(json.dumps(c) for c in [sys.executable, "-m", "netdsl", "lsp"]) + "}"
    config = tmp_path / "init.lua"
    config.write_text(textwrap.dedent(NVIM_CONFIG.format(cmd=cmd, root=tmp_path, out=out)))
    proc = subprocess.run(
        ["nvim", "--headless", "--clean", "-u", str(config), str(spec)],
        env={**SERVER_ENV, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    got = json.loads(out.read_text())
    assert (got["lnum"], got["col"], got["end_lnum"], got["end_col"]) == (3, 4, 3, 8)  # 'rleu', 0-based
    assert got["message"].startswith("unknown op or template 'rleu'")
    assert "did you mean 'relu'" in got["message"]
