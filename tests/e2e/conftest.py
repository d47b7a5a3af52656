"""pytest fixtures for the metafuse end-to-end tests.

  workdir      a fresh private directory (mode 0755, so a test that drops
               privileges can reach its mount point); sanitizer reports of
               every process a test starts land here and fail the test.
  mounts       a factory: mounts(name="v", opts=..., mkfs=True) returns a
               mfhelpers.Mount with its own store, cache dir and mount point
               under workdir.  At teardown every Mount is cleaned up (lazy
               unmount, daemon killed) and its daemon log is scanned:
               sanitizer reports, assertion failures and "error:" lines fail
               the test unless the test called mount.allow_errors(regex).
  mnt          one volume, formatted and mounted in daemon mode with the
               default options (writeback_delay=0.2).
  reference    a directory on the local disk for comparisons.

Environment: METAFUSE_BIN, METAFUSE_EXERCISER (see mfhelpers),
METAFUSE_TEST_STORE=s3 (S3 volumes), METAFUSE_TEST_ENCRYPT=1 (every
volume encrypted: mkfs --encrypt, passphrase METAFUSE_PASSPHRASE or the
suite's own, fast key derivation; mounts(encrypt=True) for one volume),
METAFUSE_TEST_TMP (where work directories go, default /tmp),
METAFUSE_KEEP_TMP=1 keeps the work directory of failed tests.
"""

import os
import shutil
import tempfile
import threading

import pytest

import mfhelpers
from mfhelpers import Mount, force_unmount, mounted_paths

TMP_BASE = os.environ.get("METAFUSE_TEST_TMP") or tempfile.gettempdir()


# A test still running after this many seconds gets its daemons killed:
# every blocked call on the mount then fails (ENOTCONN) and the suite goes
# on, instead of hanging on a deadlocked daemon.
WATCHDOG = float(os.environ.get("METAFUSE_TEST_WATCHDOG", "600"))


def pytest_configure(config):
    # Without pytest-timeout installed the marker must still be known.
    config.addinivalue_line("markers", "timeout(seconds): per-test limit")


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root")
    skip_local = pytest.mark.skip(reason="about the local store's files "
                                  "or CLI paths (METAFUSE_TEST_STORE=s3)")
    s3 = mfhelpers.STORE_KIND == "s3"
    for item in items:
        if item.get_closest_marker("root") and os.geteuid() != 0:
            item.add_marker(skip_root)
        if s3 and (item.get_closest_marker("local_store") or
                   item.module.__name__ in ("test_cli", "test_s3",
                                             "test_s3_config")):
            item.add_marker(skip_local)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.access(mfhelpers.BIN, os.X_OK):
        pytest.exit(f"metafuse binary not found at {mfhelpers.BIN} "
                    f"(build it, or set METAFUSE_BIN)", returncode=2)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture
def workdir(request):
    os.makedirs(TMP_BASE, exist_ok=True)
    d = tempfile.mkdtemp(prefix="mf-", dir=TMP_BASE)
    os.chmod(d, 0o755)
    yield d
    # anything still mounted below d (a test that mounted by hand)
    for path in mounted_paths():
        if path == d or path.startswith(d + os.sep):
            force_unmount(path)
    reports = mfhelpers.sanitizer_reports(d)
    keep = os.environ.get("METAFUSE_KEEP_TMP") and _failed(request)
    if keep:
        print(f"work directory kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer reports:\n" + "\n".join(reports)[:20000],
                    pytrace=False)


def _watchdog_seconds(request):
    marker = request.node.get_closest_marker("timeout")
    if marker and marker.args:
        return max(float(marker.args[0]) - 60, WATCHDOG)
    return WATCHDOG


@pytest.fixture
def mounts(workdir, request):
    made = []
    fired = []

    def watchdog():
        fired.append(True)
        for m in made:
            m.kill()
            force_unmount(m.mnt)

    timer = threading.Timer(_watchdog_seconds(request), watchdog)
    timer.daemon = True
    timer.start()

    def make(name="v", opts=None, mkfs=True, mount=True, block_size=None,
             foreground=False, **kw):
        m = Mount(os.path.join(workdir, name), opts=opts, **kw)
        made.append(m)
        if mkfs:
            m.mkfs(block_size=block_size)
        if mkfs and mount:
            m.mount(foreground=foreground)
        return m

    yield make

    timer.cancel()
    problems = []
    for m in made:
        dead = None if fired else m.check_alive()
        if dead:
            problems.append(dead)
    for m in made:
        m.cleanup()
    if fired:
        pytest.fail(f"watchdog: test still running after "
                    f"{_watchdog_seconds(request):.0f} s; daemons killed",
                    pytrace=False)
    for m in made:
        problems += m.log_problems()
    if _failed(request):
        for m in made:
            tail = m.log_tail(60)
            if tail:
                print(f"---- daemon log of {m.root} (last lines) ----\n{tail}")
    if problems:
        pytest.fail("daemon problems (crash, sanitizer, error lines):\n" +
                    "\n".join(problems[:40]), pytrace=False)


@pytest.fixture
def mnt(mounts):
    return mounts()


@pytest.fixture
def reference(workdir):
    d = os.path.join(workdir, "reference")
    os.mkdir(d)
    return d
