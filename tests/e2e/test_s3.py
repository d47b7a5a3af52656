"""Volumes on S3: the radosgw server of scripts/s3server.sh (which checks
SigV4 signatures).  Skipped unless its environment is exported
(METAFUSE_S3_ENDPOINT, METAFUSE_S3_BUCKET, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY; scripts/test.sh does that)."""

import json
import os
import random
import secrets
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file

PROXY = h.REPO / "tests" / "helpers" / "s3_fault_proxy.py"
EP = os.environ.get("METAFUSE_S3_ENDPOINT")
BUCKET = os.environ.get("METAFUSE_S3_BUCKET")

pytestmark = pytest.mark.skipif(
    not (EP and BUCKET and os.environ.get("AWS_ACCESS_KEY_ID") and
         os.environ.get("AWS_SECRET_ACCESS_KEY")),
    reason="no S3 server (scripts/s3server.sh start DIR; . DIR/env)")


def s3_location(tag):
    return f"s3://{BUCKET}/e2e-{tag}-{secrets.token_hex(4)}"


def s3_mount(mounts, tag="v", env=None, **kw):
    """A Mount whose store is a fresh prefix in the test bucket, formatted
    (mkfs with -o endpoint=) but not mounted; mount options carry the
    endpoint too."""
    m = mounts(name=tag, mkfs=False, store=s3_location(tag),
               opts={"endpoint": EP}, env=env, **kw)
    r = m.cli("mkfs", "-o", f"endpoint={EP}", m.store)
    assert r.returncode == 0, r.stderr
    assert m.store in r.stdout
    return m


def populate(root):
    """A small tree with a multi-block file, small files, a hole, a
    symlink and a hard link; returns nothing (compare with snapshot)."""
    os.makedirs(os.path.join(root, "dir", "sub"))
    write_file(os.path.join(root, "big"), h.rand_bytes(1, 7 * MIB + 12345))
    for i in range(30):
        write_file(os.path.join(root, "dir", f"small{i}"),
                   h.rand_bytes(100 + i, 1 + i * 997))
    with open(os.path.join(root, "dir", "sub", "sparse"), "wb") as f:
        f.seek(5 * MIB)
        f.write(b"tail")
    write_file(os.path.join(root, "dir", "sub", "empty"), b"")
    os.symlink("../big", os.path.join(root, "dir", "link"))
    os.link(os.path.join(root, "dir", "small0"),
            os.path.join(root, "dir", "hard"))


def test_s3_roundtrip_after_cache_wipe(mounts, reference):
    m = s3_mount(mounts)
    m.mount()
    populate(m.mnt)
    populate(reference)
    # a rename and a delete reach the store too
    os.rename(m.path("dir", "small1"), m.path("dir", "renamed"))
    os.rename(os.path.join(reference, "dir", "small1"),
              os.path.join(reference, "dir", "renamed"))
    os.unlink(m.path("dir", "small2"))
    os.unlink(os.path.join(reference, "dir", "small2"))
    want = h.snapshot(reference, root_attrs=False)
    assert h.snapshot(m.mnt, root_attrs=False) == want
    m.umount()
    m.wipe_cache()
    m.mount()
    assert h.snapshot(m.mnt, root_attrs=False) == want
    # and fsck finds the volume clean
    m.umount()
    r = m.cli("fsck", "-o", f"endpoint={EP}", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    # offline gc finds nothing to break, and the volume still mounts
    r = m.cli("gc", "-o", f"endpoint={EP}", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    m.mount()
    assert h.snapshot(m.mnt, root_attrs=False) == want


def test_s3_default_block_size_is_4mib(mounts):
    """Untold, mkfs gives an S3 volume 4 MiB blocks: a quarter of the
    requests of 1 MiB ones, each a round trip and a fee."""
    m = mounts(mkfs=False, store=s3_location("bs"), opts={"endpoint": EP})
    r = m.cli("mkfs", "-o", f"endpoint={EP}", m.store)
    assert r.returncode == 0, r.stderr
    assert "(block size 4194304)" in r.stdout, r.stdout
    m.mount()
    write_file(m.path("f"), h.rand_bytes(2, 4 * MIB + 1))
    m.umount()
    # one full block and one byte: two objects
    assert len(m.data_objects()) == 2
    m.mount()
    assert read_file(m.path("f")) == h.rand_bytes(2, 4 * MIB + 1)
    m.umount()


def test_s3_endpoint_from_environment(mounts):
    env = dict(os.environ, AWS_ENDPOINT_URL=EP)
    m = mounts(name="envep", mkfs=False, store=s3_location("envep"),
               env=env)
    r = m.cli("mkfs", m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    write_file(m.path("f"), b"through AWS_ENDPOINT_URL")
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == b"through AWS_ENDPOINT_URL"


def one_line_error(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_s3_wrong_secret_is_refused(mounts):
    m = s3_mount(mounts, tag="badkey")
    bad = dict(m.env, AWS_SECRET_ACCESS_KEY="not-the-secret-" + "x" * 20)
    # mkfs and mount both fail at once, with one line that names the
    # bucket, the endpoint and the server's verdict, and not the secret
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={EP}", s3_location("x")],
              env=bad)
    line = one_line_error(r)
    assert "SignatureDoesNotMatch" in line and BUCKET in line and EP in line
    assert "not-the-secret" not in r.stderr + r.stdout
    r = h.run([h.BIN, "mount", "-o", f"endpoint={EP},cache_dir={m.cache}",
               m.store, m.mnt], env=bad)
    line = one_line_error(r)
    assert "SignatureDoesNotMatch" in line
    assert not h.is_mounted(m.mnt)


def test_s3_bad_locations_fail_at_once(mounts, workdir):
    env = dict(os.environ)
    # a missing bucket
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={EP}",
               "s3://mf-missing-bucket/v"], env=env)
    line = one_line_error(r)
    assert "NoSuchBucket" in line and "mf-missing-bucket" in line
    assert "--create-bucket" in line
    # an endpoint where nothing listens
    r = h.run([h.BIN, "mkfs", "-o", "endpoint=http://127.0.0.1:1",
               f"s3://{BUCKET}/v"], env=env, timeout=60)
    line = one_line_error(r)
    assert "cannot reach" in line and "127.0.0.1:1" in line
    # a credentials file others can read
    creds = os.path.join(workdir, "creds")
    with open(creds, "w") as f:
        f.write("[default]\naws_access_key_id = a\n"
                "aws_secret_access_key = b\n")
    os.chmod(creds, 0o644)
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={EP},credentials={creds}",
               f"s3://{BUCKET}/v"], env=env)
    line = one_line_error(r)
    assert "readable by others" in line


def test_s3_create_bucket_and_credentials_file(mounts, workdir):
    bucket = "mf-new-" + secrets.token_hex(4)
    creds = os.path.join(workdir, "creds")
    with open(creds, "w") as f:
        f.write("[default]\naws_access_key_id = %s\n"
                "aws_secret_access_key = %s\n" %
                (os.environ["AWS_ACCESS_KEY_ID"],
                 os.environ["AWS_SECRET_ACCESS_KEY"]))
    os.chmod(creds, 0o600)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_")}
    env["HOME"] = workdir  # no ~/.aws to fall back to
    loc = f"s3://{bucket}/vol"
    opt = f"endpoint={EP},credentials={creds}"
    r = h.run([h.BIN, "mkfs", "-o", opt, loc], env=env)
    assert r.returncode != 0 and "NoSuchBucket" in r.stderr
    r = h.run([h.BIN, "mkfs", "--create-bucket", "-o", opt, loc], env=env)
    assert r.returncode == 0, r.stderr
    m = mounts(name="newb", mkfs=False, store=loc,
               opts={"endpoint": EP, "credentials": creds}, env=env)
    m.mount()
    write_file(m.path("f"), h.rand_bytes(7, 3 * MIB))
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == h.rand_bytes(7, 3 * MIB)


# ---- faults between metafuse and the server -------------------------------

@pytest.fixture
def fault_proxy(workdir, request):
    """tests/helpers/s3_fault_proxy.py in front of the server, breaking
    20% of the requests (500, 503, lost answers, slow answers, dropped
    connections, bodies cut short); yields (url, stats file)."""
    stats = os.path.join(workdir, "proxy.json")
    rate = getattr(request, "param", 0.2)
    seed = int(os.environ.get("METAFUSE_SEED", "0") or 0) or \
        random.randrange(1, 1 << 30)
    print(f"fault proxy seed {seed}")
    with h.helper_process([PROXY, "--upstream", EP, "--rate", rate,
                           "--seed", seed, "--stats", stats,
                           "--down-file", os.path.join(workdir, "down")],
                          workdir, "proxy") as port:
        yield f"http://127.0.0.1:{port}", stats


def mixed_workload(root, ref, rng, steps):
    """Writes, overwrites, renames and deletes, the same in root (the
    mount) and ref (a local directory)."""
    files, dirs = [], ["."]
    for step in range(steps):
        op = rng.random()
        if op < 0.35 or len(files) < 3:
            d = rng.choice(dirs)
            name = os.path.join(d, f"f{step}")
            data = h.rand_bytes(rng.randrange(1 << 30),
                                rng.choice([0, 1, 4096, 100000,
                                            MIB + 17, 3 * MIB]))
            for base in (root, ref):
                write_file(os.path.join(base, name), data)
            files.append(name)
        elif op < 0.55:
            name = rng.choice(files)
            off = rng.randrange(2 * MIB)
            data = h.rand_bytes(rng.randrange(1 << 30),
                                rng.randrange(1, 300000))
            for base in (root, ref):
                with open(os.path.join(base, name), "r+b") as f:
                    f.seek(off)
                    f.write(data)
        elif op < 0.7:
            name = rng.choice(files)
            new = os.path.join(rng.choice(dirs), f"r{step}")
            for base in (root, ref):
                os.rename(os.path.join(base, name),
                          os.path.join(base, new))
            files[files.index(name)] = new
        elif op < 0.85:
            name = rng.choice(files)
            for base in (root, ref):
                os.unlink(os.path.join(base, name))
            files.remove(name)
        elif op < 0.93:
            d = os.path.join(rng.choice(dirs), f"d{step}")
            for base in (root, ref):
                os.mkdir(os.path.join(base, d))
            dirs.append(d)
        else:
            # fsync a file: its data and the metadata go up now
            name = rng.choice(files)
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@pytest.mark.timeout(900)
def test_s3_faults_mixed_workload(mounts, reference, fault_proxy):
    url, stats = fault_proxy
    m = mounts(name="faults", mkfs=False, store=s3_location("faults"),
               opts={"endpoint": url})
    # 1 MiB blocks: enough requests for every kind of fault to happen
    r = m.cli("mkfs", "--block-size", "1M", "-o", f"endpoint={url}",
              m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    rng = random.Random(int(os.environ.get("METAFUSE_SEED", "0") or 7))
    mixed_workload(m.mnt, reference, rng, 120)
    want = h.snapshot(reference, root_attrs=False)
    assert h.snapshot(m.mnt, root_attrs=False) == want
    m.umount()
    m.wipe_cache()
    m.mount()
    assert h.snapshot(m.mnt, root_attrs=False) == want
    m.umount()
    with open(stats) as f:
        st = json.load(f)
    print(f"fault proxy: {st}")
    assert st["requests"] >= 100, st
    assert st["faults"] >= 0.10 * st["requests"], st
    for kind in ("500", "503", "lost", "slow", "drop", "cut"):
        assert st[kind] > 0, st
    # and the retries show in the daemon log as warnings, not errors
    assert "retrying" in m.log_text()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault_proxy", [0.0], indirect=True)
def test_s3_outage_while_mounted(mounts, fault_proxy, workdir):
    """The server stops answering: writes still land in the cache, the
    log says uploads fail, and once the server is back everything is
    uploaded; after a cache wipe every byte is there."""
    url, stats = fault_proxy
    down = os.path.join(workdir, "down")
    m = mounts(name="outage", mkfs=False, store=s3_location("outage"),
               opts={"endpoint": url, "writeback_delay": "0.1"})
    m.allow_errors(r"upload of block .* failed", r"s3: .* failed",
                   r"checkpoint", r"lease")
    r = m.cli("mkfs", "-o", f"endpoint={url}", m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    write_file(m.path("before"), h.rand_bytes(1, 2 * MIB))
    open(down, "w").close()
    t0 = time.monotonic()
    for i in range(5):
        write_file(m.path(f"during{i}"), h.rand_bytes(10 + i, MIB + i))
    # the writes did not wait for the store
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 120
    while "failed" not in m.log_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "upload of block" in m.log_text()
    os.unlink(down)
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("before")) == h.rand_bytes(1, 2 * MIB)
    for i in range(5):
        assert read_file(m.path(f"during{i}")) == \
            h.rand_bytes(10 + i, MIB + i)
    with open(stats) as f:
        st = json.load(f)
    assert st["down"] > 0, st
