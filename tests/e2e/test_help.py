"""What metafuse says of itself: the top-level --help, the metafuse(1) man
page and the bash completion, which the build makes from the same texts
(src/cli/help.c), and what `meson install` puts where.

No mount is needed; the tests run once (pytestmark local_store: on an S3
run they would only repeat themselves).
"""

import os
import re
import shutil
import subprocess

import pytest

import mfhelpers as h

pytestmark = pytest.mark.local_store

BUILD = os.path.dirname(os.path.abspath(h.BIN))


def out(*args):
    r = h.run([h.BIN, *args])
    assert r.returncode == 0, r.stderr
    return r.stdout


def commands():
    """The command names the top-level --help lists."""
    text = out("--help")
    block = text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  ([a-z]+) ", block, re.M)]


def man_text():
    """The man page rendered as plain text, and groff's warnings."""
    if not shutil.which("groff"):
        pytest.skip("no groff")
    src = out("help", "--man")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-c"],
                       input=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def test_top_level_help_lists_commands_and_stores():
    names = commands()
    assert {"mkfs", "mount", "umount", "fsck", "gc", "help"} <= set(names)
    text = out("--help")
    for kind in ("file:///", "s3://BUCKET"):
        assert kind in text
    # every command listed answers --help
    for name in names:
        assert out(name, "--help").startswith("usage: metafuse " + name)
    assert out("help", "fsck") == out("fsck", "--help")


def test_man_page_renders_and_names_every_command_and_option():
    text, warnings = man_text()
    assert warnings == "", warnings
    text = re.sub(".\b", "", text)   # no overstrike, whatever the groff
    for name in commands():
        assert re.search(rf"^   {name}$", text, re.M), \
            f"no section for '{name}'"
        usage = out(name, "--help").splitlines()[0]
        for opt in re.findall(r"--[a-z-]+", usage):
            assert opt in text, f"{opt} of {name} not in the man page"
    # every -o option of mount's help, and the store options
    mount_help = out("mount", "--help")
    for opt in re.findall(r"^  ([a-z_]+)(?:=[A-Z]+)?\s", mount_help, re.M):
        assert opt in text, f"mount option {opt} not in the man page"
    for section in ("SYNOPSIS", "STORE OPTIONS", "MOUNT HELPERS",
                    "ENVIRONMENT", "FILES", "EXIT STATUS"):
        assert section in text


def test_man_l_renders():
    if not shutil.which("man"):
        pytest.skip("no man")
    page = os.path.join(BUILD, "docs", "metafuse.1")
    if not os.path.exists(page):
        pytest.skip("no docs/metafuse.1 beside the binary")
    r = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                       env={**os.environ, "MANPAGER": "cat",
                            "MANWIDTH": "80"})
    assert r.returncode == 0, r.stderr
    assert "metafuse mount" in r.stdout


def complete(words):
    """COMPREPLY of the generated completion for the command line words
    (the last one being completed)."""
    script = out("help", "--bash-completion")
    line = " ".join(words)
    prog = (script + "\n" +
            "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
            f"COMP_CWORD={len(words) - 1}\nCOMP_LINE='{line}'\n"
            "_metafuse\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion():
    assert complete(["metafuse", "mo"]) == ["mount"]
    assert "--verify-data" in complete(["metafuse", "fsck", "--ver"])
    assert complete(["metafuse", "mount", "-o", "cache_s"]) == \
        ["cache_size="]
    assert complete(["metafuse", "mount", "-o", "ro,writeback_d"]) == \
        ["ro,writeback_delay="]
    assert "endpoint=" in complete(["metafuse", "gc", "-o", "end"])


def test_meson_install_puts_everything_in_place(tmp_path):
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        pytest.skip("the binary is not in a meson build directory")
    dest = tmp_path / "dest"
    r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild",
                        "--destdir", str(dest)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    found = {os.path.relpath(os.path.join(d, f), dest)
             for d, _, fs in os.walk(dest) for f in fs}
    assert any(f.endswith("bin/metafuse") for f in found), found
    assert any(f.endswith("man1/metafuse.1") for f in found), found
    assert any(f.endswith("bash-completion/completions/metafuse")
               for f in found), found
    for helper in ("mount.metafuse", "mount.fuse.metafuse",
                   "umount.metafuse"):
        assert any(f.endswith("sbin/" + helper) for f in found), found
