"""How an S3 volume is reached: HTTPS and its certificates, bucket
addressing, AWS profiles, session tokens.  Against the radosgw of
scripts/s3server.sh (skipped without it, like test_s3.py), reached
through small proxies on 127.0.0.1 that let a test see what metafuse
sent:

  tests/helpers/s3_tls_proxy.py    TLS in front of radosgw, with a CA
                                   and certificate the test makes with
                                   the openssl CLI
  tests/helpers/s3_fault_proxy.py  with --rate 0 --record: records the
                                   method, path and headers of every
                                   request (Host, Authorization, ...);
                                   with --refuse-token, refuses session
                                   tokens as AWS would

Every failure here must be one line that says what is wrong, and no
message or log may hold the secret key or the session token.
"""

import json
import os
import secrets
import shutil
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file

HELPERS = h.REPO / "tests" / "helpers"
EP = os.environ.get("METAFUSE_S3_ENDPOINT")
BUCKET = os.environ.get("METAFUSE_S3_BUCKET")
KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID")
SECRET = os.environ.get("AWS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.skipif(
    not (EP and BUCKET and KEY_ID and SECRET),
    reason="no S3 server (scripts/s3server.sh start DIR; . DIR/env)")


def location(tag):
    return f"s3://{BUCKET}/cfg-{tag}-{secrets.token_hex(4)}"


def clean_env(**extra):
    """The environment without any AWS_ variable (and so without keys),
    plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


def keys_env(**extra):
    return clean_env(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                     **extra)


def one_line_error(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0, r.stdout + r.stderr
    assert len(lines) == 1, r.stderr
    return lines[0]


def assert_no_secrets(texts, *more):
    """None of texts holds the secret key or any of more (tokens)."""
    for t in texts:
        for s in (SECRET, *more):
            assert s not in t, "a secret leaked into a message or a log"




class Recorder:
    """The recording proxy: url to use as the endpoint (with host_name
    instead of 127.0.0.1 when asked) and the requests it saw."""

    def __init__(self, port, path):
        self.port = port
        self.path = path

    def url(self, host_name="127.0.0.1"):
        return f"http://{host_name}:{self.port}"

    def requests(self):
        out = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    r = json.loads(line)
                    r["h"] = {k.lower(): v for k, v in r["headers"]}
                    out.append(r)
        return out

    def clear(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def recorder(workdir):
    path = os.path.join(workdir, "requests.jsonl")
    with h.helper_process([HELPERS / "s3_fault_proxy.py", "--upstream", EP,
                         "--rate", "0", "--record", path],
                        workdir, "recorder") as port:
        yield Recorder(port, path)


# ---- HTTPS ---------------------------------------------------------------

def openssl(*args, cwd):
    r = h.run(["openssl", *args], cwd=cwd)
    assert r.returncode == 0, r.stderr


def make_ca(d, name):
    """A self-signed CA in d: (certificate, key)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """CA "test-ca", a server certificate it signed for 127.0.0.1 and
    localhost, and an unrelated CA "other-ca"."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl CLI (scripts/deps.sh installs it)")
    d = str(tmp_path_factory.mktemp("tls"))
    ca, ca_key = make_ca(d, "test-ca")
    other, _ = make_ca(d, "other-ca")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                "basicConstraints = CA:FALSE\n"
                "keyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
            "/CN=localhost", "-keyout", "server.key", "-out", "server.csr",
            cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey",
            ca_key, "-CAcreateserial", "-days", "2", "-extfile",
            "server.ext", "-out", "server.pem", cwd=d)
    return {"ca": ca, "other_ca": other,
            "cert": os.path.join(d, "server.pem"),
            "key": os.path.join(d, "server.key")}


@pytest.fixture
def tls_proxy(workdir, tls_files):
    """https://127.0.0.1:PORT in front of radosgw; yields (url, a function
    returning how many TLS connections were accepted)."""
    stats = os.path.join(workdir, "tls.json")
    with h.helper_process([HELPERS / "s3_tls_proxy.py", "--upstream", EP,
                         "--cert", tls_files["cert"], "--key",
                         tls_files["key"], "--stats", stats],
                        workdir, "tls-proxy") as port:
        def accepted():
            if not os.path.exists(stats):
                return 0
            with open(stats) as f:
                return json.load(f)["connections"]
        yield f"https://127.0.0.1:{port}", accepted


def test_https_untrusted_certificate_fails_at_once(mounts, tls_proxy,
                                                   tls_files):
    url, accepted = tls_proxy
    # a volume to mount, made with the right CA
    m = mounts(name="tls", mkfs=False, store=location("untrusted"),
               opts={"endpoint": url}, env=keys_env())
    r = m.cli("mkfs", "-o", f"endpoint={url},ca_bundle={tls_files['ca']}",
              m.store)
    assert r.returncode == 0, r.stderr
    n = accepted()
    assert n > 0

    # with the system's CAs: refused before anything is sent
    t0 = time.monotonic()
    r = m.cli("mkfs", "-o", f"endpoint={url}", location("x"))
    line = one_line_error(r)
    assert time.monotonic() - t0 < 10, "not at once"
    assert url in line and "TLS certificate" in line and \
        "not trusted" in line, line
    assert "ca_bundle" in line, "the message should say what to do"
    assert accepted() == n
    assert_no_secrets([r.stdout, r.stderr])

    # mount: the same, and nothing is mounted
    r = h.run([h.BIN, "mount", "-o", f"endpoint={url},cache_dir={m.cache}",
               m.store, m.mnt], env=m.env)
    line = one_line_error(r)
    assert url in line and "not trusted" in line, line
    assert not h.is_mounted(m.mnt)
    assert_no_secrets([r.stdout, r.stderr, m.log_text()])

    # a CA bundle without our CA does not help; a missing file is named
    r = m.cli("mkfs", "-o",
              f"endpoint={url},ca_bundle={tls_files['other_ca']}",
              location("x"))
    assert "not trusted" in one_line_error(r)
    missing = os.path.join(m.root, "no-such-ca.pem")
    r = m.cli("mkfs", "-o", f"endpoint={url},ca_bundle={missing}",
              location("x"))
    line = one_line_error(r)
    assert missing in line and "No such file" in line, line
    assert accepted() == n


def test_https_with_ca_bundle(mounts, tls_proxy, tls_files, workdir):
    url, accepted = tls_proxy
    ca = tls_files["ca"]
    m = mounts(name="tls", mkfs=False, store=location("ca"),
               opts={"endpoint": url, "ca_bundle": ca}, env=keys_env())
    r = m.cli("mkfs", "-o", f"endpoint={url},ca_bundle={ca}", m.store)
    assert r.returncode == 0, r.stderr
    assert not r.stderr.strip(), r.stderr
    m.mount()
    data = h.rand_bytes(3, 3 * MIB + 5)
    write_file(m.path("f"), data)
    write_file(m.path("small"), b"over TLS")
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == data
    assert read_file(m.path("small")) == b"over TLS"
    m.umount()
    assert accepted() > 0

    # AWS_CA_BUNDLE, as the AWS CLI reads it
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={url}", location("env")],
              env=keys_env(AWS_CA_BUNDLE=ca))
    assert r.returncode == 0, r.stderr
    # ca_bundle in the profile of ~/.aws/config
    home = os.path.join(workdir, "home")
    os.makedirs(os.path.join(home, ".aws"))
    with open(os.path.join(home, ".aws", "config"), "w") as f:
        f.write(f"[default]\nca_bundle = {ca}\n")
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={url}", location("cfg")],
              env=keys_env(HOME=home))
    assert r.returncode == 0, r.stderr
    # and the option wins over both
    r = h.run([h.BIN, "mkfs", "-o",
               f"endpoint={url},ca_bundle={tls_files['other_ca']}",
               location("x")], env=keys_env(HOME=home, AWS_CA_BUNDLE=ca))
    assert "not trusted" in one_line_error(r)


def test_https_no_verify_tls_works_and_says_so(mounts, tls_proxy):
    url, accepted = tls_proxy
    m = mounts(name="tls", mkfs=False, store=location("insecure"),
               opts={"endpoint": url, "no_verify_tls": True},
               env=keys_env())
    r = m.cli("mkfs", "-o", f"endpoint={url},no_verify_tls", m.store)
    assert r.returncode == 0, r.stderr
    assert "verification is off" in r.stderr and url in r.stderr, r.stderr
    m.mount()
    write_file(m.path("f"), b"unverified")
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == b"unverified"
    # the daemon's own log says it too, every session
    assert len(m.saved_logs) == 1
    for log in (m.saved_logs[0], m.log_text()[len(m.saved_logs[0]):]):
        assert "TLS certificate verification is off" in log
    assert accepted() > 0


# ---- addressing ----------------------------------------------------------

def roundtrip(m):
    """Write a small tree, unmount, wipe the cache, remount, compare."""
    m.mount()
    os.makedirs(m.path("d", "e"))
    write_file(m.path("big"), h.rand_bytes(11, 2 * MIB + 99))
    for i in range(5):
        write_file(m.path("d", "e", f"s{i}"), h.rand_bytes(20 + i, 5000 * i))
    os.symlink("../big", m.path("d", "link"))
    want = h.snapshot(m.mnt, root_attrs=False)
    m.umount()
    m.wipe_cache()
    m.mount()
    assert h.snapshot(m.mnt, root_attrs=False) == want
    m.umount()


def localhost_roundtrip(mounts, recorder, name, loc, virtual_host=False):
    """mkfs and a round trip through the recorder at localhost:PORT;
    returns the requests it saw (more than 20)."""
    ep = recorder.url("localhost")
    opts = {"endpoint": ep}
    if virtual_host:
        opts["virtual_host"] = True
    m = mounts(name=name, mkfs=False, store=location(loc), opts=opts,
               env=keys_env())
    r = m.cli("mkfs", "-o", f"endpoint={ep}" +
              (",virtual_host" if virtual_host else ""), m.store)
    assert r.returncode == 0, r.stderr
    roundtrip(m)
    reqs = recorder.requests()
    assert len(reqs) > 20
    return reqs


def test_virtual_host_addressing(mounts, recorder):
    """-o virtual_host: the bucket is in the Host header
    (BUCKET.localhost:PORT; libcurl resolves *.localhost to loopback),
    not in the path, and a volume round-trips."""
    reqs = localhost_roundtrip(mounts, recorder, "vh", "vhost",
                               virtual_host=True)
    for q in reqs:
        assert q["h"]["host"] == f"{BUCKET}.localhost:{recorder.port}", q
        assert not q["path"].startswith(f"/{BUCKET}"), q


def test_localhost_is_path_style_by_default(mounts, recorder):
    reqs = localhost_roundtrip(mounts, recorder, "ps", "pstyle")
    for q in reqs:
        assert q["h"]["host"] == f"localhost:{recorder.port}", q
        assert q["path"].startswith(f"/{BUCKET}/") or \
            q["path"].startswith(f"/{BUCKET}?"), q


# ---- profiles ------------------------------------------------------------

def write_aws_files(d, profile, endpoint, region="eu-test-1", token=None,
                    cred_name="credentials", conf_name="config"):
    """A credentials file with [profile] (and a [default] with keys that
    do not work) and a config file with [profile NAME] (and a [default]
    with an endpoint where nothing listens)."""
    os.makedirs(d, exist_ok=True)
    cred = os.path.join(d, cred_name)
    with open(cred, "w") as f:
        f.write("[default]\naws_access_key_id = AKIDDEFAULT\n"
                "aws_secret_access_key = default-secret-not-used\n\n"
                f"[{profile}]\naws_access_key_id = {KEY_ID}\n"
                f"aws_secret_access_key = {SECRET}\n")
        if token:
            f.write(f"aws_session_token = {token}\n")
    os.chmod(cred, 0o600)
    conf = os.path.join(d, conf_name)
    with open(conf, "w") as f:
        f.write("[default]\nendpoint_url = http://127.0.0.1:1\n\n"
                f"[profile {profile}]\nregion = {region}\n"
                f"endpoint_url = {endpoint}\n")
    return cred, conf


def test_aws_profile_from_home(mounts, recorder, workdir):
    """Only AWS_PROFILE is set: keys from ~/.aws/credentials [NAME],
    region and endpoint_url from ~/.aws/config [profile NAME]."""
    home = os.path.join(workdir, "home")
    write_aws_files(os.path.join(home, ".aws"), "mfprof", recorder.url())
    env = clean_env(HOME=home, AWS_PROFILE="mfprof")
    m = mounts(name="prof", mkfs=False, store=location("profile"), env=env)
    m.env.pop("AWS_ENDPOINT_URL", None)  # Mount adds the test server's
    assert not [k for k in m.env if k.startswith("AWS_") and
                k != "AWS_PROFILE"]
    r = m.cli("mkfs", m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    write_file(m.path("f"), h.rand_bytes(5, MIB + 3))
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == h.rand_bytes(5, MIB + 3)
    m.umount()
    reqs = recorder.requests()
    assert len(reqs) > 5
    for q in reqs:
        assert f"Credential={KEY_ID}/" in q["h"]["authorization"], q
        assert "/eu-test-1/s3/aws4_request" in q["h"]["authorization"], q


def test_aws_shared_files_from_environment(mounts, recorder, workdir):
    """AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE replace the files
    in ~/.aws (which here hold nothing usable)."""
    home = os.path.join(workdir, "home")
    write_aws_files(os.path.join(home, ".aws"), "other", "http://127.0.0.1:1")
    cred, conf = write_aws_files(os.path.join(workdir, "elsewhere"),
                                 "mfprof", recorder.url(),
                                 cred_name="creds.ini",
                                 conf_name="conf.ini")
    env = clean_env(HOME=home, AWS_PROFILE="mfprof",
                    AWS_SHARED_CREDENTIALS_FILE=cred, AWS_CONFIG_FILE=conf)
    r = h.run([h.BIN, "mkfs", location("files")], env=env)
    assert r.returncode == 0, r.stderr
    assert recorder.requests()


def test_unknown_profile_is_one_clear_line(mounts, workdir):
    home = os.path.join(workdir, "home")
    cred, conf = write_aws_files(os.path.join(home, ".aws"), "mfprof", EP)
    m = mounts(name="prof", mkfs=False, store=location("noprof"),
               opts={"endpoint": EP}, env=keys_env())
    r = m.cli("mkfs", "-o", f"endpoint={EP}", m.store)
    assert r.returncode == 0, r.stderr
    env = clean_env(HOME=home, AWS_PROFILE="no-such-profile")
    for args in (["mkfs", location("x")],
                 ["mount", "-o", f"cache_dir={m.cache}", m.store, m.mnt]):
        r = h.run([h.BIN, *args], env=env)
        line = one_line_error(r)
        assert "no-such-profile" in line and "not found" in line, line
        assert cred in line and conf in line, line
        assert_no_secrets([r.stdout, r.stderr])
    assert not h.is_mounted(m.mnt)


# ---- session tokens ------------------------------------------------------

def signed_headers(q):
    return q["h"]["authorization"].split("SignedHeaders=")[1] \
        .split(",")[0].split(";")


def test_session_token_is_sent_and_signed(mounts, recorder):
    """With AWS_SESSION_TOKEN every request carries x-amz-security-token,
    among the signed headers (radosgw, as s3server.sh runs it, ignores
    the token, so the volume works)."""
    token = "FQoGZXIvYXdzE" + secrets.token_hex(40)
    ep = recorder.url()
    m = mounts(name="tok", mkfs=False, store=location("token"),
               opts={"endpoint": ep},
               env=keys_env(AWS_SESSION_TOKEN=token))
    r = h.run([h.BIN, "mkfs", "-o", f"endpoint={ep}", location("x")],
              env=keys_env())
    assert r.returncode == 0, r.stderr
    for q in recorder.requests():
        assert "x-amz-security-token" not in q["h"]
    recorder.clear()

    r = m.cli("mkfs", "-o", f"endpoint={ep}", m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    write_file(m.path("f"), h.rand_bytes(9, 2 * MIB + 1))
    m.remount(wipe_cache=True)
    assert read_file(m.path("f")) == h.rand_bytes(9, 2 * MIB + 1)
    m.umount()
    reqs = recorder.requests()
    assert {q["method"] for q in reqs} >= {"GET", "PUT", "DELETE"}
    for q in reqs:
        assert q["h"].get("x-amz-security-token") == token, q["h"].keys()
        assert "x-amz-security-token" in signed_headers(q), q
    assert_no_secrets([r.stdout, r.stderr, m.log_text()], token)


@pytest.mark.parametrize("code", ["InvalidToken", "InvalidArgument"])
def test_refused_session_token_is_one_clear_line(mounts, workdir, code):
    """A server that refuses the token (AWS answers InvalidToken, radosgw
    with its STS on InvalidArgument; played by the proxy): mkfs and mount
    fail with one line that says the session token was not accepted and
    names neither the token nor the secret."""
    token = "FQoGZXIvYXdzE" + secrets.token_hex(40)
    path = os.path.join(workdir, "requests.jsonl")
    with h.helper_process([HELPERS / "s3_fault_proxy.py", "--upstream", EP,
                         "--rate", "0", "--record", path,
                         "--refuse-token", code], workdir,
                        "refuser") as port:
        rec = Recorder(port, path)
        ep = rec.url()
        m = mounts(name="tok", mkfs=False, store=location("refused"),
                   opts={"endpoint": ep}, env=keys_env())
        r = m.cli("mkfs", "-o", f"endpoint={ep}", m.store)
        assert r.returncode == 0, r.stderr
        before = len(rec.requests())

        env = keys_env(AWS_SESSION_TOKEN=token)
        r = h.run([h.BIN, "mkfs", "-o", f"endpoint={ep}", location("x")],
                  env=env)
        line = one_line_error(r)
        assert "session token" in line and "not accepted" in line, line
        assert BUCKET in line and ep in line and code in line, line
        assert_no_secrets([r.stdout, r.stderr], token)
        r = h.run([h.BIN, "mount", "-o",
                   f"endpoint={ep},cache_dir={m.cache}", m.store, m.mnt],
                  env=env)
        line = one_line_error(r)
        assert "session token" in line, line
        assert not h.is_mounted(m.mnt)
        assert_no_secrets([r.stdout, r.stderr, m.log_text()], token)

        # the same token from the profile's aws_session_token
        home = os.path.join(workdir, "home")
        write_aws_files(os.path.join(home, ".aws"), "mfprof", ep,
                        token=token)
        r = h.run([h.BIN, "mkfs", location("x")],
                  env=clean_env(HOME=home, AWS_PROFILE="mfprof"))
        line = one_line_error(r)
        assert "session token" in line, line
        assert_no_secrets([r.stdout, r.stderr], token)
        # and it was the token that was refused: sent, and signed
        assert len(rec.requests()) >= before + 3
        for q in rec.requests()[before:]:
            assert q["h"].get("x-amz-security-token") == token
            assert "x-amz-security-token" in signed_headers(q), q
