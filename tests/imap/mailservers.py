"""A real Dovecot (IMAP + LMTP) and a real SMTP submission server on loopback, for the
``imap`` platform's tests.

Dovecot runs in the foreground (``dovecot -F``) from a temporary config: passwd-file users,
Maildirs in a temporary folder, a self-signed certificate made here, and free loopback ports
for IMAP (plain + STARTTLS), IMAPS and LMTP. The SMTP server is ``aiosmtpd`` on loopback: it
takes submissions with SMTP AUTH (plain connection, or STARTTLS) and delivers every accepted
email over LMTP into Dovecot, so mail travels the way it does in production: submitted over
SMTP, delivered into the mailbox, read over IMAP.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Mailbox users made at start, one per test that asks for one.
USERS = 300
INSTALL_HINT = "install Dovecot with `apt-get install -y dovecot-imapd dovecot-lmtpd` (Debian/Ubuntu)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests of wrong passwords need no brute-force delay.
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service stats {{
  chroot =
}}
service auth {{
  user = {internal}
}}
service auth-worker {{
  user = {internal}
}}
lmtp_rcpt_check_quota = no
"""


@dataclass
class Dovecot:
    """A running Dovecot: its ports, and what a test needs to add users and poke at mail."""

    root: Path
    config: Path
    imap_port: int
    imaps_port: int
    lmtp_port: int
    process: subprocess.Popen
    passwords: dict[str, str] = field(default_factory=dict)
    _users: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_user(self) -> tuple[str, str]:
        """A fresh mailbox user ``(email, password)``, one of those made at start: Dovecot
        notices a changed passwd-file by its mtime, which a quick second write can miss."""
        with self._lock:
            self._users += 1
            address = f"user{self._users}@example.test"
        if address not in self.passwords:
            raise RuntimeError(f"only {len(self.passwords)} test users were made; raise USERS")
        return address, self.passwords[address]

    def make_users(self, count: int) -> None:
        lines = []
        for n in range(1, count + 1):
            address, password = f"user{n}@example.test", f"s3cret-Pa55-{n}"
            self.passwords[address] = password
            lines.append(f"{address}:{{PLAIN}}{password}::::::\n")
        (self.root / "users").write_text("".join(lines))

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        done = subprocess.run(["doveadm", "-c", str(self.config), *args], input=stdin, capture_output=True,
                              timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    def doveadm_save(self, user: str, folder: str, raw: bytes) -> None:
        self.doveadm("save", "-u", user, "-m", folder, stdin=raw)

    def deliver(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        """Deliver one email straight into mailboxes over LMTP (mail from outside)."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=10) as lmtp:
            lmtp.sendmail(sender, recipients, raw)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _accounts() -> dict[str, object]:
    """Who Dovecot's processes run as: as root, Debian's own service users and an
    unprivileged mail user; otherwise everything as the current user."""
    if os.geteuid() == 0:
        internal = pwd.getpwnam("dovecot")
        login = pwd.getpwnam("dovenull")
        mail = pwd.getpwnam("dovenull")
        return {"internal": internal.pw_name, "internal_group": "dovecot", "login": login.pw_name,
                "uid": mail.pw_uid, "gid": mail.pw_gid}
    me = pwd.getpwuid(os.getuid())
    return {"internal": me.pw_name, "internal_group": me.pw_name, "login": me.pw_name,
            "uid": me.pw_uid, "gid": os.getgid()}


def start_dovecot(root: Path) -> Dovecot:
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None:
        raise RuntimeError(f"the imap tests need a real Dovecot server: {INSTALL_HINT}")
    accounts = _accounts()
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # Mail processes run as the unprivileged mail user: the folders must be theirs.
        for sub in ("mail", "home"):
            os.chown(root / sub, accounts["uid"], accounts["gid"])
        root.chmod(0o755)
    cert, key = self_signed(root)
    ports = {"imap_port": free_port(), "imaps_port": free_port(), "lmtp_port": free_port()}
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(root=root, cert=cert, key=key, **accounts, **ports))
    (root / "users").touch()
    process = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    server = Dovecot(root, config, process=process, **ports)
    server.make_users(USERS)
    _wait_for_port(ports["imap_port"], process, root / "dovecot.log")
    _wait_for_port(ports["lmtp_port"], process, root / "dovecot.log")
    return server


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"dovecot exited ({process.returncode}): {err.strip()} {text[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on port {port} within {timeout}s")


class Submission:
    """The SMTP submission server: AUTH against Dovecot's users, delivery over LMTP.

    ``answer`` makes the next DATA fail with that SMTP reply (``"451 4.3.0 try later"``), to
    see how the client takes 4xx and 5xx answers. ``received`` keeps what came over the wire.
    """

    def __init__(self, dovecot: Dovecot):
        self.dovecot = dovecot
        self.passwords = dovecot.passwords
        self.received: list[tuple[str, list[str], bytes]] = []
        self.answer: str | None = None

    def authenticate(self, server, session, envelope, mechanism, auth_data):  # aiosmtpd Authenticator
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.passwords.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self.answer is not None:
            answer, self.answer = self.answer, None
            return answer
        raw = envelope.original_content or envelope.content
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
        local = [r for r in envelope.rcpt_tos if r.endswith("@example.test")]
        if local:
            await asyncio.to_thread(self.dovecot.deliver, raw, envelope.mail_from, local)
        return "250 2.0.0 OK delivered"


def start_submission(dovecot: Dovecot, root: Path):
    """``(controller, Submission)``: aiosmtpd on a free loopback port, STARTTLS offered."""
    from aiosmtpd.controller import Controller

    handler = Submission(dovecot)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(root / "cert.pem", root / "key.pem")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=handler.authenticate,
                            auth_require_tls=False, tls_context=context, require_starttls=False,
                            decode_data=False)
    controller.start()
    return controller, handler
